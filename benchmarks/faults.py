"""Issue 17's fault campaign, re-run: per category the number of cases, how many gave a
silently wrong result, how many hung, how many raised our error.

    attsolver bench faults [--quick] [--out benchmarks/results]   # faults.{md,json,png}

Categories: solve() inputs (a grid of step sizes, spans and option values), HDF5 bit flips
(every byte of a small file), checkpoint bit flips (every byte of a small checkpoint), kill -9
of each writer, a full disk (256 KiB tmpfs; skipped where mounting is not allowed), CLI bad
flags.  The checks themselves are those of tests/test_faults.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from attsolver import solve
from attsolver._io import payload_digest, remove_stale_temps
from attsolver.correctors import NeurVec, load_corrector
from attsolver.correctors.base import read_checkpoint
from attsolver.data import generate_trajectories, load_h5, save_h5
from attsolver.integrate.errors import NonFiniteSolutionError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Run, figure, header, parser, write_report  # noqa: E402

HANG_S = 10.0


def _row(name, cases, silent, hangs, errors, note=""):
    return {"category": name, "cases": cases, "silent_wrong": silent, "hangs": hangs, "errors": errors,
            "note": note}


def solve_inputs() -> dict:
    cases = silent = hangs = errors = 0
    y0 = torch.ones(1, dtype=torch.float64)
    # (steps that are accepted but take millions of steps, e.g. 1e-9, are left out: slow, not wrong)
    steps = [5e-324, 1e-300, 1e-100, 1e-20, 1e-18, 1e-15, 1e-13, 1e-4, 0.01, 0.3, 1.0, 10.0, 1e300,
             0.0, -0.1, float("nan"), float("inf"), True, "0.1", None]
    for span in (1e-3, 0.1, 1.0):
        for step in steps:
            cases += 1
            t0 = time.perf_counter()
            try:
                sol = solve(lambda t, y: -y, y0, torch.tensor([0.0, span], dtype=torch.float64), step_size=step)
                if abs(float(sol[-1, 0]) - math.exp(-span)) > 1e-2:
                    silent += 1
            except (ValueError, TypeError, NonFiniteSolutionError):
                errors += 1
            hangs += time.perf_counter() - t0 > HANG_S
    values = [None, True, False, 0, 1, -1, 10**6, "x", "no", 1e-300, 1e300, float("nan"), float("inf"), -1e-3,
              [1e-3, 1e-3], 0.5]
    for method in ("rk4", "dopri5", "scipy_dop853"):
        for key in ("check_finite", "rtol", "atol", "max_evaluations", "max_steps", "growth_bound", "compile_chunk"):
            for v in values:
                cases += 1
                t0 = time.perf_counter()
                opts = {key: v}
                try:
                    sol = solve(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), method=method,
                                step_size=0.05 if method == "rk4" else None, options=opts)
                    rtol = opts.get("rtol", 1e-7)
                    atol = opts.get("atol", 1e-9)
                    tol = 1e-4 + 100 * (max(rtol) if isinstance(rtol, list) else rtol) \
                        + 100 * (max(atol) if isinstance(atol, list) else atol)
                    if abs(float(sol[-1, 0]) - math.exp(-1)) > tol:
                        silent += 1
                except (ValueError, TypeError, NonFiniteSolutionError, RuntimeError):
                    errors += 1
                hangs += time.perf_counter() - t0 > HANG_S
    for a, b in ((-1e308, 1e308), (0, 1e308), (-1e300, 1e300), (0.0, 1e-300)):
        cases += 1
        try:
            sol = solve(lambda t, y: torch.zeros_like(y), y0, torch.tensor([a, b], dtype=torch.float64))
            silent += not torch.equal(sol, torch.ones(2, 1, dtype=torch.float64))
        except ValueError:
            errors += 1
            silent += math.isfinite(b - a)  # refusing a representable span would be wrong too
    return _row("solve() inputs", cases, silent, hangs, errors, "step sizes x spans, option values x methods, extreme t")


def h5_flips(T, work: Path, stride: int) -> dict:
    d = generate_trajectories("lorenz63", 2, t_final=0.1, dt=0.01, spin_up=0.0, noise_level=0.01, seed=1,
                              progress=False)
    path = save_h5(d, work / "d.h5")
    raw, ref = path.read_bytes(), load_h5(path)
    where = range(0, len(raw), stride)
    try:
        counts = T._flip_h5(raw, ref, where, work)
    except AssertionError as e:  # the helper asserts: identical content or our error, in time
        return _row("HDF5 bit flips", len(where), 1, 0, 0, f"FAILED: {e}")
    return _row("HDF5 bit flips", len(where), 0, 0, counts["error"],
                f"{_every(stride)} of a {len(raw)}-byte file, one random bit each; {counts['identical']} loaded "
                "identical content")


def _every(stride: int) -> str:
    return "every byte" if stride == 1 else f"every {stride}th byte"


def ckpt_flips(T, work: Path, stride: int) -> dict:
    torch.manual_seed(0)
    path = NeurVec((3,), method="rk4", step_size=0.1, width=16).save(work / "m.pt")
    raw = path.read_bytes()
    where = range(0, len(raw), stride)
    try:
        counts = T._flip_ckpt(raw, payload_digest(read_checkpoint(path)), where, work)
    except AssertionError as e:
        return _row("checkpoint bit flips", len(where), 1, 0, 0, f"FAILED: {e}")
    return _row("checkpoint bit flips", len(where), 0, 0, counts["error"],
                f"{_every(stride)} of a {len(raw)}-byte NeurVec checkpoint; {counts['identical']} loaded identical "
                "content")


def kills(T, work: Path, per_writer: int) -> dict:
    cases = bad = 0
    rng = random.Random(0)
    for kind in ("data", "checkpoint", "log"):
        target = work / f"kill-{kind}" / {"data": "d.h5", "checkpoint": "m.pt", "log": "p.jsonl"}[kind]
        target.parent.mkdir()
        for _ in range(per_writer):
            cases += 1
            T._kill_writer(kind, target, rng)
            try:
                T._check_target(kind, target)
            except Exception:  # noqa: BLE001 - a damaged target is what this counts
                bad += 1
        # the next successful write cleans up what the kills left
        if kind == "data":
            save_h5(load_h5(target), target)
        elif kind == "checkpoint":
            load_corrector(target).save(target)
        else:
            remove_stale_temps(target)
        left = [p.name for p in target.parent.iterdir() if p.name != target.name]
        bad += bool(left)
    return _row("kill -9 of writers", cases, bad, 0, 0,
                f"{per_writer} kills each of data / checkpoint / log writers; target intact and no temp file after the next write")


def full_disk(T, work: Path) -> dict:
    mnt = work / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        return _row("full disk", 0, 0, 0, 0, "skipped: cannot mount a tmpfs here")
    try:
        T.test_full_disk_is_a_clean_error_and_keeps_the_previous_file(mnt)
        return _row("full disk", 4, 0, 0, 4, "256 KiB tmpfs: save_h5, Corrector.save, CLI data generate (exit 2, one line), previous file intact")
    except AssertionError as e:
        return _row("full disk", 4, 1, 0, 0, f"FAILED: {e}")
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def cli(T, work: Path) -> dict:
    cases = bad = 0
    params = [m for m in T.test_cli_bad_input_is_one_line_and_exit_code_2.pytestmark if m.name == "parametrize"][0]
    for i, (argv, message) in enumerate(params.args[1]):
        cases += 1
        sub = work / f"cli{i}"
        sub.mkdir()

        class Capsys:
            def readouterr(self):
                return type("R", (), {"err": err.getvalue(), "out": ""})()

        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                T.test_cli_bad_input_is_one_line_and_exit_code_2(argv, message, sub, Capsys())
        except (AssertionError, SystemExit) as e:
            bad += 1
            print(f"CLI case {argv} failed: {e}", file=sys.stderr)
        except pytest.skip.Exception:
            cases -= 1
    return _row("CLI bad flags", cases, bad, 0, cases - bad, "one line on stderr, exit code 2, no traceback")


def to_markdown(report: dict) -> str:
    rows = report["rows"]
    lines = [*header(report, "Fault campaign (issue 17), re-run"), "",
             "A case is *silent-wrong* when it returned without error but not the right content; a *hang* when it "
             f"took over {HANG_S:g} s; *errors* are our clear errors.", "",
             "| category | cases | silent-wrong | hangs | our errors | wall s | what |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['category']} | {r['cases']} | {r['silent_wrong']} | {r['hangs']} | {r['errors']} | "
                     f"{r['wall_s']:.0f} | {r['note']} |")
    lines += ["", f"Total: {sum(r['cases'] for r in rows)} cases, {sum(r['silent_wrong'] for r in rows)} "
              f"silent-wrong, {sum(r['hangs'] for r in rows)} hangs.", ""]
    return "\n".join(lines)


def plot(report: dict):
    """``faults.png``: per category, the cases by outcome."""
    rows = report["rows"]
    fig, ax = figure(figsize=(7, 3.4))
    left = [0] * len(rows)
    for key, label, colour in (("errors", "our clear error", "C0"), ("silent_wrong", "silent-wrong", "C3"),
                               ("hangs", "hang", "C1")):
        ax.barh(range(len(rows)), [r[key] for r in rows], left=left, color=colour, label=label)
        left = [a + r[key] for a, r in zip(left, rows)]
    ax.barh(range(len(rows)), [r["cases"] - a for a, r in zip(left, rows)], left=left, color="0.75",
            label="correct result")
    ax.set_yticks(range(len(rows)), [r["category"] for r in rows])
    ax.set(xscale="symlog", xlabel="cases")
    ax.legend(fontsize=7)
    yield "faults.png", fig


def main(argv=None) -> int:
    ap = parser("faults", __doc__, quick="every 64th byte flipped, one kill per writer (a minute)")
    ap.add_argument("--kills", type=int, default=None, help="kill -9 runs per writer (default 4; 1 with --quick)")
    args = ap.parse_args(argv)
    run = Run("faults", argv, quick=args.quick)
    stride, kill_runs = (64, 1) if args.quick else (1, 4)
    kill_runs = args.kills or kill_runs
    spec = importlib.util.spec_from_file_location("_faults_tests", REPO / "tests" / "test_faults.py")
    T = importlib.util.module_from_spec(spec)  # the checks are the tests' own
    spec.loader.exec_module(T)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, category in (("solve", lambda w: solve_inputs()), ("h5", lambda w: h5_flips(T, w, stride)),
                               ("ckpt", lambda w: ckpt_flips(T, w, stride)), ("kill", lambda w: kills(T, w, kill_runs)),
                               ("disk", lambda w: full_disk(T, w)), ("cli", lambda w: cli(T, w))):
            work = Path(tmp) / name
            work.mkdir()
            t0 = time.perf_counter()
            rows.append({**category(work), "wall_s": time.perf_counter() - t0})
            run.log(str(rows[-1]))
    write_report(args.out, "faults", run.stamp(run.report(rows=rows), complete=True), to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
