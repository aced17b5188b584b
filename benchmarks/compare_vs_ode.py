"""Does ``attsolver compare`` reproduce the committed ode benchmark's speed-up columns?

Runs :func:`attsolver.compare` (classical ladders only) on the ode benchmark's own test set of
one case, then recomputes every committed row's speed-ups with the freshly timed ladder (the
corrected time being the row's committed ratio to the coarse solve times the coarse time
measured now) and prints the ratio library / committed: 1 within timing noise.

    attsolver bench compare_vs_ode                  # elastic_pendulum, ~1 min on 2 cores
    attsolver bench compare_vs_ode --case lorenz96
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from attsolver.evaluate.comparison import compare
from attsolver.evaluate.metrics import speedups_at_equal_accuracy

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="attsolver bench compare_vs_ode", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="elastic_pendulum")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ode = sys.modules.get("benchmarks.ode")
    if ode is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("benchmarks.ode", ROOT / "benchmarks" / "ode.py")
        ode = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = ode
        spec.loader.exec_module(ode)
    rep = json.loads((ROOT / "benchmarks" / "results" / "ode.json").read_text())
    case = ode.CASES[args.case]
    test = ode.make_test_set(case, rep["cases"][args.case]["n_test"])
    res = compare(ode.case_system(case), data=test.data, method=case.method, step_size=case.step,
                  refinements=case.fine_ks, rk4_refinements=case.rk4_ks, dopri_rtols=case.dopri_rtols,
                  rounds=args.rounds, match=case.match, lyapunov_exponent=test.lyapunov, progress=False)
    coarse = next(e for e in res.entries if e["label"] == f"{case.method} h/1")["time_s"]
    same, best = [], []
    for r in rep["rows"]:
        if r["case"] != args.case or r["speedup_same"] is None or r["speedup_best"] is None:
            continue
        s = speedups_at_equal_accuracy(res.entries, r["err_match"], r["time_ratio_vs_coarse"] * coarse, case.match)
        same.append(s["speedup_same"] / r["speedup_same"])
        best.append(s["speedup_best"] / r["speedup_best"])
    print(f"{args.case}: {len(same)} committed rows; speed-up from attsolver.compare / committed: same method "
          f"median {statistics.median(same):.3f} [{min(same):.3f}, {max(same):.3f}], best classical median "
          f"{statistics.median(best):.3f} [{min(best):.3f}, {max(best):.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
