"""The ``attsolver`` command: ``data`` (generate / inspect datasets), ``train`` (fit a
corrector), ``solve`` (integrate, optionally corrected), ``bench`` (run a benchmark
suite), ``vision`` (attention ResNets), ``methods`` / ``systems`` (list what is registered),
``demo``."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

__all__ = ["main"]

#: modules in benchmarks/ that are tools, not suites
_NOT_SUITES = {"__init__", "update_readme", "common"}


def _cmd_methods(args) -> int:
    from .steppers import get_method, list_methods

    for name in list_methods():
        spec = get_method(name)
        order = "-" if spec.order is None else str(spec.order)
        print(f"{name:14s} {spec.kind:9s} order {order:2s} {spec.description}")
    return 0


def _cmd_systems(args) -> int:
    from .systems import list_systems, make_system

    for name in list_systems():
        s = make_system(name)
        print(f"{name:22s} state {s.state_shape}  {s.config()['params']}")
    return 0


def _benchmarks_dir() -> Path | None:
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    return root if (root / "__init__.py").exists() else None


def _bench_suites() -> list[str]:
    root = _benchmarks_dir()
    if root is None:
        return []
    return sorted(p.stem for p in root.glob("*.py") if p.stem not in _NOT_SUITES and not p.stem.startswith("_"))


def _cmd_bench(args) -> int:
    root = _benchmarks_dir()
    if root is None:
        raise SystemExit(
            "attsolver bench needs a source checkout (the benchmarks/ folder is not shipped in "
            "the wheel): git clone the repository and `pip install -e .` it"
        )
    if args.suite not in _bench_suites():
        print(f"attsolver bench: unknown suite {args.suite!r}; choose one of: {', '.join(_bench_suites())}",
              file=sys.stderr)
        return 2
    path = root / f"{args.suite}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks.{args.suite}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return int(module.main(args.rest) or 0)


def _cmd_demo(args) -> int:
    from .demo import run_demo, run_tour

    return int((run_tour() if args.tour else run_demo(args.out)) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attsolver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("methods", help="list the integration methods")
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("systems", help="list the built-in systems and their default parameters")
    p.set_defaults(func=_cmd_systems)

    from .correctors.cli import add_solve_parser, add_train_parser
    from .data.cli import add_data_parser
    from .vision.cli import add_vision_parser
    from .pruning.cli import add_prune_parser

    add_data_parser(sub)
    add_train_parser(sub)
    add_solve_parser(sub)
    add_vision_parser(sub)
    add_prune_parser(sub)

    p = sub.add_parser("bench", help="run a benchmark suite from benchmarks/ (source checkout)")
    p.add_argument("suite", help="one of: " + (", ".join(_bench_suites()) or "(none: not a source checkout)"))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the suite (see SUITE --help)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("demo", help="train a corrector on noisy data and print whether it pays against the "
                                    "classical solvers (< 3 min)")
    p.add_argument("--out", default="demo_out", help="folder for the verdict's JSON and plots (default demo_out)")
    p.add_argument("--tour", action="store_true",
                   help="instead: convergence orders of the explicit methods, speed against torchdiffeq, Burgers")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
