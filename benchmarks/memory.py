"""Peak memory of ``attsolver.solve`` against the size of its result (and torchdiffeq's).

Each case runs in a fresh Python process: after imports and inputs are built, the kernel's
peak-RSS mark is reset (``/proc/self/clear_refs``), the solve runs, and the peak RSS above
the starting RSS is compared with the result's size.  Linux only.

    python benchmarks/memory.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Run, figure, parser, provenance_lines, read_report, write_report  # noqa: E402

PROG = "python benchmarks/memory.py"

_PRELUDE = textwrap.dedent("""
    import gc, json, re, sys, time
    import numpy as np, torch
    torch.set_num_threads(1)
    import attsolver, torchdiffeq

    def _kib(field):
        with open("/proc/self/status") as fh:
            return int(re.search(field + r":\\s+(\\d+) kB", fh.read()).group(1))

    def measure(run):
        gc.collect()
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
        before = _kib("VmRSS")
        t0 = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - t0
        peak = _kib("VmHWM")
        nbytes = out.numel() * out.element_size() if isinstance(out, torch.Tensor) else int(out)
        print(json.dumps({"peak_above_start_mb": (peak - before) / 1024, "result_mb": nbytes / 2**20,
                          "seconds": seconds}))
""")

CASES = {
    "lorenz96_batch4096_400steps": ("Lorenz-96 (N=40), batch 4096, 400 RK4 steps, float64", """
        s = attsolver.systems.Lorenz96(N=40, F=8.0)
        y0 = s.sample_initial(4096, generator=torch.Generator().manual_seed(0))
        t = torch.linspace(0, 4.0, 401, dtype=torch.float64)
        attsolver.solve(s, y0[:2], t[:3])  # warm-up outside the measurement
        torchdiffeq.odeint(s, y0[:2], t[:3], method="rk4")
    """, {"attsolver rk4 (eager)": "attsolver.solve(s, y0, t, method='rk4')",
          # compiled once beforehand (same configuration), so the compiler's own memory is not counted
          "attsolver rk4 (compile)": "attsolver.solve(s, y0, t, method='rk4', options={'compile': True})",
          "torchdiffeq rk4": "torchdiffeq.odeint(s, y0, t, method='rk4')"}),
    "lorenz63_1e6_outputs": ("Lorenz-63, one trajectory, 10^6 output times (one RK4 step each), float64", """
        s = attsolver.systems.Lorenz63()
        y0 = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
        t = torch.linspace(0, 1e4, N_OUT, dtype=torch.float64)
        attsolver.solve(s, y0, t[:3])
    """, {"attsolver rk4 (eager)": "attsolver.solve(s, y0, t, method='rk4')"}),
    "stage_times_1e8_steps": ("Stage-time bookkeeping of a 10^8-step solve (first 8 windows of 1024 steps)", """
        from attsolver.integrate.checks import step_grid
        from attsolver.integrate.loop import StepPlan, stage_times
        from attsolver.steppers import get_method
        s = attsolver.systems.Lorenz63()
        y0 = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
        t = torch.tensor([0.0, 1.0], dtype=torch.float64)
        stepper = get_method("rk4").build(s, y0)

        def first_windows():
            n_sub, h_int = step_grid(t.numpy(), 1e-8, max_steps=10**9)
            assert int(n_sub.sum()) == 10**8
            times = stage_times(StepPlan("rk4", stepper, None, y0, t, t.numpy(), n_sub, h_int))
            for _ in range(8 * 1024):
                next(times)
            return 0
    """, {"attsolver _stage_times": "first_windows()"}),
}


def run_case(setup: str, call: str, env: dict) -> dict:
    # a compiled row runs once first (same configuration), so the compiler's memory is not counted
    warm = f"_ = {call}\ndel _\n" if "compile" in call else ""
    code = _PRELUDE + textwrap.dedent(setup) + warm + f"measure(lambda: {call})\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def to_markdown(report: dict) -> str:
    lines = ["# Memory: peak RSS of a solve against its result's size", "", *provenance_lines(report), "",
             "Each row is a fresh process; `peak` is the peak RSS above the RSS just before the call "
             "(inputs built, warm-up done).  Target (issue 15): peak <= 1.15x the result plus O(state).", ""]
    for c in report["cases"]:
        lines += [f"## {c['title']}", "", "| contender | result MB | peak above start MB | peak / result | s |",
                  "|---|---:|---:|---:|---:|"]
        for name, r in c["rows"].items():
            if "error" in r:
                lines.append(f"| {name} | | error: {r['error']} | | |")
                continue
            ratio = f"{r['peak_over_result']:.2f}×" if "peak_over_result" in r else "—"
            lines.append(f"| {name} | {r['result_mb']:.1f} | {r['peak_above_start_mb']:.1f} | {ratio} | {r['seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict):
    """``memory.png``: the result's size and the peak above the start, per case and contender."""
    rows = [(f"{c['case']}: {name}", r) for c in report["cases"] for name, r in c["rows"].items() if "error" not in r]
    fig, ax = figure(figsize=(8, 0.6 + 0.5 * len(rows)))
    for i, (label, r) in enumerate(rows):
        ax.barh(i + 0.2, r["result_mb"], 0.4, color="0.6", label="result" if i == 0 else None)
        ax.barh(i - 0.2, r["peak_above_start_mb"], 0.4, color="C0", label="peak above start" if i == 0 else None)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
    ax.set(xscale="log", xlabel="MB")
    ax.legend(fontsize=8)
    yield "memory.png", fig


def main(argv=None) -> int:
    ap = parser("memory", __doc__, prog=PROG, quick="10^5 instead of 10^6 output times; no compile row")
    ap.add_argument("--cases", default="all", help=f"comma-separated subset of: {', '.join(CASES)}")
    args = ap.parse_args(argv)
    run = Run("memory", argv, prog=PROG, quick=args.quick)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1])] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    results = []
    for key, (title, setup, calls) in CASES.items():
        if args.cases != "all" and key not in args.cases.split(","):
            continue
        setup = setup.replace("N_OUT", str(10**5 if args.quick else 10**6))
        rows = {}
        for name, call in calls.items():
            if args.quick and "compile" in name:
                continue
            rows[name] = r = run_case(setup, call, env)
            if "result_mb" in r and r["result_mb"] > 0:
                r["peak_over_result"] = r["peak_above_start_mb"] / r["result_mb"]
            run.log(f"{key} {name} {r}")
        results.append({"case": key, "title": title, "rows": rows})
    out = Path(args.out)
    if args.cases != "all" and (out / "memory.json").exists():  # keep the cases not rerun
        rerun = {c["case"] for c in results}
        results = [c for c in read_report(out / "memory.json")["cases"] if c["case"] not in rerun] + results
        results.sort(key=lambda c: list(CASES).index(c["case"]))
    write_report(out, "memory", run.stamp(run.report(cases=results), complete=True), to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
