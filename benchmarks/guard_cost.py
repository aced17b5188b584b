"""Where the guard's cost goes in distribution (the ``ood`` suite's cases whose guard cost was near 10 %).

Each case trains its corrector as ``attsolver bench ood`` does (same data, seeds and epochs), then,
in the same process (the allocator's state after training matters: a fresh process page-faults
on the corrector's large temporaries and its solves cost 3x more), times interleaved rounds of
the corrected solve of the 100 in-distribution test rollouts, CPU time, one thread:

* ``none``: no guard;
* ``warn``: ``guard="warn"`` (the default schedule; its scores deferred to the solve's end and
  batched, :mod:`attsolver.integrate.guard_batch`);
* ``warn per step``: ``guard="warn"`` with each score on its step (the guard before the deferral;
  what both modes run with autograd on or with the a-posteriori check);
* ``fallback``: ``guard="fallback"`` (deferred too; in distribution it recomputes only what it
  flags);
* ``loop only``: ``guard="warn"`` with the score replaced by the all-in verdict (the guarded loop,
  its set-up and report, no score);
* ``no knn``: ``guard="warn"`` with the domain's coreset removed (the Mahalanobis and ratio score
  alone);
* ``warn, own f``: ``guard="warn"`` with the corrector's training-system record removed (as for a
  user's own ``f``): the right-hand-side probe (one call of ``f`` on 8 states per solve) instead
  of the parameter comparison.  The Van der Pol ODE's ``f`` is a network: its ``warn`` probes too.

Per variant: the median over rounds of the paired CPU-time ratio to ``none`` in the same round,
its quartiles, and the same as microseconds per step.  Then each piece of a score called alone
(microseconds per call, median of 9 blocks): the Mahalanobis and ratio score, the score with the
nearest-neighbour update, and the update's matrix product.  Outputs are checked equal first.

    attsolver bench guard_cost            # about a minute on a loaded 2-core machine
    attsolver bench guard_cost --quick    # a smoke run
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import attsolver  # noqa: E402
from attsolver.integrate import guard as guard_module  # noqa: E402
from attsolver.integrate import guard_batch  # noqa: E402
from attsolver.integrate.guard import KNN_EVERY, SCORE_EVERY, OutOfDomainWarning  # noqa: E402
from benchmarks._suite import Run, case_suite, header, timings  # noqa: E402
from benchmarks.ood import _data, _ellipsoid_only, cases, probe_only, train_case  # noqa: E402

SUITE = "guard_cost"
CASES = ("lorenz63", "elastic_pendulum", "lorenz96", "vdp_neural_ode")
VARIANTS = ("warn", "warn per step", "fallback", "loop only", "no knn", "warn, own f")


def _all_in(self, y, dy, c):
    """A stand-in for ``_Scorer.ok``: every sample in, no tensor work (the loop's own cost)."""
    state = self.state
    if state.all_in is None:
        state.all_in = torch.ones(y.numel() // self.dim, dtype=torch.bool, device=y.device)
    return state.all_in


def _all_in_recorded(scorer, x, *args):
    """A stand-in for ``guard_batch.recorded_verdicts``: every recorded score in."""
    return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)


def _train(case: dict[str, Any], quick: bool):
    system, h, sampler = case["system"], case["h"], case.get("sampler")
    model, _ = train_case(case, quick)
    test = _data(system, 20 if quick else 100, case["t_test"], h, case["spin_up"], seed=2, sampler=sampler)
    return model, test


def _per_call(fn, calls: int) -> float:
    """Microseconds per call of ``fn``: the median of 9 blocks of ``calls`` calls (CPU time)."""
    blocks = []
    for _ in range(9):
        c0 = time.process_time()
        for _ in range(calls):
            fn()
        blocks.append((time.process_time() - c0) / calls * 1e6)
    return float(np.median(blocks))


def score_pieces(model, test, h: float, calls: int) -> dict[str, float]:
    """Each piece of a score alone, microseconds per call, on the test set's first states."""
    y = test.y[:, 0]
    dy = test.y[:, 1] - y  # the reference's first step: an in-distribution increment
    c = model(test.t[0], y, dy, h)
    scorer = guard_module._Scorer(model.domain, h, y)
    scorer.ok(y, dy, c)
    out: dict[str, float] = {}

    def plain():
        scorer.state.knn_due = 10 ** 9  # the nearest-neighbour update not due
        return scorer.ok(y, dy, c)

    out["score"] = _per_call(plain, calls)
    if scorer.core_t is not None:
        def with_knn():
            scorer.state.knn_due = 0
            return scorer.ok(y, dy, c)
        out["score + knn update"] = _per_call(with_knn, calls)
        u = torch.randn(len(y), scorer.core_t.shape[0], dtype=scorer.knn_dtype)
        buf = torch.empty(len(y), scorer.core_t.shape[1], dtype=scorer.knn_dtype)
        out["knn product alone"] = _per_call(lambda: torch.addmm(scorer.core_sq, u, scorer.core_t, out=buf), calls)
    out["one small op (y * 2)"] = _per_call(lambda: y * 2.0, calls)
    return out


def run_case(case: dict[str, Any], quick: bool, run: Run) -> dict[str, Any]:
    model, test = _train(case, quick)
    run.log(f"{case['name']}: trained")
    system, h, y0, t = case["system"], case["h"], test.y[:, 0], test.t
    ellipsoid = _ellipsoid_only(model)

    def solve(guard, m=model):
        return lambda: attsolver.solve(system, y0, t, step_size=h, corrector=m, guard=guard)

    def loop_only():
        real, recorded = guard_module._Scorer.ok, guard_batch.recorded_verdicts
        guard_module._Scorer.ok, guard_batch.recorded_verdicts = _all_in, _all_in_recorded
        try:
            return solve("warn")()
        finally:
            guard_module._Scorer.ok, guard_batch.recorded_verdicts = real, recorded

    def per_step():
        cap, guard_batch.DEFERRED_MAX_BYTES = guard_batch.DEFERRED_MAX_BYTES, 0
        try:
            return solve("warn")()
        finally:
            guard_batch.DEFERRED_MAX_BYTES = cap

    outs: dict[str, Any] = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        tm = timings({"none": solve(None), "warn": solve("warn"), "warn per step": per_step,
                      "fallback": solve("fallback"), "loop only": loop_only, "no knn": solve("warn", ellipsoid),
                      "warn, own f": solve("warn", probe_only(model))}, 3 if quick else 40, alternate=True,
                     first=lambda name, out: outs.__setitem__(name, out))
        pieces = score_pieces(model, test, h, 50 if quick else 1000)
    steps = len(t) - 1
    base = np.array(tm["none"].cpu)
    rows = {}
    for k in VARIANTS:
        paired = np.array(tm[k].cpu) / base - 1
        extra = (np.array(tm[k].cpu) - base) / steps * 1e6
        rows[k] = {"overhead": float(np.median(paired)),
                   "overhead_q1_q3": [float(np.quantile(paired, 0.25)), float(np.quantile(paired, 0.75))],
                   "us_per_step": float(np.median(extra)),
                   "us_per_step_q1_q3": [float(np.quantile(extra, 0.25)), float(np.quantile(extra, 0.75))],
                   "outputs_equal": bool(torch.equal(outs["none"], outs[k]))}
    run.log(f"{case['name']}: timed")
    return {"case": case["name"], "steps": steps, "batch": len(y0), "coreset": model.domain.coreset is not None,
            "none_cpu_median_s": float(np.median(base)), "none_us_per_step": float(np.median(base)) / steps * 1e6,
            "variants": rows, "pieces_us": pieces}


def markdown(report: dict[str, Any]) -> str:
    lines = header(report, "Where the guard's cost goes (in distribution)")
    lines += ["", f"The score runs every {report['score_every']} steps, the nearest-neighbour update on one score "
              f"in {report['knn_every']}. Overhead: median over rounds of the paired CPU-time ratio to the "
              "unguarded solve [quartiles], and the same in microseconds per step; warn: the scores deferred "
              "to the solve's end and batched (fallback too, then its flagged rollouts solved again); warn per step: "
              "each score on its step (the guard before the deferral); "
              "loop only: the score replaced by the all-in verdict; no knn: the coreset removed. "
              "= : outputs equal to the unguarded solve.", "",
              "| case | steps x batch | none (us/step) | " + " | ".join(VARIANTS) + " |",
              "|---|---|---|" + "---|" * len(VARIANTS)]
    for c in report["cases"]:
        cells = []
        for k in VARIANTS:
            v = c["variants"][k]
            q1, q3 = v["overhead_q1_q3"]
            cells.append(f"{v['overhead']:+.1%} [{q1:+.0%}, {q3:+.0%}], {v['us_per_step']:+.0f} us"
                         f" {'=' if v['outputs_equal'] else '≠'}")
        lines.append(f"| {c['case']} | {c['steps']} x {c['batch']} | {c['none_us_per_step']:.0f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Pieces of a score called alone (microseconds per call, CPU time; inside a solve, between "
              "the corrector's calls, they cost more: compare with the table above):", "",
              "| case | " + " | ".join(report["cases"][0]["pieces_us"]) + " |",
              "|---|" + "---|" * len(report["cases"][0]["pieces_us"])]
    for c in report["cases"]:
        lines.append(f"| {c['case']} | " + " | ".join(f"{c['pieces_us'].get(k, float('nan')):.1f}"
                                                   for k in report["cases"][0]["pieces_us"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return case_suite(SUITE, __doc__, argv, quick="a smoke run: 3 epochs, 20 rollouts, 3 rounds",
                      cases=lambda quick: [c for c in cases(quick) if c["name"] in CASES], run_case=run_case,
                      markdown=markdown, score_every=SCORE_EVERY, knn_every=KNN_EVERY)


if __name__ == "__main__":
    raise SystemExit(main())
