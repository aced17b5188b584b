"""The learned-interpolation step's cost in FD steps (X), one tree against another.

The Kolmogorov suite's speed-up of a learned interpolation is ``r^h / X``: X is its step's cost
in steps of the FD rung on the same grid.  Across suite runs X moves by up to a third at batch 16
(3-5 timing rounds of short solves on a shared machine), too much to see a change of the host's
implementation.  This suite measures only X, the way the suite does (the CPU time of a 2-step and
a 12-step solve in the same round; the per-step cost is the difference), with many rounds:

* for the builds the Kolmogorov pages report (the linear 3x3 map on the 4x1 stencil and the
  8-channel, 2-layer CNN on the 4x3 stencil, weights once per step; the 16-channel, 3-layer CNN with
  weights per stage, Re = 1000's default) at Re = 500 (32^2, step 0.025) and Re = 1000 (64^2, the
  suite's FD step ``0.2 / 17``), batches 1, 16 and 64, float32, from fields spun up by the FD
  solver for :data:`SPIN_UP` time units;
* FD and the learned solver alternate within each round of one worker, so X is a ratio taken
  inside one process a few milliseconds apart;
* each tree (this checkout and, with ``--before``, a checkout of the code before a change) runs
  in its own worker process; the parent alternates the trees round by round and reports per tree
  the median X with quartiles over the rounds and, with ``--before``, before / after;
* before timing, every case's end state is checked equal between the trees (to float32
  round-off: the two trees may order the arithmetic differently).

The workers run with glibc's allocator told to keep large blocks (:data:`ALLOCATOR`), so that
a step's multi-megabyte temporaries are not returned to the OS and faulted in again on every call,
at a rate that depends on what the process ran before. The model's weights are random (seeded; the
last layer small). The cost does depend on the data
through the convolution (a raw random field timed the 16-channel CNN 2x slower than the suite's
test fields), hence the spin-up.

    PYTHONPATH=. python benchmarks/li_host_cost.py [--before /path/to/old/checkout] [--rounds 25] [--out DIR]
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

PROG = "python benchmarks/li_host_cost.py"
#: regime -> (grid, viscosity, FD step the suite gives the rung and the learned solver)
REGIMES = {"re500": (32, 1.0 / 500.0, 0.025), "re1000": (64, 1.0 / 1000.0, 0.2 / 17)}
#: build -> LearnedInterpolation keywords (the builds the Kolmogorov pages report)
BUILDS = {"linear_4x1": {"hidden": 4, "layers": 1, "weights_per": "step"},
          "cnn8x2_4x3": {"hidden": 8, "layers": 2, "width": 4, "transverse": 3, "weights_per": "step"},
          "cnn16x3_stage": {"hidden": 16, "layers": 3, "weights_per": "stage"}}
#: time units of FD spin-up from the random initial fields (the cost of oneDNN's convolution depends on the
#: data: a 16-channel CNN timed 2x slower on the raw random fields than on the suite's spun-up test fields)
SPIN_UP = 2.0
BATCHES = (1, 16, 64)
STEPS = (2, 12)
#: glibc's allocator kept from handing large blocks back to the OS between calls, in both trees' workers:
#: otherwise each call re-faults its multi-megabyte temporaries, and how often depends on the process's
#: history (the per-stage 16-channel CNN at batch 64 timed 44 ms per step with these, 87 ms without, in
#: fresh processes of either tree, and 46 vs 70 ms between two workers that had run other cases first)
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}
#: end states of the two trees must agree to this fraction of their largest value (float32)
ROUND_OFF = 1e-4


def cases() -> list[tuple[str, str, int]]:
    return [(regime, build, b) for regime in REGIMES for build in BUILDS for b in BATCHES]


# --------------------------------------------------------------------------- the worker (either tree)


def _solvers(regime: str, build: str, batch: int):
    """``{"fd": run(k), "li": run(k)}``: a ``k``-step solve of each from the same fields."""
    import torch  # lazy: the worker's tree decides which attsolver it imports

    from attsolver import solve
    from attsolver.systems import LearnedInterpolation, NavierStokes2DFD

    n, nu, h = REGIMES[regime]
    torch.manual_seed(0)
    li = LearnedInterpolation(n, nu, **BUILDS[build])
    for p in li.net[-1].parameters():
        torch.nn.init.normal_(p, std=0.01)
    fd, lis = NavierStokes2DFD(n=n, nu=nu), NavierStokes2DFD(n=n, nu=nu, interpolation=li)
    w0 = fd.sample_initial(batch, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    w0 = w0 * min(1.0, 0.5 * fd.max_step_size(w0) / h)  # below the CFL limit at this step
    with torch.no_grad():  # turbulence-like fields, as the suite's test sets (module docstring: SPIN_UP)
        w0 = solve(fd, w0, torch.tensor([0.0, SPIN_UP], dtype=torch.float64), method="ssprk3", step_size=h)[-1]

    def make(system):
        def run(k):
            t = torch.tensor([0.0, k * h], dtype=torch.float64)
            with torch.no_grad():
                return solve(system, w0, t, method="ssprk3", step_size=h, options={"check_finite": False})[-1]
        return run
    return {"fd": make(fd), "li": make(lis)}


def worker() -> int:
    """Read ``{"case": [regime, build, batch], "rounds": r}``; answer the end states' values
    (``r == 0``) or ``{"fd": [[t2, t12], ...], "li": [...]}``, CPU seconds, FD and the learned
    solver alternating in every round."""
    import gc
    import time

    import torch

    torch.set_num_threads(1)
    built: dict = {}
    for line in sys.stdin:
        msg = json.loads(line)
        key = tuple(msg["case"])
        if key not in built:
            built[key] = _solvers(*key)
        runs = built[key]
        if msg["rounds"] == 0:
            out = {name: run(STEPS[1]).double().flatten()[::97].tolist() for name, run in runs.items()}
            print(json.dumps(out), flush=True)
            continue
        times: dict = {name: [] for name in runs}
        gc.collect()
        gc.disable()
        try:
            for r in range(msg["rounds"]):
                for name in (["fd", "li"] if r % 2 == 0 else ["li", "fd"]):
                    pair = []
                    for k in STEPS:
                        c0 = time.process_time()
                        runs[name](k)
                        pair.append(time.process_time() - c0)
                    times[name].append(pair)
        finally:
            gc.enable()
        print(json.dumps(times), flush=True)
    return 0


# --------------------------------------------------------------------------- the parent


def same_results(answers: dict[str, dict]) -> float:
    """The largest difference of the trees' end states over the largest value (FD and learned);
    an ``AssertionError`` above :data:`ROUND_OFF` or where an end state is not finite (a difference
    with a NaN would compare as no difference)."""
    for tree, answer in answers.items():
        if not all(math.isfinite(v) for values in answer.values() for v in values):
            raise AssertionError(f"the {tree} tree's end state is not finite: the timed solve blew up")
    first, *rest = answers.values()
    worst = 0.0
    for name in first:
        scale = max(abs(v) for v in first[name])
        for other in rest:
            worst = max([worst] + [abs(a - b) / scale for a, b in zip(first[name], other[name])])
    if not worst <= ROUND_OFF:
        raise AssertionError(f"the trees' end states differ by {worst:.3g} of their largest value")
    return worst


def _quartiles(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2]}


def measure(trees: dict, rounds: int, per_ask: int, log) -> list[dict]:
    rows = []
    for case in cases():
        diff = same_results({name: tree.ask(case=list(case), rounds=0) for name, tree in trees.items()})
        for tree in trees.values():  # warm-up: first-call costs, the convolution's kernel choice
            tree.ask(case=list(case), rounds=2)
        per: dict = {name: {"fd": [], "li": [], "x": []} for name in trees}
        names = list(trees)
        for r in range(max(1, rounds // per_ask)):
            for name in (names[::-1] if r % 2 else names):
                got = trees[name].ask(case=list(case), rounds=per_ask)
                for (f2, f12), (l2, l12) in zip(got["fd"], got["li"]):
                    fd, li = (f12 - f2) / (STEPS[1] - STEPS[0]), (l12 - l2) / (STEPS[1] - STEPS[0])
                    per[name]["fd"].append(fd)
                    per[name]["li"].append(li)
                    per[name]["x"].append(li / fd)
        row = {"regime": case[0], "build": case[1], "batch": case[2], "end_state_difference": diff}
        for name, v in per.items():
            row[name] = {"fd_step_ms": _quartiles([1e3 * s for s in v["fd"]]),
                         "li_step_ms": _quartiles([1e3 * s for s in v["li"]]), "x": _quartiles(v["x"]),
                         "rounds": len(v["x"])}
        if "before" in per:
            row["x_before_over_after"] = row["before"]["x"]["median"] / row["after"]["x"]["median"]
        log(f"{case}: " + ", ".join(f"{k} X {row[k]['x']['median']:.2f}" for k in trees))
        rows.append(row)
    return rows


def to_markdown(report: dict) -> str:
    from benchmarks._suite import header  # lazy: the worker never needs the suite layer

    trees = report["trees"]
    lines = [*header(report, "The learned-interpolation step in FD steps (X)"), "",
             f"X = CPU time of one step of the learned solver / one step of the FD rung on the same grid, "
             f"one torch thread, float32, SSP-RK3 at the suite's step, from fields spun up {SPIN_UP:g} time units; per step: a "
             f"{STEPS[1]}-step solve less a {STEPS[0]}-step solve; FD and the learned solver alternate "
             f"within each round; {report['rounds']} rounds per case and tree, the trees alternating; median "
             f"[quartiles]. Before timing, the trees' end states agreed to the last column (float32 round-off)."]
    if "before" in trees:
        lines += ["", f"`before`: {report['before_tree']}; `after`: this tree ({report['after_commit']})."]
    head = ["regime, grid", "build", "batch"]
    for name in trees:
        head += [f"{name}: FD step ms", f"{name}: learned step ms", f"{name}: X"]
    if "before" in trees:
        head.append("X before / after")
    lines += ["", "| " + " | ".join(head + ["end states differ by"]) + " |", "|---|---|---:|" +
              "---:|" * (len(head) - 3) + "---:|"]
    for r in report["rows"]:
        n = REGIMES[r["regime"]][0]
        cells = [f"{r['regime']}, {n}²", r["build"].replace("_", ", "), str(r["batch"])]
        for name in trees:
            t = r[name]
            cells += [f"{t['fd_step_ms']['median']:.3f}", f"{t['li_step_ms']['median']:.3f}",
                      f"{t['x']['median']:.2f} [{t['x']['q1']:.2f}, {t['x']['q3']:.2f}]"]
        if "before" in trees:
            cells.append(f"{r['x_before_over_after']:.2f}×")
        cells.append(f"{r['end_state_difference']:.1e}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    if argv is None and sys.argv[1:] == ["--worker"]:
        return worker()  # its tree's attsolver comes from PYTHONPATH alone
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
    from benchmarks._suite import Run, code_commit, parser, worker_trees, write_report  # lazy: not in the worker

    ap = parser("li_host_cost", __doc__.split("\n\n")[0], prog=PROG, out=None)
    ap.add_argument("--before", type=Path, default=None, help="a checkout of the code before the change")
    ap.add_argument("--rounds", type=int, default=25, help="timing rounds per case and tree (default 25)")
    ap.add_argument("--per-ask", type=int, default=5, help="rounds a worker runs per request (default 5)")
    ap.add_argument("--out", default=None, help="folder for li_host_cost.{json,md} (default: print only)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.per_ask < 1:
        ap.error(f"--rounds and --per-ask must be >= 1, got {args.rounds} and {args.per_ask}")
    run = Run("li_host_cost", argv, prog=PROG)
    # one thread by torch.set_num_threads in the worker, as the Kolmogorov suite times (OMP_NUM_THREADS=1 in
    # the environment instead measured the learned step 10-50 % slower at 32², batch 16, on this CPU)
    with worker_trees(__file__, args.before, env=ALLOCATOR, drop=("OMP_NUM_THREADS", "MKL_NUM_THREADS")) as trees:
        rows = measure(trees, args.rounds, args.per_ask, run.log)
    report = run.report(rounds=args.rounds, trees=list(trees), rows=rows, after_commit=code_commit(),
                        before_tree=None if args.before is None else str(args.before))
    run.stamp(report, complete=True)
    if args.out:
        write_report(args.out, "li_host_cost", report, to_markdown)
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
