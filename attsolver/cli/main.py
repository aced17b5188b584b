"""The ``attsolver`` command: ``data`` (generate / inspect datasets), ``train`` (fit a
corrector), ``solve`` (integrate, optionally corrected), ``compare`` (the verdict: does the
corrector pay at equal accuracy?), ``bench`` (run a benchmark suite), ``vision`` (attention
ResNets), ``methods`` / ``systems`` (list what is registered), ``demo``."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import torch

from .._progress import LOGGER, stderr_is_terminal
from ..correctors import load_corrector
from ..evaluate import CompareResult, compare
from ..evaluate.conformal import error_bars_line
from ..integrate import solve
from ..steppers import get_method, list_methods
from ..systems import list_systems, make_system
from .common import CLIError, check_system_choice, guarded, load_data, output_times, parse_params, report_error
from .correctors import add_solve_parser, add_train_parser
from .data import add_data_parser
from .demo import run_demo, run_tour
from .pruning import add_prune_parser
from .user_rhs import check_rhs, load_rhs, load_sampler, sample_states
from .vision import add_vision_parser

__all__ = ["main"]

#: modules in benchmarks/ that are tools, not suites
_NOT_SUITES = {"__init__", "update_readme", "ode_local_summary"}  # table tools, not suites


def _cmd_methods(args) -> int:
    for name in list_methods():
        spec = get_method(name)
        order = "-" if spec.order is None else str(spec.order)
        print(f"{name:14s} {spec.kind:9s} order {order:2s} {spec.description}")
    return 0


def _cmd_systems(args) -> int:
    for name in list_systems():
        s = make_system(name)
        print(f"{name:22s} state {s.state_shape}  {s.config()['params']}")
    return 0


def _benchmarks_dir() -> Path | None:
    root = Path(__file__).resolve().parents[2] / "benchmarks"
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


def _cmd_compare(args) -> int:
    check_system_choice(args)
    out = Path(args.out)
    targets = [out / f"{args.name}{s}" for s in (".json", "_work_precision.png", "_error_vs_time.png")]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not args.overwrite:
        raise CLIError(f"{', '.join(existing)} exist(s); pass --overwrite to replace, or another --out/--name")
    model = load_corrector(args.corrector) if args.corrector else None
    f = load_rhs(args.rhs) if args.rhs else make_system(args.system, parse_params(args.param, example="F=8.0"))
    test, y_check = _compare_test_set(args, f)
    if args.rhs:
        check_rhs(f, y_check.to(torch.float64))
    res = compare(
        f, corrector=model, method=args.method, step_size=args.step, refinements=args.refinements,
        rk4_refinements=args.rk4_refinements, dopri_rtols=args.dopri_rtols,
        spectral_refinements=args.spectral_refinements, lyapunov_exponent=_lyapunov_exponent(args.lyapunov),
        match=args.match, dtype=torch.float32 if args.float32 else torch.float64, rounds=args.rounds, clock=args.clock,
        stiff={"auto": None, "yes": True, "no": False}[args.stiff],
        ci_width=args.ci_width, max_rounds=max(args.max_rounds, args.rounds), time_budget=args.time_budget, out=out,
        name=args.name, progress=not args.no_progress, command=args.command_line, **test,
    )
    _print_comparison(res)
    return 0


def _compare_test_set(args, f) -> tuple[dict, torch.Tensor]:
    """``compare``'s held-out data (``{"data": ...}`` or ``{"y0": ..., "t": ...}``) and the states
    a user's ``f`` is checked on."""
    if args.data:
        data = load_data(args.data, args.system)
        return {"data": data}, data.y[:, 0]
    if args.t_final is None or args.dt is None:
        raise CLIError("give a test data file (--data test.h5) or --t-final and --dt (and --n, --seed)")
    t = output_times(args.t_final, args.dt)
    if args.init:
        y0 = sample_states(load_sampler(args.init), args.n, args.seed)
    elif hasattr(f, "sample_initial"):
        y0 = f.sample_initial(args.n, generator=torch.Generator().manual_seed(args.seed), dtype=torch.float64)
    else:
        raise CLIError("--rhs without --data needs --init file.py:sample (held-out initial states)")
    if args.spin_up:
        with torch.no_grad():
            y0 = solve(f, y0, torch.tensor([0.0, args.spin_up], dtype=torch.float64), step_size=args.dt / 20)[-1]
    return {"y0": y0, "t": t}, y0


def _lyapunov_exponent(text: str) -> float | str | None:
    """``--lyapunov``: a number, ``auto``, ``estimate`` or ``none``."""
    if text in ("auto", "estimate"):
        return text
    if text == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise CLIError(f"--lyapunov must be a number, auto, estimate or none, got {text!r}") from None


def _print_comparison(res: CompareResult) -> None:
    s = res.setting
    print(f"compared {s['n_test']} test trajectories ({s['n_times']} times, horizon {s['horizon']:g}"
          + (f", Lyapunov exponent {s['lyapunov_exponent']:.3g} ({s['lyapunov_source']})"
             if s["lyapunov_exponent"] is not None else "")
          + f"), {len(res.entries)} contenders in {s['dtype']}, {s['timing_rounds']} timing rounds")
    for e in res.entries:
        vpt = f"vpt {e['vpt']:.3g}" + (" Lyap." if s["vpt_units"] == "Lyapunov times" else "")
        print(f"  {e['label']:32s} err 1/4 {e['err_q1']:9.3g}  1/2 {e['err_q2']:9.3g}  full {e['err_full']:9.3g}  "
              f"{vpt:14s} blow-ups {e['blowups']:3d}  time {e['time_s'] * 1e3:9.3g} ms (median "
              f"{e['time_median_s'] * 1e3:.3g})")
    print(f"timing: {s['clock_note']}; {s['timing_stopped']}; load {s['load_start']['load_1min']:.3g} -> "
          f"{s['load_end']['load_1min']:.3g} on {s['load_start']['cores']} cores")
    for label, why in s.get("skipped", {}).items():
        print(f"skipped {label}: {why}")
    if s.get("load_warning"):
        print(f"warning: {s['load_warning']}")
    print(res.verdict_line)
    if error_bars_line(res.error_bars):
        print(error_bars_line(res.error_bars))
    print(f"wrote {res.files['json']}, {res.files['work_precision_png']}, {res.files['error_vs_time_png']}")


def _add_compare_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="does a corrector pay? the corrected solve against the classical ladders at equal accuracy",
        description="Run the coarse classical solve, the corrected one, the same method at h/2, h/4, ..., RK4 "
                    "over steps, dopri5 / dopri8 / SciPy DOP853 over tolerances (and the spectral steppers for a semilinear PDE) on "
                    "held-out data; time them in the steady state; print the speed-up at equal accuracy and "
                    "write JSON plus work-precision and error-vs-time plots.",
    )
    p.add_argument("system", nargs="?", default=None, help="built-in system name, or use --rhs")
    p.add_argument("--rhs", default=None, metavar="MODULE:F",
                   help="your own right-hand side f(t, y): module:function or path/to/file.py:function")
    p.add_argument("--init", default=None, metavar="MODULE:SAMPLE",
                   help="initial-state sampler sample(n, generator) for test states without --data")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="built-in system parameter")
    p.add_argument("--data", default=None, help="held-out test trajectories (.h5, clean); else --n/--t-final/--dt")
    p.add_argument("--corrector", default=None, help="a corrector saved by `attsolver train` (.pt)")
    p.add_argument("--method", default=None, help="coarse method (default: the corrector's)")
    p.add_argument("--step", type=float, default=None, help="coarse step (default: the corrector's)")
    p.add_argument("--n", type=int, default=16, help="without --data: test initial states (default 16)")
    p.add_argument("--seed", type=int, default=12345, help="without --data: their seed (default 12345)")
    p.add_argument("--t-final", type=float, default=None, help="without --data: test horizon")
    p.add_argument("--dt", type=float, default=None, help="without --data: output interval")
    p.add_argument("--spin-up", type=float, default=0.0, help="without --data: time integrated first (attractor)")
    p.add_argument("--lyapunov", default="auto",
                   help="largest Lyapunov exponent: a number, auto (the system's, else estimated), estimate, none")
    p.add_argument("--stiff", default="auto", choices=["auto", "yes", "no"],
                   help="whether the problem is stiff: yes adds the implicit ladder (kvaerno5 over --dopri-rtols), "
                        "auto adds it if df/dy at the initial states says so (default auto)")
    p.add_argument("--match", default="auto", choices=["auto", "err_q1", "err_q2", "err_full"],
                   help="the error compared at equal accuracy (auto: err_q1 for chaotic problems, else err_full)")
    p.add_argument("--rounds", type=int, default=5, help="the fewest interleaved timing rounds (default 5)")
    p.add_argument("--max-rounds", type=int, default=40, help="the most timing rounds (default 40)")
    p.add_argument("--ci-width", type=float, default=0.10,
                   help="stop timing when the speed-up's 95%% interval is within +-this of it (default 0.10)")
    p.add_argument("--time-budget", type=float, default=60.0, help="seconds of timing at most (default 60)")
    p.add_argument("--clock", default="auto", choices=["auto", "cpu", "wall"],
                   help="the time the verdict reads (auto: process CPU time unless the solves are too short)")
    p.add_argument("--refinements", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--rk4-refinements", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    p.add_argument("--dopri-rtols", type=float, nargs="*", default=[1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10])
    p.add_argument("--spectral-refinements", type=int, nargs="*", default=[1, 2, 4, 8])
    p.add_argument("--float32", action="store_true", help="run every contender in float32 (default float64)")
    p.add_argument("--out", default="compare_out", help="output folder (default compare_out)")
    p.add_argument("--name", default="compare", help="file name stem (default compare)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    p.set_defaults(func=guarded("compare", _cmd_compare))


def _cmd_demo(args) -> int:
    return int((run_tour() if args.tour else run_demo(args.out)) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attsolver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("methods", help="list the integration methods")
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("systems", help="list the built-in systems and their default parameters")
    p.set_defaults(func=_cmd_systems)

    add_data_parser(sub)
    add_train_parser(sub)
    add_solve_parser(sub)
    _add_compare_parser(sub)
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


def _log_progress_when_not_a_terminal() -> None:
    """Long work logs its progress (logger ``attsolver.progress``) where stderr is no terminal."""
    if not stderr_is_terminal() and not LOGGER.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False


@contextlib.contextmanager
def _noting_interrupts():
    """SIGINT still raises ``KeyboardInterrupt``, and is also noted in the yielded list: an
    interrupt that a library swallows (h5py's cleanup prints "Exception ignored") cannot
    let the command exit 0."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def on_sigint(signum, frame):
        noted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    """Run one command.  The one place that turns errors into a one-line message and an exit
    code instead of a traceback: 2 for bad input or the environment (a full disk, a
    damaged file), 1 for an internal error (``ATTSOLVER_TRACEBACK=1`` shows its traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad flag (2, its message printed)
        return e.code if isinstance(e.code, int) else 2
    args.command_line = "attsolver " + " ".join(argv)
    _log_progress_when_not_a_terminal()
    command = " ".join(str(getattr(args, k)) for k in ("command", "data_command", "vision_command",
                                                       "prune_command") if getattr(args, k, None))
    try:
        with _noting_interrupts() as interrupted:
            code = int(args.func(args) or 0)
        if interrupted and code == 0:  # a Ctrl-C swallowed somewhere (a library's cleanup): never exit 0
            print(f"attsolver {command}: interrupted (the interrupt arrived while files were being finished; "
                  "check the output before using it)", file=sys.stderr)
            return 130
        return code
    except KeyboardInterrupt:
        print(f"attsolver {command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        if not e.code and args.command != "bench":  # no command exits 0 this way: user code did
            print(f"attsolver {command}: error: something (user code?) called sys.exit({e.code!r}) before the "
                  "command finished; nothing was completed", file=sys.stderr)
            return 2
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
