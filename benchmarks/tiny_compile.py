"""The compile modes of ``solve`` on a tiny system (issue 24, item 5): µs per step on Lorenz-63.

On a 3-component state a step is a few dozen scalar operations, so what a step costs is the
overhead around them: the Python interpreter in the eager loop, inductor's Python wrapper
around its generated kernels in ``options={"compile": True}`` (``"default"``), and much less
of it with the wrapper compiled to C++ (``options={"compile": "cpp_wrapper"}``).  Against
diffrax's RK4 under ``jax.jit`` (XLA compiles the whole loop).

Contenders solve the same problem (Lorenz-63, one trajectory, classic RK4, h = 0.01, every step
an output) in float64 in one process, one thread; each trajectory is checked against the eager
one on the first 100 outputs (a chaotic system: round-off differences grow) before timing.  The
first call of each (compilation) is timed apart and is not in the per-step figures; then
interleaved rounds, per-step CPU time (the machine is shared), median and quartiles.

    PYTHONPATH=. python benchmarks/tiny_compile.py [--steps 2000] [--rounds 15] [--out benchmarks/results]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks import speed  # noqa: E402 - sets JAX's flags (CPU, one thread, float64) before jax is imported
from benchmarks._suite import Run, header, parser, timings, write_report  # noqa: E402

import attsolver  # noqa: E402
from attsolver.integrate.compiled import compile_stats, cxx_compiler_available  # noqa: E402

PROG = "python benchmarks/tiny_compile.py"


def contenders(steps: int, h: float = 0.01) -> tuple[dict, torch.Tensor]:
    """name -> one solve; and the eager trajectory every contender is checked against."""
    s = attsolver.systems.Lorenz63()
    y0 = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    t = torch.linspace(0, steps * h, steps + 1, dtype=torch.float64)
    fns = {"attsolver rk4 (eager)": lambda: attsolver.solve(s, y0, t, method="rk4"),
           "attsolver rk4 (compile: default)": lambda: attsolver.solve(s, y0, t, method="rk4",
                                                                        options={"compile": True})}
    if cxx_compiler_available():
        fns["attsolver rk4 (compile: cpp_wrapper)"] = lambda: attsolver.solve(s, y0, t, method="rk4",
                                                                               options={"compile": "cpp_wrapper"})
    else:
        speed.NOTES.append("no C++ compiler: the cpp_wrapper row is skipped")
    jax = speed._peer("jax")
    if jax is not None:
        jnp = jax.numpy
        f_jax = lambda y: jnp.stack([s.sigma * (y[1] - y[0]), y[0] * (s.rho - y[2]) - y[1],  # noqa: E731
                                     y[0] * y[1] - s.beta * y[2]])
        dfx = speed.diffrax_rk4(f_jax, y0.numpy(), h, steps)
        if dfx is not None:
            fns["diffrax rk4 (jit)"] = dfx
    return fns, attsolver.solve(s, y0, t, method="rk4")


def measure(steps: int, rounds: int) -> dict:
    fns, ref = contenders(steps)
    errors = {}

    def check(name, out):
        a, b = speed._as_np(out).reshape(ref.shape)[:100], ref.numpy()[:100]
        errors[name] = float(abs(a - b).max() / abs(b).max())
        if not errors[name] <= 1e-11:
            raise AssertionError(f"{name}: differs from the eager trajectory by {errors[name]:.2e} (relative)")

    compiled_before = compile_stats()["compilations"]
    tm = timings(fns, rounds, warmup=2, alternate=True, first=check)
    rows = []
    for name, v in tm.items():
        per_step = [1e6 * c / steps for c in v.cpu]
        q = statistics.quantiles(per_step, n=4)
        rows.append({"contender": name, "median_us": statistics.median(per_step), "q1_us": q[0], "q3_us": q[2],
                     "min_us": min(per_step), "first_call_s": v.first_s, "max_rel_diff_first_100": errors[name]})
    rows.sort(key=lambda r: r["median_us"])
    return {"steps": steps, "rows": rows, "compilations": compile_stats()["compilations"] - compiled_before}


def to_markdown(report: dict) -> str:
    by = {r["contender"]: r for r in report["rows"]}
    base = by.get("attsolver rk4 (compile: default)")
    dfx = by.get("diffrax rk4 (jit)")
    lines = [*header(report, "Compile modes on a tiny system: Lorenz-63, RK4, one trajectory"), "",
             f"{report['steps']} steps of h = 0.01, every step an output, float64, one thread; CPU µs per step over "
             f"{report['rounds']} interleaved rounds (alternating order), median [quartiles]; the first call "
             "(compilation) apart.  Every trajectory was checked against the eager one on its first 100 outputs "
             "(max relative difference in the last column).", "",
             "| contender | µs/step median [quartiles] | / compile default | / diffrax jit | first call, s | "
             "max rel. diff |", "|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        rel = f"{r['median_us'] / base['median_us']:.2f}×" if base else "–"
        rel_d = f"{r['median_us'] / dfx['median_us']:.1f}×" if dfx else "–"
        lines.append(f"| {r['contender']} | {r['median_us']:.2f} [{r['q1_us']:.2f}–{r['q3_us']:.2f}] | {rel} | "
                     f"{rel_d} | {r['first_call_s']:.1f} | {r['max_rel_diff_first_100']:.1e} |")
    if report.get("notes"):
        lines += ["", *[f"- {n}" for n in report["notes"]]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = parser("tiny_compile", __doc__.split("\n\n")[0], prog=PROG, out=None)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default=None, help="folder for tiny_compile.{json,md} (default: print only)")
    args = ap.parse_args(argv)
    jax = speed._peer("jax")
    run = Run("tiny_compile", argv, prog=PROG, jax=None if jax is None else jax.__version__)
    report = run.report(rounds=args.rounds, **measure(args.steps, args.rounds), notes=list(speed.NOTES))
    run.stamp(report, complete=True)
    if args.out:
        write_report(args.out, "tiny_compile", report, to_markdown)
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
