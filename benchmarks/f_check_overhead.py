"""Overhead of ``solve()``'s per-call check of a user-defined ``f`` instance (issue 17).

A user's System subclass (here ``class UserLorenz63(Lorenz63): pass``) is checked for y's
shape and dtype on every call, through a view of the same object; attsolver's own
``Lorenz63`` is not.  The two compute the same thing, so the ratio of their times is the
cost of the check.  Outputs are checked equal first; timings are interleaved, one thread,
median of the per-round ratios.

    python benchmarks/f_check_overhead.py [--rounds 15] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from attsolver import solve
from attsolver.systems import Lorenz63, Lorenz96


class UserLorenz63(Lorenz63):
    pass


class UserLorenz96(Lorenz96):
    pass


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default=None, help="folder for f_check_overhead.{json,md}")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = [("lorenz63 batch 1", Lorenz63(), UserLorenz63(), (3,)),
             ("lorenz63 batch 256", Lorenz63(), UserLorenz63(), (256, 3)),
             ("lorenz96 N=40 batch 1", Lorenz96(), UserLorenz96(), (40,)),
             ("lorenz96 N=40 batch 256", Lorenz96(), UserLorenz96(), (256, 40))]
    h = 0.01
    t = torch.linspace(0, h * args.steps, 11, dtype=torch.float64)
    rows = []
    for name, builtin, user, shape in cases:
        y0 = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 1.0
        run_b = lambda: solve(builtin, y0, t, method="rk4", step_size=h)  # noqa: E731
        run_u = lambda: solve(user, y0, t, method="rk4", step_size=h)  # noqa: E731
        assert torch.equal(run_b(), run_u()), name  # the check changes nothing
        ratios, tb, tu = [], [], []
        for r in range(args.rounds):
            a, b = (_time(run_b), _time(run_u)) if r % 2 == 0 else tuple(reversed((_time(run_u), _time(run_b))))
            tb.append(a)
            tu.append(b)
            ratios.append(b / a)
        rows.append({"case": name, "steps": args.steps, "evals": 4 * args.steps,
                     "unchecked_ms": 1e3 * statistics.median(tb), "checked_ms": 1e3 * statistics.median(tu),
                     "ratio_median": statistics.median(ratios),
                     "ratio_q1_q3": [statistics.quantiles(ratios, n=4)[0], statistics.quantiles(ratios, n=4)[2]],
                     "per_eval_us": 1e6 * (statistics.median(tu) - statistics.median(tb)) / (4 * args.steps)})
    lines = ["| case | rk4 steps | unchecked (built-in) ms | checked (user subclass) ms | ratio (median, IQR) | extra µs per f call |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['steps']} | {r['unchecked_ms']:.1f} | {r['checked_ms']:.1f} | "
                     f"{r['ratio_median']:.3f} ({r['ratio_q1_q3'][0]:.3f}–{r['ratio_q1_q3'][1]:.3f}) | "
                     f"{r['per_eval_us']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        meta = {"command": "python benchmarks/f_check_overhead.py --out benchmarks/results",
                "rounds": args.rounds, "torch": torch.__version__, "machine": platform.machine(), "threads": 1}
        from attsolver._io import atomic_write_text
        atomic_write_text(out / "f_check_overhead.json", json.dumps({"meta": meta, "rows": rows}, indent=2))
        atomic_write_text(out / "f_check_overhead.md",
                          f"Made by `{meta['command']}` (torch {meta['torch']}, 1 thread, {args.rounds} "
                          "interleaved rounds).\n\n" + table + "\n")


if __name__ == "__main__":
    main()
