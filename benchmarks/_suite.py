"""The benchmark layer: what every suite in ``benchmarks/`` shares, written once.

A suite keeps only its problem, its recipe, its rows and its tables; this module holds the rest:

* :class:`Run` — the report record of one invocation (suite, schema version, command line,
  date, machine and load average at the start and the end, wall time, complete and quick
  flags), merged into the top level of the suite's JSON, and its clock and log;
* :func:`write_report` — the one writer: ``NAME.json``, the figures and ``NAME.md``, each
  replaced atomically, with the library's one non-finite policy
  (:func:`attsolver.evaluate.result.json_safe`, the one ``attsolver compare`` writes with: NaN
  and infinities are written as ``null``; the tables read ``None`` and NaN alike);
* :class:`Progress` — the resume log (finished records in an fsynced JSON-lines file);
* :func:`timings` — the one timing loop: warm-up calls apart, interleaved rounds, minimum,
  median and spread, wall and CPU clocks;
* :func:`speedup` — the speed-up at equal accuracy, read off the classical front with the
  library's :func:`attsolver.evaluate.metrics.cost_at_accuracy`;
* the pieces every table uses: :func:`header`, :func:`mean_std`, :func:`pm`, :func:`welch_p`,
  :func:`paired_p`, :func:`fingerprint`, :func:`parser`.

A suite imports it as ``benchmarks._suite`` (the checkout's root goes on ``sys.path`` first, so
``python benchmarks/x.py``, ``attsolver bench x`` and the tests all find it).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files: no display on the machines the suites run on
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

import attsolver  # noqa: E402
from attsolver._io import AppendLog, atomic_write_text  # noqa: E402
from attsolver._report import save_png  # noqa: E402
from attsolver.data import TrajectoryDataset, load_h5, save_h5  # noqa: E402
from attsolver.evaluate.metrics import cost_at_accuracy  # noqa: E402
from attsolver.evaluate.result import json_safe as finite  # noqa: E402 - the library's one non-finite policy

__all__ = ["Run", "Progress", "Timing", "write_report", "read_report", "write_json", "json_text", "finite", "figure",
           "cached_h5", "timings",
           "speedup", "header", "provenance_lines", "mean_std", "pm", "num", "welch_p", "paired_p", "fingerprint",
           "parser", "machine", "plt"]

#: layout version of the common record (the suite's own layout has its own ``schema``)
RECORD_SCHEMA = 1


# --------------------------------------------------------------------------- the record


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages of the machine (all its jobs), or ``None``."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


#: environment variables that change what a timing measures (threads, glibc's allocator): recorded
#: with every run, since the command line alone does not show them
TIMING_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
              "MALLOC_ARENA_MAX", "LD_PRELOAD")


def machine(**extra: Any) -> dict[str, Any]:
    """CPUs, library versions, torch's thread count and the :data:`TIMING_ENV` variables that are
    set, plus ``extra`` (e.g. ``jax=...``)."""
    env = {k: os.environ[k] for k in TIMING_ENV if k in os.environ}
    return {"cpus": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "attsolver": attsolver.__version__, **({"env": env} if env else {}), **extra}


class Run:
    """One invocation of a suite: its report record, its clock and its log.

    Args:
        suite: the suite's name (``benchmarks/<suite>.py``).
        argv: the arguments it was given (``None``: the process's; the command line is ``prog`` + these).
        prog: how it was invoked (default ``attsolver bench <suite>``).
        quick: whether this is the suite's quick (smoke) configuration.
        schema: the version of the suite's own JSON layout.
        threads: torch threads for the run (every suite times one thread; set before the record).
        machine_extra: more machine fields (peer library versions, flags).
    """

    def __init__(self, suite: str, argv: Iterable[str] | None, *, prog: str | None = None, quick: bool = False,
                 schema: int = 1, threads: int = 1, **machine_extra: Any):
        torch.set_num_threads(threads)
        self.started = time.perf_counter()
        argv = list(sys.argv[1:] if argv is None else argv)
        self.record: dict[str, Any] = {
            "suite": suite, "schema": schema, "record_schema": RECORD_SCHEMA,
            "command": " ".join([prog or f"attsolver bench {suite}", *argv]),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": {**machine(**machine_extra), "load_start": loadavg()},
            "quick": bool(quick), "complete": False, "wall_time_s": 0.0,
            "code_commit": code_commit(),  # the code that ran (``+dirty``: with uncommitted changes)
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def log(self, msg: str) -> None:
        """A progress line on stderr, with the seconds since the start."""
        print(f"[{self.elapsed():7.1f}s] {msg}", file=sys.stderr, flush=True)

    def report(self, **fields: Any) -> dict[str, Any]:
        """A new report: the record, then the suite's ``fields``."""
        return {**self.record, "machine": dict(self.record["machine"]), **fields}

    def stamp(self, report: dict[str, Any], *, complete: bool) -> dict[str, Any]:
        """Close ``report``'s record in place: wall time, load average now, completeness."""
        report["wall_time_s"] = self.elapsed()
        report["complete"] = bool(complete)
        report.setdefault("machine", {})["load_end"] = loadavg()
        return report


# --------------------------------------------------------------------------- the writer

#: draws a report's figures: yields ``(file name, matplotlib figure)``; each is saved at its own dpi
Figures = Callable[[dict[str, Any]], Iterable[tuple[str, Any]]]


def write_report(out: str | Path, name: str, report: dict[str, Any], markdown: Callable[[dict[str, Any]], str],
                 figures: Figures | None = None, *, echo: bool = False) -> dict[str, Any]:
    """Write ``out/name.json``, the figures and ``out/name.md``, each atomically.

    The report goes through the non-finite policy first (NaN and infinities become ``None``),
    so the JSON is standard and the tables are rendered from exactly what the JSON holds (a
    rerun from the JSON gives the same Markdown).  The JSON is written before the figures (a
    failing plot never loses the numbers) and again after them with their names under
    ``"plots"``.  Returns the report as written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = finite(report)
    path = out / f"{name}.json"
    write_json(path, report)
    if figures is not None:
        report["plots"] = []
        for filename, fig in figures(report):
            save_png(fig, out / filename, dpi=fig.dpi)
            report["plots"].append(filename)
        write_json(path, report)
    text = markdown(report)
    atomic_write_text(out / f"{name}.md", text)
    if echo:
        print(text)
    return report


def json_text(obj: Any) -> str:
    """``obj`` as standard JSON: :func:`finite` first, and ``allow_nan=False`` makes a missed
    non-finite value an error instead of a file other readers reject."""
    return json.dumps(finite(obj), indent=1, allow_nan=False, default=str)


def write_json(path: str | Path, obj: Any) -> None:
    """Replace ``path`` with :func:`json_text` of ``obj``, atomically."""
    atomic_write_text(path, json_text(obj))


def read_report(path: str | Path) -> dict[str, Any]:
    """A report written by :func:`write_report` (older files may hold ``NaN``: read as NaN)."""
    return json.loads(Path(path).read_text())


def figure(nrows: int = 1, ncols: int = 1, *, dpi: int = 110, layout: str | None = "tight", **kw: Any):
    """``plt.subplots`` whose figure is saved at ``dpi`` by :func:`write_report`, laid out tightly
    when it is drawn (``fig.get_layout_engine().set(rect=...)`` to leave room for a legend)."""
    return plt.subplots(nrows, ncols, dpi=dpi, layout=layout, **kw)


# --------------------------------------------------------------------------- resume log


class Progress(AppendLog):
    """The resume log of a suite: finished records, one per line, keyed; a rerun into the same
    folder takes them back instead of recomputing (see :class:`attsolver._io.AppendLog`)."""

    def run(self, key: str, compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """The record of ``key``: the logged one, or ``compute()``'s, logged now.  The flag says
        whether it was computed."""
        rec = self.get(key)
        if rec is not None:
            return rec, False
        rec = {"key": key, **compute()}
        self.add(rec)
        return rec, True


def cached_h5(cache: str | Path, name: str, make: Callable[[], TrajectoryDataset]) -> TrajectoryDataset:
    """``cache/name.h5`` if it is there, else ``make()``'s data set, saved there first."""
    path = Path(cache) / f"{name}.h5"
    if path.exists():
        return load_h5(path)
    data = make()
    save_h5(data, path)
    return data


@functools.lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The checkout's commit (short hash), with ``+dirty`` when ``attsolver/`` or ``benchmarks/*.py`` had
    uncommitted changes, read once per process (a suite reads it before its first row, so a commit made
    while the run goes on is not credited).  ``None`` outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "attsolver", "benchmarks/*.py"],
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def fingerprint(obj: Any, n: int = 16) -> str:
    """A short stable hash of a JSON-able ``obj`` (resume-log keys, cache names, noise seeds)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


# --------------------------------------------------------------------------- before/after worker trees


class WorkerTree:
    """A worker process running ``script --worker`` with one checkout's ``attsolver`` (``PYTHONPATH``
    is that checkout's root alone): a before/after suite sends it one JSON request per line and reads
    one JSON answer per line.  ``env``: variables to set (e.g. thread counts); ``drop``: to unset."""

    def __init__(self, script: str | Path, root: Path, env: dict[str, str] | None = None,
                 drop: Iterable[str] = ()):
        env = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
        for var in drop:
            env.pop(var, None)
        self.proc = subprocess.Popen([sys.executable, str(Path(script).resolve()), "--worker"], cwd="/",
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **request: Any) -> dict:
        """Send ``request``; the worker's answer (a ``RuntimeError`` if the worker stopped)."""
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@contextlib.contextmanager
def worker_trees(script: str | Path, before: Path | None, **kw: Any):
    """``{"after": this checkout}`` or, with ``before`` (a checkout of the code before a change),
    ``{"before": ..., "after": ...}``: one :class:`WorkerTree` each, closed on leaving the block."""
    root = Path(script).resolve().parents[1]
    trees = {"after": WorkerTree(script, root, **kw)} if before is None else {
        "before": WorkerTree(script, Path(before).resolve(), **kw), "after": WorkerTree(script, root, **kw)}
    try:
        yield trees
    finally:
        for tree in trees.values():
            tree.close()


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """One contender's timed calls: ``wall`` and ``cpu`` seconds per round (``cpu``: this
    process's CPU time, which leaves out waiting for a core on a shared machine), and the wall
    seconds of its first warm-up call (compilation, caches) or ``None``."""

    wall: list[float]
    cpu: list[float]
    first_s: float | None

    def min(self, clock: str = "wall") -> float:
        return min(getattr(self, clock))

    def median(self, clock: str = "wall") -> float:
        return statistics.median(getattr(self, clock))

    def spread(self, clock: str = "wall") -> list[float]:
        """The quartiles ``[q1, q3]`` of the rounds (both the single value for one round)."""
        v = getattr(self, clock)
        return [v[0], v[0]] if len(v) < 2 else [*statistics.quantiles(v, n=4)[::2]]

    def summary(self) -> dict[str, Any]:
        return {"min_s": self.min(), "median_s": self.median(), "q1_q3_s": self.spread(),
                "cpu_median_s": self.median("cpu"), "first_s": self.first_s, "rounds": len(self.wall)}


def timings(fns: dict[str, Callable[[], Any]], rounds: int, *, warmup: int = 1, alternate: bool = False,
            first: Callable[[str, Any], None] | None = None) -> dict[str, Timing]:
    """Time every function in ``rounds`` interleaved rounds, after ``warmup`` untimed calls each.

    Interleaving spreads the machine's slow phases over all contenders instead of penalising
    whichever ran during them; the minimum is the most repeatable estimate of a contender's
    own cost on a shared machine, the median and quartiles show how noisy it was.  Python's
    garbage collector is off inside the timed calls (as in :mod:`timeit`) and runs before each
    round; it is restored as it was afterwards.

    Args:
        warmup: calls of each function before the rounds; the first one's wall time is kept
            (``Timing.first_s``: JIT or ``torch.compile`` compilation, caches filling).
        alternate: reverse the order of the contenders in every other round (pairs of two
            contenders then see the same machine on average).
        first: ``first(name, output)`` is called with each function's first output (to check
            it before it is timed).
    """
    firsts: dict[str, float | None] = {k: None for k in fns}
    for i in range(max(0, warmup)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out = fn()
            if i == 0:
                firsts[name] = time.perf_counter() - t0
                if first is not None:
                    first(name, out)
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    # as timeit does: no garbage-collection pass inside a timed call (with a large heap one costs tens
    # of ms and lands on whichever call crosses the allocation threshold); a collection runs before
    # each round, untimed (gc.collect works with the collector off)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(max(1, rounds)):
            gc.collect()
            for name in (names[::-1] if alternate and r % 2 else names):
                c0, t0 = time.process_time(), time.perf_counter()
                fns[name]()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {k: Timing(wall[k], cpu[k], firsts[k]) for k in fns}


# --------------------------------------------------------------------------- equal accuracy


def speedup(errors: Iterable[float | None], costs: Iterable[float | None], error: float | None,
            cost: float | None) -> tuple[float | None, str, float | None]:
    """Speed-up at equal accuracy: the classical runs' cost at ``error`` over ``cost``.

    The classical cost is read off the runs' Pareto front, log cost linear in log error
    (:func:`attsolver.evaluate.metrics.cost_at_accuracy`).  Returns ``(speed-up, kind,
    classical cost)``; ``kind`` is ``cost_at_accuracy``'s (``cheapest``: an upper bound).
    """
    if error is None or cost is None:
        return None, "unreached", None
    c, kind = cost_at_accuracy(list(errors), list(costs), error)
    return (None if c is None else c / cost), kind, c


# --------------------------------------------------------------------------- tables


def provenance_lines(report: dict[str, Any], *, unfinished: str = "setting", software: str = "") -> list[str]:
    """The lines under a report's title: the command and date (flagging a run that stopped
    before every ``unfinished`` finished); the machine and the total time; the load average
    at the start and the end when recorded.  ``software`` follows torch's version (e.g.
    ``", torch-pruning 1.6.1"``)."""
    m = report.get("machine", {})
    machine_text = (m if isinstance(m, str) else  # reports written before the common record: a sentence
                    f"{m.get('cpus', '?')} CPUs, torch {m.get('torch', '?')} ({m.get('torch_threads', 1)} thread)"
                    f"{software}, Python {m.get('python', '?')}")
    m = m if isinstance(m, dict) else {}
    env = " ".join(f"{k}={v}" for k, v in (m.get("env") or {}).items())
    lines = [
        f"Produced by `{(env + ' ') if env else ''}{report['command']}` on {report['date']}"
        + (f", code at `{report['code_commit']}`" if report.get("code_commit") else "")
        + ("" if report.get("complete", True) else
           f" — **incomplete: the run stopped before every {unfinished} finished**") + ".",
        f"Machine: {machine_text}; total {_wall_s(report) / 60:.1f} min.",
    ]
    if m.get("load_start"):
        lines.append(f"Load average (1/5/15 min, every job on the machine) {_load(m['load_start'])} at the start, "
                     f"{_load(m.get('load_end'))} at the end: above ~1 other jobs shared the cores, and absolute "
                     "times are inflated (minima over interleaved rounds are the least affected).")
    return lines


def _wall_s(report: dict[str, Any]) -> float:
    """The run's wall time (reports written before the common record named it differently)."""
    for key, scale in (("wall_time_s", 1), ("wall_s", 1), ("wall_seconds", 1), ("wall_time_min", 60)):
        if num(report.get(key)):
            return report[key] * scale
    return 0.0


def _load(values: list[float] | None) -> str:
    return "—" if not values else " / ".join(f"{v:.2f}" for v in values)


def header(report: dict[str, Any], title: str, **kw: Any) -> list[str]:
    """A report's first lines: ``# title``, then :func:`provenance_lines`."""
    return [f"# {title}", "", *provenance_lines(report, **kw)]


def num(x: Any) -> bool:
    """Whether ``x`` is a finite number (``None`` and NaN, the two forms of a missing value, are not)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN where undefined: no value,
    or a single one for the deviation)."""
    v = [x for x in values if num(x)]
    if not v:
        return math.nan, math.nan
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else math.nan)


def pm(mean: Any, std: Any = None, fmt: str = ".2f", scale: float = 1.0) -> str:
    """``"mean ± std"`` (``fmt`` each, times ``scale``); the mean alone without a finite std;
    ``"—"`` without a mean."""
    if isinstance(mean, (tuple, list)):
        mean, std = mean
    if not num(mean):
        return "—"
    return f"{scale * mean:{fmt}} ± {scale * std:{fmt}}" if num(std) else f"{scale * mean:{fmt}}"


def _p_value(test: Callable[..., Any], a: list[float], b: list[float]) -> float:
    if len(a) < 2 or len(b) < 2:
        return math.nan
    with warnings.catch_warnings():  # identical samples (e.g. all at chance): scipy warns and gives NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(test(a, b).pvalue)
    return p if math.isfinite(p) else math.nan


def welch_p(a: list[float], b: list[float]) -> float:
    """Welch's two-sided t-test p-value (NaN with fewer than two values a side)."""
    return _p_value(lambda x, y: stats.ttest_ind(x, y, equal_var=False), a, b)


def paired_p(a: list[float], b: list[float]) -> float:
    """Paired two-sided t-test p-value (NaN with fewer than two pairs)."""
    return _p_value(stats.ttest_rel, a, b)


def case_suite(suite: str, doc: str | None, argv: list[str] | None, *, quick: str,
               cases: Callable[[bool], Iterable[Any]], run_case: Callable[[Any, bool, Run], dict[str, Any]],
               markdown: Callable[[dict[str, Any]], str], figures: Figures | None = None, **fields: Any) -> int:
    """The ``main`` of a suite whose report is one record per case: ``--render`` rewrites
    ``OUT/<suite>.md`` (and the figures) from ``OUT/<suite>.json``; otherwise every case of
    ``cases(quick)`` is run in order by ``run_case(case, quick, run)`` into the report's
    ``"cases"`` list, next to the suite's own ``fields``, and the report is written."""
    args = parser(suite, doc, quick=quick, render=True).parse_args(argv)
    if args.render:
        write_report(args.out, suite, read_report(Path(args.out) / f"{suite}.json"), markdown, figures)
        return 0
    run = Run(suite, argv, quick=args.quick)
    report = run.report(cases=[], **fields)
    for case in cases(args.quick):
        report["cases"].append(run_case(case, args.quick, run))
    run.stamp(report, complete=True)
    write_report(args.out, suite, report, markdown, figures, echo=True)
    return 0


def parser(suite: str, doc: str | None, *, out: str | None = "benchmarks/results", quick: str | None = None,
           render: bool = False, prog: str | None = None) -> argparse.ArgumentParser:
    """The suite's argument parser, with ``--out`` (default ``out``), ``--quick`` (when ``quick``
    gives its help) and ``--render`` (rewrite the tables and figures from ``OUT/<suite>.json``)."""
    ap = argparse.ArgumentParser(prog=prog or f"attsolver bench {suite}", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    if out is not None:
        ap.add_argument("--out", default=out, help=f"output folder (default {out})")
    if quick is not None:
        ap.add_argument("--quick", action="store_true", help=quick)
    if render:
        ap.add_argument("--render", action="store_true", help=f"only rewrite {suite}.md and the figures from "
                        f"OUT/{suite}.json (its summary recomputed from the stored runs)")
    return ap
