"""Per-sample step control against lock-step on a batch of Van der Pol oscillators at
different phases (each sample's fast transitions come at its own times, so a lock-step batch
takes the smallest step of any sample at every time).

``kvaerno5`` (implicit; per-sample vs lock-step):

    PYTHONPATH=$PWD python benchmarks/per_sample_steps.py --batch 16 --mu 100 --t1 200 --rounds 3

``dopri5`` (explicit; per-sample vs two lock-steps vs one by one, see :func:`dopri5_main`):

    PYTHONPATH=$PWD python benchmarks/per_sample_steps.py --method dopri5 --batch 16 --mu 8 --t1 40 --rounds 5

``rk4`` at fixed steps, every sample on its own grid: batched vs one by one (:func:`rk4_main`):

    PYTHONPATH=$PWD python benchmarks/per_sample_steps.py --method rk4 --batch 64 --mu 2 --t1 10 --rounds 5

One thread, CPU time (``time.process_time``), the modes interleaved round by round; outputs
checked to agree first.  Writes benchmarks/results/per_sample_steps.{json,md} (kvaerno5) and
per_sample_steps_dopri5.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite

import attsolver  # noqa: E402
from attsolver.steppers.embedded import erk_solve, get_pair, solver_options  # noqa: E402
from benchmarks import _suite  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--mu", type=float, default=100.0)
    ap.add_argument("--t1", type=float, default=200.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/per_sample_steps")
    ap.add_argument("--method", default="kvaerno5", choices=("kvaerno5", "dopri5", "rk4"))
    ap.add_argument("--rtol", type=float, default=1e-6)
    a = ap.parse_args(argv)
    if a.method == "dopri5":
        return dopri5_main(a, argv)
    if a.method == "rk4":
        return rk4_main(a, argv)
    torch.set_num_threads(1)
    mu = a.mu

    def vdp(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack((v, mu * (1 - x * x) * v - x), -1)

    y0 = torch.zeros(a.batch, 2, dtype=torch.float64)
    y0[:, 0] = torch.linspace(1.5, 2.5, a.batch, dtype=torch.float64)
    t = torch.tensor([0.0, a.t1], dtype=torch.float64)

    def run(per_sample):
        with torch.no_grad():
            return attsolver.solve(vdp, y0, t, method="kvaerno5",
                                   options={"rtol": 1e-6, "atol": 1e-9, "per_sample": per_sample})[-1]

    diff = float((run(True) - run(False)).abs().max())
    times = {"per_sample": [], "lock_step": []}
    for r in range(a.rounds):
        for mode in times:
            start = time.process_time()
            run(mode == "per_sample")
            times[mode].append(time.process_time() - start)
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    ratio = min(times["lock_step"]) / min(times["per_sample"])
    result = {"command": "PYTHONPATH=$PWD python benchmarks/per_sample_steps.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "problem": f"Van der Pol mu={mu:g}, t in [0, {a.t1:g}], batch {a.batch}, x0 in [1.5, 2.5]",
              "max_abs_difference_of_final_states": diff, "threads": 1, "clock": "process_time (CPU)",
              "times_s": times, "lock_step_over_per_sample": ratio}
    with open(a.out + ".json", "w") as fh:
        json.dump(result, fh, indent=2)
    lines = [f"# Per-sample step control vs lock-step (kvaerno5): {result['problem']}", "",
             f"Command: `{result['command']}`", "",
             f"rtol 1e-6, atol 1e-9; one thread; CPU time; {a.rounds} interleaved rounds; final states agree to "
             f"{diff:.1e}.", "", "| mode | min s | median s | max s |", "|---|---|---|---|"]
    for k, v in times.items():
        lines.append(f"| {k} | {min(v):.2f} | {statistics.median(v):.2f} | {max(v):.2f} |")
    lines += ["", f"lock-step / per-sample: {ratio:.1f}x"]
    with open(a.out + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _vdp(mu: float, counter: list):
    def vdp(t, y):
        counter[0] += 1
        x, v = y[..., 0], y[..., 1]
        return torch.stack((v, mu * (1 - x * x) * v - x), -1)
    return vdp


def dopri5_main(a, argv) -> dict:
    """dopri5 on ``batch`` Van der Pol oscillators (x0 in [1.5, 2.5], v0 in [-3, 3]: each at
    its own phase), 41 outputs on [0, t1], four ways:

    * ``per_sample``: ``solve(f, y0, t)`` with ``t`` ``[batch, n_t]`` — one batched loop, a
      step size and accept/reject per sample;
    * ``lock_step_torchdiffeq``: ``solve(f, y0, t)`` with a 1-D ``t`` — torchdiffeq's dopri5
      on the whole batch, one step, its error an RMS over the whole batch;
    * ``lock_step``: the same batched loop with one step for the batch, set by the largest
      error of any sample (each sample held to the tolerance, as per-sample control does);
    * ``one_by_one``: ``solve`` on each sample alone (torchdiffeq), a loop over the batch.
    """
    run = _suite.Run("per_sample_steps", argv, prog="PYTHONPATH=$PWD python benchmarks/per_sample_steps.py")
    counter = [0]
    vdp = _vdp(a.mu, counter)
    B = a.batch
    y0 = torch.zeros(B, 2, dtype=torch.float64)
    y0[:, 0] = torch.linspace(1.5, 2.5, B, dtype=torch.float64)
    y0[:, 1] = torch.linspace(-3.0, 3.0, B, dtype=torch.float64)
    t = torch.linspace(0.0, a.t1, 41, dtype=torch.float64)
    opts = {"rtol": a.rtol, "atol": a.rtol * 1e-2}
    modes = {
        "per_sample": lambda: attsolver.solve(vdp, y0, t.expand(B, -1), method="dopri5", options=opts),
        "lock_step_torchdiffeq": lambda: attsolver.solve(vdp, y0, t, method="dopri5", options=opts),
        "lock_step": lambda: erk_solve(get_pair("dopri5"), vdp, y0, t, solver_options("dopri5", opts), shared=True),
        "one_by_one": lambda: torch.cat([attsolver.solve(vdp, y0[b:b + 1], t, method="dopri5", options=opts)
                                         for b in range(B)], 1),
    }
    with torch.no_grad():
        ref = attsolver.solve(vdp, y0, t.expand(B, -1), method="dopri8", options={"rtol": 1e-11, "atol": 1e-13})
        # checked first: the batch equals each sample solved alone by the same loop, to round-off,
        # and every mode is within its tolerance's reach of a tight reference
        alone = torch.cat([attsolver.solve(vdp, y0[b:b + 1], t[None], method="dopri5", options=opts)
                           for b in range(B)], 1)
        per = modes["per_sample"]()
        round_off = float((per - alone).abs().max())
        assert round_off < 1e-9, round_off  # round-off, grown over ~300 steps of a relaxation oscillation
        errors, evaluations = {}, {}
        for name, fn in modes.items():
            counter[0] = 0
            errors[name] = float((fn() - ref).abs().max() / ref.abs().max())
            evaluations[name] = counter[0]
            assert errors[name] < 1e4 * a.rtol, (name, errors[name])  # a sanity bound: wrong code errs by O(1)
            run.log(f"{name}: max error {errors[name]:.2e}, {evaluations[name]} calls of f")
        timing = _suite.timings(modes, a.rounds, warmup=0, alternate=True)
    cpu = {k: v.cpu for k, v in timing.items()}
    best = {k: min(v) for k, v in cpu.items()}
    report = run.report(
        method="dopri5", problem=f"Van der Pol mu={a.mu:g}, t in [0, {a.t1:g}] (41 outputs), batch {B}, "
                                 "x0 in [1.5, 2.5], v0 in [-3, 3]",
        rtol=a.rtol, atol=a.rtol * 1e-2, rounds=a.rounds, clock="process_time (CPU), one thread",
        per_sample_vs_alone_max_abs=round_off, max_rel_error_vs_tight=errors, calls_of_f=evaluations,
        cpu_s=cpu, speedup_of_per_sample={k: best[k] / best["per_sample"] for k in cpu})
    _suite.write_report(a.out.rsplit("/", 1)[0] if "/" in a.out else ".", "per_sample_steps_dopri5",
                        run.stamp(report, complete=True), _dopri5_markdown, echo=True)
    return report


def rk4_main(a, argv) -> dict:
    """rk4 with ``step_size=0.01`` on ``batch`` Van der Pol oscillators, sample ``b`` on its own
    grid of 21 outputs over [b t1 / (4 batch), t1 + b t1 / (2 batch)] (different starts, lengths
    and step counts): the batched per-sample loop against ``solve`` on each sample alone."""
    run = _suite.Run("per_sample_steps", argv, prog="PYTHONPATH=$PWD python benchmarks/per_sample_steps.py")
    counter = [0]
    vdp = _vdp(a.mu, counter)
    B = a.batch
    y0 = torch.zeros(B, 2, dtype=torch.float64)
    y0[:, 0] = torch.linspace(1.5, 2.5, B, dtype=torch.float64)
    start = torch.arange(B, dtype=torch.float64) * a.t1 / (4 * B)
    end = a.t1 + torch.arange(B, dtype=torch.float64) * a.t1 / (2 * B)
    grid = start[:, None] + (end - start)[:, None] * torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    modes = {
        "batched": lambda: attsolver.solve(vdp, y0, grid, method="rk4", step_size=0.01),
        "one_by_one": lambda: torch.stack([attsolver.solve(vdp, y0[b:b + 1], grid[b], method="rk4",
                                                           step_size=0.01)[:, 0] for b in range(B)], 1),
    }
    with torch.no_grad():
        diff = float((modes["batched"]() - modes["one_by_one"]()).abs().max())
        assert diff < 1e-9, diff  # round-off only: the same steps in the same order
        timing = _suite.timings(modes, a.rounds, warmup=0, alternate=True)
    cpu = {k: v.cpu for k, v in timing.items()}
    report = run.report(
        method="rk4", problem=f"Van der Pol mu={a.mu:g}, batch {B}, each sample its own grid of 21 outputs "
                              f"(starts 0..{float(start[-1]):.3g}, ends {a.t1:g}..{float(end[-1]):.3g}), step_size 0.01",
        rounds=a.rounds, clock="process_time (CPU), one thread", batched_vs_one_by_one_max_abs=diff, cpu_s=cpu,
        speedup_of_batched=min(cpu["one_by_one"]) / min(cpu["batched"]))
    _suite.write_report(a.out.rsplit("/", 1)[0] if "/" in a.out else ".", "per_sample_steps_rk4",
                        run.stamp(report, complete=True), _rk4_markdown, echo=True)
    return report


def _rk4_markdown(r: dict) -> str:
    lines = _suite.header(r, f"Per-sample grids at fixed steps (rk4): {r['problem']}")
    lines += ["", f"{r['clock']}; {r['rounds']} interleaved rounds. Checked first: the batch equals the separate "
              f"solves to {r['batched_vs_one_by_one_max_abs']:.1e}.", "",
              "| mode | min CPU s | median CPU s | max CPU s |", "|---|---:|---:|---:|"]
    for k, v in r["cpu_s"].items():
        lines.append(f"| {k} | {min(v):.3f} | {statistics.median(v):.3f} | {max(v):.3f} |")
    lines += ["", f"one by one / batched (minima): {r['speedup_of_batched']:.1f}x"]
    return "\n".join(lines) + "\n"


def _dopri5_markdown(r: dict) -> str:
    lines = _suite.header(r, f"Per-sample step control (dopri5): {r['problem']}")
    lines += ["", f"rtol {r['rtol']:g}, atol {r['atol']:g}; {r['clock']}; {r['rounds']} interleaved rounds (order "
              "reversed every other round). Checked first: the per-sample batch equals each sample solved alone "
              f"by the same loop to {r['per_sample_vs_alone_max_abs']:.1e}; every mode's error against a "
              "dopri8 solve at rtol 1e-11 is in the table (max abs error over max |y|; relaxation oscillations "
              "amplify local errors, and the modes meet the same tolerance with different norms).", "",
              "| mode | calls of f | max relative error | min CPU s | median CPU s | max CPU s | min / per-sample min |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for k, v in r["cpu_s"].items():
        lines.append(f"| {k} | {r['calls_of_f'][k]} | {r['max_rel_error_vs_tight'][k]:.1e} | {min(v):.3f} | "
                     f"{statistics.median(v):.3f} | {max(v):.3f} | {r['speedup_of_per_sample'][k]:.1f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
