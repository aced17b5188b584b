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
    from .demo import run_demo

    return int(run_demo() or 0)


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

    p = sub.add_parser("demo", help="solve Lorenz-63 several ways and print accuracy and speed")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command.  The one place that turns errors into a one-line message and an exit
    code instead of a traceback: 2 for bad input or the environment (a full disk, a
    damaged file), 1 for an internal error (``ATTSOLVER_TRACEBACK=1`` shows its traceback)."""
    import os

    from ._cli_common import report_error

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad flag (2, its message printed)
        return e.code if isinstance(e.code, int) else 2
    command = " ".join(str(getattr(args, k)) for k in ("command", "data_command", "vision_command",
                                                       "prune_command") if getattr(args, k, None))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"attsolver {command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            return int(e.code or 0)
        print(f"attsolver {command}: error: {e.code}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence against tracebacks
        if os.environ.get("ATTSOLVER_TRACEBACK"):
            raise
        return report_error(command, e)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
