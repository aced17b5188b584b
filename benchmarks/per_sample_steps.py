"""Per-sample step control against lock-step, ``kvaerno5`` on a batch of Van der Pol
oscillators at different phases (each sample's fast transitions come at its own times, so
a lock-step batch takes the smallest step of any sample at every time).

    PYTHONPATH=$PWD python benchmarks/per_sample_steps.py --batch 16 --mu 100 --t1 200 --rounds 3

One thread, CPU time (``time.process_time``), the two modes interleaved round by round;
outputs checked to agree first.  Writes benchmarks/results/per_sample_steps.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

import attsolver


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--mu", type=float, default=100.0)
    ap.add_argument("--t1", type=float, default=200.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/per_sample_steps")
    a = ap.parse_args(argv)
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


if __name__ == "__main__":
    main()
