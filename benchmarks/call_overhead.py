"""The fixed cost of a call of ``attsolver.solve`` (issue 24, item 5), before and after a change.

Short solves pay ``solve``'s set-up in full: checking ``t`` and ``y0``, the step grid, a test
call of ``f``, the step-doubling check of a solve without ``step_size``, building the stepper.
This suite times, per call of ``solve``:

* a 1-step fixed-step solve of Lorenz-63 (RK4, one trajectory), with and without
  ``step_size``, next to the bare RK4 step it takes (the floor: ``f`` four times and the
  stage arithmetic, no ``solve``);
* ETDRK4 on Burgers (nx = 256, one field, h = 1e-3, no ``step_size``) over 100 and over 400
  steps: the per-step cost of the short solve over the long one's (target ≤ 1.2).

Each tree (the current one and, with ``--before``, a checkout of the code before the change)
runs in its own worker process, one torch thread; the parent sends both the same calls in
interleaved rounds (alternating which goes first) and each worker reports the CPU time of its
round (the machine is shared: CPU time is less disturbed by other jobs than wall time).
Before timing, every case's result is checked equal between the trees: bit for bit, or to
round-off (:data:`ROUND_OFF` of the largest value) where a change reordered the arithmetic.

    PYTHONPATH=. python benchmarks/call_overhead.py [--before /path/to/old/checkout] [--rounds 21]
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
from pathlib import Path

PROG = "python benchmarks/call_overhead.py"
#: case -> (what it is, calls per round)
CASES = {
    "lorenz63_rk4_1step": ("Lorenz-63, RK4, batch 1, 1 step (step_size given)", 300),
    "lorenz63_rk4_1step_grid": ("Lorenz-63, RK4, batch 1, 1 step (no step_size: step-doubling check)", 300),
    "lorenz63_rk4_bare_step": ("the bare RK4 step of the same (stepper.step, no solve): the floor", 300),
    "burgers256_etdrk4_100": ("Burgers nx=256, ETDRK4, h=1e-3, 100 steps (no step_size)", 6),
    "burgers256_etdrk4_400": ("Burgers nx=256, ETDRK4, h=1e-3, 400 steps (no step_size)", 2),
}
STEPS = {"burgers256_etdrk4_100": 100, "burgers256_etdrk4_400": 400}


# --------------------------------------------------------------------------- the worker (either tree)


def _calls() -> dict:
    """case -> a function making one call, with only the public API (both trees have it)."""
    import torch  # lazy: the worker's tree decides which attsolver it imports

    import attsolver
    from attsolver.steppers import get_method
    from attsolver.systems import Burgers, Lorenz63

    lorenz, y0 = Lorenz63(), torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    t1 = torch.tensor([0.0, 0.01], dtype=torch.float64)
    stepper = get_method("rk4").build(lorenz, y0)
    times = [t1[0]] * 4
    burgers = Burgers(nu=0.01, nx=256, length=1.0)
    u0 = burgers.sample_initial(1, generator=torch.Generator().manual_seed(0))[0]
    t100, t400 = (torch.linspace(0, n * 1e-3, n + 1, dtype=torch.float64) for n in (100, 400))
    return {
        "lorenz63_rk4_1step": lambda: attsolver.solve(lorenz, y0, t1, method="rk4", step_size=0.01),
        "lorenz63_rk4_1step_grid": lambda: attsolver.solve(lorenz, y0, t1, method="rk4"),
        "lorenz63_rk4_bare_step": lambda: stepper.step(times, y0, 0.01),
        "burgers256_etdrk4_100": lambda: attsolver.solve(burgers, u0, t100, method="etdrk4"),
        "burgers256_etdrk4_400": lambda: attsolver.solve(burgers, u0, t400, method="etdrk4"),
    }


def worker() -> int:
    """Read ``{"case", "n"}`` lines on stdin; answer ``{"cpu_s"}`` (the round's CPU time) or,
    for ``n == 0``, ``{"digest"}`` of the case's result."""
    import time

    import torch  # lazy: see _calls

    torch.set_num_threads(1)
    calls = _calls()
    for line in sys.stdin:
        msg = json.loads(line)
        fn = calls[msg["case"]]
        if msg["n"] == 0:
            out = fn()
            digest = hashlib.sha256(out.detach().contiguous().numpy().tobytes()).hexdigest()
            values = out.detach().double().flatten().tolist()
            print(json.dumps({"digest": digest, "shape": list(out.shape), "values": values}), flush=True)
            continue
        c0 = time.process_time()
        for _ in range(msg["n"]):
            fn()
        print(json.dumps({"cpu_s": time.process_time() - c0}), flush=True)
    return 0


# --------------------------------------------------------------------------- the parent


def measure(trees: dict, rounds: int, log) -> list[dict]:
    """Per case: equal results across the trees, then interleaved rounds of CPU time per call."""
    rows = []
    for case, (title, n) in CASES.items():
        equal = same_results(case, {name: tree.ask(case=case, n=0) for name, tree in trees.items()})
        for tree in trees.values():  # warm-up: caches, first-call costs
            tree.ask(case=case, n=max(1, n // 3))
        per_call: dict[str, list[float]] = {name: [] for name in trees}
        names = list(trees)
        for r in range(rounds):
            for name in (names[::-1] if r % 2 else names):
                per_call[name].append(1e6 * trees[name].ask(case=case, n=n)["cpu_s"] / n)
        row = {"case": case, "title": title, "calls_per_round": n, "equal_results": equal}
        for name, values in per_call.items():
            q = statistics.quantiles(values, n=4)
            row[name] = {"median_us": statistics.median(values), "q1_us": q[0], "q3_us": q[2], "min_us": min(values),
                         "rounds_us": values}
        if "before" in trees:
            ratios = [b / a for b, a in zip(per_call["before"], per_call["after"])]
            q = statistics.quantiles(ratios, n=4)
            row["speedup"] = {"median": statistics.median(ratios), "q1": q[0], "q3": q[2]}
        log(f"{case}: " + ", ".join(f"{k} {row[k]['median_us']:.1f} µs" for k in trees))
        rows.append(row)
    return rows


#: results that differ between the trees must agree to this fraction of their largest value
#: (a change that reorders floating-point operations, e.g. a system's f as one matmul)
ROUND_OFF = 1e-13


def same_results(case: str, answers: dict[str, dict]) -> str:
    """``"bit for bit"`` or ``"to round-off (...)"``; an ``AssertionError`` where the trees'
    results differ by more than :data:`ROUND_OFF` of their size (or in shape)."""
    if len({a["digest"] for a in answers.values()}) == 1:
        return "bit for bit"
    first, *rest = answers.values()
    scale = max(abs(v) for v in first["values"])
    worst = 0.0
    for other in rest:
        if other["shape"] != first["shape"]:
            raise AssertionError(f"{case}: the trees' results differ in shape: {first['shape']} vs {other['shape']}")
        worst = max([worst] + [abs(a - b) for a, b in zip(first["values"], other["values"])])
    if not worst <= ROUND_OFF * scale:
        raise AssertionError(f"{case}: the trees' results differ by {worst:.3g} (values up to {scale:.3g})")
    return f"to round-off (largest difference {worst / scale:.1e} of the largest value)"


def step_ratios(rows: list[dict], trees: list[str]) -> dict:
    """Per tree: ETDRK4's cost per step over 100 steps / over 400 (medians), and the fixed cost
    per call that difference implies."""
    by = {r["case"]: r for r in rows}
    out = {}
    for name in trees:
        short, long = by["burgers256_etdrk4_100"][name]["median_us"], by["burgers256_etdrk4_400"][name]["median_us"]
        per_short, per_long = short / 100, long / 400
        out[name] = {"per_step_100_us": per_short, "per_step_400_us": per_long, "ratio": per_short / per_long,
                     "fixed_us": (short * 4 - long) / 3}
    return out


def to_markdown(report: dict) -> str:
    from benchmarks._suite import header  # lazy: the worker never needs the suite layer

    trees = report["trees"]
    lines = [*header(report, "The fixed cost of a call of solve"), "",
             f"CPU time per call of `solve` (µs), one torch thread, {report['rounds']} interleaved rounds per case "
             "(alternating which tree goes first); median [quartiles].  Each tree runs in its own process; every "
             "case's result was checked equal between the trees before timing (bit for bit, or to round-off "
             f"— within {ROUND_OFF:g} of the largest value — where the arithmetic's order changed: see the "
             "last column)."]
    if "before" in trees:
        lines += ["", f"`before`: {report['before_tree']}; `after`: this tree ({report['after_commit']})."]
    lines += ["", "| case | " + " | ".join(trees) + (" | before / after" if "before" in trees else "") +
              " | results equal |", "|---|" + "---:|" * (len(trees) + ("before" in trees)) + "---|"]
    for r in report["rows"]:
        cells = [f"{r[n]['median_us']:.1f} [{r[n]['q1_us']:.1f}–{r[n]['q3_us']:.1f}]" for n in trees]
        if "speedup" in r:
            s = r["speedup"]
            cells.append(f"{s['median']:.2f}× [{s['q1']:.2f}–{s['q3']:.2f}]")
        equal = r["equal_results"] if isinstance(r["equal_results"], str) else "bit for bit"
        lines.append(f"| {r['title']} | " + " | ".join(cells) + f" | {equal} |")
    lines += ["", "ETDRK4's cost per step over 100 steps against over 400 (target ≤ 1.2), and the fixed cost per "
              "call it implies ((4 · t100 − t400) / 3):", "", "| tree | µs/step, 100 steps | µs/step, 400 steps | "
              "ratio | fixed cost per call, µs |", "|---|---:|---:|---:|---:|"]
    for name, s in report["etdrk4"].items():
        lines.append(f"| {name} | {s['per_step_100_us']:.1f} | {s['per_step_400_us']:.1f} | {s['ratio']:.3f} | "
                     f"{s['fixed_us']:.0f} |")
    by = {r["case"]: r for r in report["rows"]}
    floor = by["lorenz63_rk4_bare_step"]
    one = by["lorenz63_rk4_1step"]
    lines += ["", "The 1-step Lorenz-63 solve over its own RK4 step (the part of a call that is not the step): " +
              ", ".join(f"{n}: {one[n]['median_us'] - floor[n]['median_us']:.1f} µs "
                        f"({one[n]['median_us'] / floor[n]['median_us']:.2f}× the step)" for n in trees) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    if argv is None and sys.argv[1:] == ["--worker"]:
        return worker()  # its tree's attsolver comes from PYTHONPATH alone
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
    from benchmarks._suite import Run, code_commit, parser, worker_trees, write_report  # lazy: the worker never needs the suite layer

    ap = parser("call_overhead", __doc__.split("\n\n")[0], prog=PROG, out=None)
    ap.add_argument("--before", type=Path, default=None, help="a checkout of the code before the change")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--out", default=None, help="folder for call_overhead.{json,md} (default: print only)")
    args = ap.parse_args(argv)
    run = Run("call_overhead", argv, prog=PROG)
    with worker_trees(__file__, args.before, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}) as trees:
        rows = measure(trees, args.rounds, run.log)
    commit = code_commit()
    report = run.report(rounds=args.rounds, trees=list(trees), rows=rows, etdrk4=step_ratios(rows, list(trees)),
                        before_tree=None if args.before is None else str(args.before), after_commit=commit)
    run.stamp(report, complete=True)
    if args.out:
        write_report(args.out, "call_overhead", report, to_markdown)
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
