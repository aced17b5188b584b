"""Does ``attsolver compare`` reproduce the committed ode benchmark's speed-up columns?

Runs :func:`attsolver.compare` (classical ladders only) on the ode benchmark's own test set of
one case, then recomputes every committed row's speed-ups with the freshly timed ladder (the
corrected time being the row's committed ratio to the coarse solve times the coarse time
measured now) and reports the ratio library / committed: 1 within timing noise.

    attsolver bench compare_vs_ode                  # elastic_pendulum, ~1 min on 2 cores
    attsolver bench compare_vs_ode --case lorenz96 --out DIR
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from attsolver.evaluate.comparison import compare
from attsolver.evaluate.metrics import speedups_at_equal_accuracy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's root: benchmarks._suite and the ode suite
from benchmarks import ode  # noqa: E402
from benchmarks._suite import Run, figure, header, parser, read_report, write_report  # noqa: E402


def to_markdown(report: dict) -> str:
    lines = [*header(report, "attsolver compare against the committed ode benchmark"), ""]
    for key, label in (("same", "same method"), ("best", "best classical")):
        r = report["ratios"][key]
        lines.append(f"{report['case']}: {len(r)} committed rows; speed-up from attsolver.compare / committed, "
                     f"{label}: median {statistics.median(r):.3f} [{min(r):.3f}, {max(r):.3f}].")
    return "\n".join(lines) + "\n"


def plot(report: dict):
    """``compare_vs_ode.png``: the ratio library / committed of every row's two speed-ups."""
    fig, ax = figure(figsize=(6, 3.6))
    for i, (key, label) in enumerate((("same", "vs same method"), ("best", "vs best classical"))):
        ax.scatter([i] * len(report["ratios"][key]), report["ratios"][key], s=10, alpha=0.5, label=label)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks([0, 1], ["vs same method", "vs best classical"])
    ax.set(ylabel="speed-up: attsolver.compare / committed", title=report["case"])
    yield "compare_vs_ode.png", fig


def main(argv=None) -> int:
    ap = parser("compare_vs_ode", __doc__, out="out/bench-compare_vs_ode")
    ap.add_argument("--case", default="elastic_pendulum")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    run = Run("compare_vs_ode", argv)
    rep = read_report(ROOT / "benchmarks" / "results" / "ode.json")
    case = ode.CASES[args.case]
    test = ode.make_test_set(case, rep["cases"][args.case]["n_test"])
    res = compare(ode.case_system(case), data=test.data, method=case.method, step_size=case.step,
                  refinements=case.fine_ks, rk4_refinements=case.rk4_ks, dopri_rtols=case.dopri_rtols,
                  rounds=args.rounds, match=case.match, lyapunov_exponent=test.lyapunov, progress=False)
    coarse = next(e for e in res.entries if e["label"] == f"{case.method} h/1")["time_s"]
    ratios = {"same": [], "best": []}
    for r in rep["rows"]:
        if r["case"] != args.case or r["speedup_same"] is None or r["speedup_best"] is None:
            continue
        s = speedups_at_equal_accuracy(res.entries, r["err_match"], r["time_ratio_vs_coarse"] * coarse, case.match)
        for key in ratios:
            ratios[key].append(s[f"speedup_{key}"] / r[f"speedup_{key}"])
    report = run.stamp(run.report(case=args.case, rounds=args.rounds, ratios=ratios), complete=True)
    write_report(args.out, "compare_vs_ode", report, to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
