"""Overhead of ``solve()``'s per-call check of a user-defined ``f`` instance (issue 17).

A user's System subclass (here ``class UserLorenz63(Lorenz63): pass``) is checked for y's
shape and dtype on every call, through a view of the same object; attsolver's own
``Lorenz63`` is not.  The two compute the same thing, so the ratio of their times is the
cost of the check.  Outputs are checked equal first; timings are interleaved (alternating
order), one thread, median of the per-round ratios.

    python benchmarks/f_check_overhead.py [--rounds 15] [--out benchmarks/results]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

from attsolver import solve
from attsolver.systems import Lorenz63, Lorenz96

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Run, figure, header, parser, timings, write_report  # noqa: E402

PROG = "python benchmarks/f_check_overhead.py"


class UserLorenz63(Lorenz63):
    pass


class UserLorenz96(Lorenz96):
    pass


def measure(name: str, builtin, user, shape: tuple[int, ...], steps: int, rounds: int, h: float = 0.01) -> dict:
    """The built-in system against the user subclass on the same RK4 solve, interleaved."""
    t = torch.linspace(0, h * steps, 11, dtype=torch.float64)
    y0 = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 1.0
    fns = {"unchecked": lambda: solve(builtin, y0, t, method="rk4", step_size=h),
           "checked": lambda: solve(user, y0, t, method="rk4", step_size=h)}
    assert torch.equal(fns["unchecked"](), fns["checked"]()), name  # the check changes nothing
    tm = timings(fns, rounds, warmup=0, alternate=True)
    ratios = [u / b for u, b in zip(tm["checked"].wall, tm["unchecked"].wall)]
    q = statistics.quantiles(ratios, n=4)
    tb, tu = tm["unchecked"].median(), tm["checked"].median()
    return {"case": name, "steps": steps, "evals": 4 * steps, "unchecked_ms": 1e3 * tb, "checked_ms": 1e3 * tu,
            "ratio_median": statistics.median(ratios), "ratio_q1_q3": [q[0], q[2]],
            "per_eval_us": 1e6 * (tu - tb) / (4 * steps)}


def to_markdown(report: dict) -> str:
    lines = [*header(report, "Overhead of the per-call check of a user's f"), "",
             f"One thread, {report['rounds']} interleaved rounds in alternating order.", "",
             "| case | rk4 steps | unchecked (built-in) ms | checked (user subclass) ms | ratio (median, IQR) | "
             "extra µs per f call |", "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['case']} | {r['steps']} | {r['unchecked_ms']:.1f} | {r['checked_ms']:.1f} | "
                     f"{r['ratio_median']:.3f} ({r['ratio_q1_q3'][0]:.3f}–{r['ratio_q1_q3'][1]:.3f}) | "
                     f"{r['per_eval_us']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict):
    """``f_check_overhead.png``: the checked / unchecked time ratio per case (median and IQR)."""
    rows = report["rows"]
    fig, ax = figure(figsize=(6.5, 3.2))
    med = [r["ratio_median"] for r in rows]
    err = [[m - r["ratio_q1_q3"][0] for m, r in zip(med, rows)], [r["ratio_q1_q3"][1] - m for m, r in zip(med, rows)]]
    ax.errorbar(med, range(len(rows)), xerr=err, fmt="o", capsize=3)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [r["case"] for r in rows])
    ax.set(xlabel="time with the check / without (median over rounds, IQR)")
    yield "f_check_overhead.png", fig


def main(argv=None) -> int:
    ap = parser("f_check_overhead", __doc__.split("\n\n")[0], prog=PROG, out=None)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default=None, help="folder for f_check_overhead.{json,md,png} (default: print only)")
    args = ap.parse_args(argv)
    run = Run("f_check_overhead", argv, prog=PROG)
    cases = [("lorenz63 batch 1", Lorenz63(), UserLorenz63(), (3,)),
             ("lorenz63 batch 256", Lorenz63(), UserLorenz63(), (256, 3)),
             ("lorenz96 N=40 batch 1", Lorenz96(), UserLorenz96(), (40,)),
             ("lorenz96 N=40 batch 256", Lorenz96(), UserLorenz96(), (256, 40))]
    report = run.report(rounds=args.rounds, rows=[measure(*c, args.steps, args.rounds) for c in cases])
    run.stamp(report, complete=True)
    if args.out:
        write_report(args.out, "f_check_overhead", report, to_markdown, plot)
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
