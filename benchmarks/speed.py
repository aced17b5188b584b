"""Speed of ``attsolver.solve`` against torchdiffeq and a plain NumPy loop.

Every contender solves the same problem with the same method and dtype in the same
process; rounds are interleaved (each round runs every contender once) and the median per
contender is reported, so machine noise hits all of them alike.  Results are per step
and as ratios.  Before timing, each contender's result is checked against attsolver's, so
the table compares equal computations.

    attsolver bench speed [--quick] [--out benchmarks/results]
    python benchmarks/speed.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import attsolver
from attsolver._compile import clear_compile_cache, compile_stats
from attsolver._io import atomic_write_text


# ----------------------------------------------------------------------------- NumPy floors


def np_rk4(f, y, h, n):
    """Classic RK4, the plain NumPy loop a user would write (the practical floor)."""
    out = np.empty((n + 1,) + y.shape)
    out[0] = y
    for i in range(n):
        k1 = f(y)
        k2 = f(y + 0.5 * h * k1)
        k3 = f(y + 0.5 * h * k2)
        k4 = f(y + h * k3)
        y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        out[i + 1] = y
    return out


def np_lorenz63(s):
    sig, rho, beta = s.sigma, s.rho, s.beta

    def f(y):
        x, yy, z = y
        return np.array([sig * (yy - x), x * (rho - z) - yy, x * yy - beta * z])

    return f


def np_lorenz96(s):
    F = s.F

    def f(y):
        return (np.roll(y, -1, -1) - np.roll(y, 2, -1)) * np.roll(y, 1, -1) - y + F

    return f


def np_burgers_parts(s):
    """The same semi-discrete Burgers system as attsolver's (2/3-rule dealiasing)."""
    k = 2 * np.pi * np.fft.rfftfreq(s.nx, d=s.length / s.nx)
    L = -s.nu * k**2
    mask = np.arange(len(k)) <= s.nx / 3  # 2/3 rule: keep |k_index| <= nx/3
    ik2 = 0.5j * k * mask

    def nonlinear_hat(u_hat):
        u = np.fft.irfft(u_hat * mask, n=s.nx)
        return -ik2 * np.fft.rfft(u * u)

    def f(u):
        u_hat = np.fft.rfft(u)
        return np.fft.irfft(L * u_hat + nonlinear_hat(u_hat), n=s.nx)

    return f, L, nonlinear_hat


def np_etdrk4(L, N, h, n_contour=16):
    """Cox–Matthews ETDRK4 with Kassam–Trefethen contour coefficients, in NumPy."""
    E, E2 = np.exp(h * L), np.exp(h * L / 2)
    r = np.exp(1j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    LR = h * L[:, None] + r[None, :]
    Q = h * np.real(np.mean((np.exp(LR / 2) - 1) / LR, axis=1))
    f1 = h * np.real(np.mean((-4 - LR + np.exp(LR) * (4 - 3 * LR + LR**2)) / LR**3, axis=1))
    f2 = h * np.real(np.mean((2 + LR + np.exp(LR) * (-2 + LR)) / LR**3, axis=1))
    f3 = h * np.real(np.mean((-4 - 3 * LR - LR**2 + np.exp(LR) * (4 - LR)) / LR**3, axis=1))

    def step(v):
        Nv = N(v)
        a = E2 * v + Q * Nv
        Na = N(a)
        b = E2 * v + Q * Na
        Nb = N(b)
        c = E2 * a + Q * (2 * Nb - Nv)
        Nc = N(c)
        return E * v + Nv * f1 + 2 * (Na + Nb) * f2 + Nc * f3

    return step


# ----------------------------------------------------------------------------- timing


def interleaved(contenders: dict, rounds: int, steps: int) -> dict[str, float]:
    """Median microseconds per step over ``rounds`` interleaved rounds."""
    for fn in contenders.values():  # warm-up
        fn()
    samples = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) / steps * 1e6)
    return {k: statistics.median(v) for k, v in samples.items()}


def _close(a, b, tol, what):
    a = torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a
    b = torch.as_tensor(np.asarray(b)) if not isinstance(b, torch.Tensor) else b
    err = float((a.double() - b.double()).abs().max() / (b.double().abs().max() + 1e-300))
    if not err <= tol:
        raise AssertionError(f"{what}: results differ by {err:.2e} (relative), benchmark is not comparing equal work")
    return err


# ----------------------------------------------------------------------------- cases


def rk_contenders(system, y0, h, steps, f_np, use_compile, *, prefix=100, tol=1e-11):
    """The contenders every case shares, after checking they compute the same thing.

    Chaotic systems amplify round-off (Lorenz-63 like e^(0.9 t)), so the results are compared
    on their first ``prefix`` steps.  Returns ``(contenders, compile_seconds)``.
    """
    import torchdiffeq

    t = torch.linspace(0, steps * h, steps + 1, dtype=torch.float64)
    t0 = t[0]

    def f_only():
        for _ in range(steps):
            for _ in range(4):
                system(t0, y0)

    ref = attsolver.solve(system, y0, t, method="rk4")
    _close(np_rk4(f_np, y0.numpy(), h, steps)[:prefix], ref[:prefix], tol, "numpy rk4 vs attsolver rk4")
    _close(torchdiffeq.odeint(system, y0, t, method="rk4")[:prefix],
           attsolver.solve(system, y0, t, method="rk38")[:prefix], tol, "torchdiffeq rk4 (3/8 rule) vs attsolver rk38")
    contenders = {
        "f evaluations only (4/step)": f_only,
        "attsolver rk4 (eager)": lambda: attsolver.solve(system, y0, t, method="rk4"),
        "attsolver rk38 (eager)": lambda: attsolver.solve(system, y0, t, method="rk38"),
        "torchdiffeq rk4 (3/8 rule)": lambda: torchdiffeq.odeint(system, y0, t, method="rk4"),
        "numpy rk4 loop": lambda: np_rk4(f_np, y0.numpy(), h, steps),
    }
    compile_s = None
    if use_compile:
        clear_compile_cache()
        out = attsolver.solve(system, y0, t, method="rk4", options={"compile": True})
        compile_s = compile_stats()["compile_seconds"]
        _close(out[:prefix], ref[:prefix], 1e-9, "compiled vs eager rk4")
        contenders["attsolver rk4 (compile)"] = lambda: attsolver.solve(system, y0, t, method="rk4",
                                                                         options={"compile": True})
    return contenders, compile_s, t


def case_lorenz63(rounds, steps, use_compile):
    s = attsolver.systems.Lorenz63()
    y0 = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    contenders, compile_s, _ = rk_contenders(s, y0, 0.01, steps, np_lorenz63(s), use_compile, tol=1e-12)
    return {"case": "lorenz63_single", "title": f"Lorenz-63, one trajectory, float64, RK4, {steps} steps",
            "us_per_step": interleaved(contenders, rounds, steps), "baseline": "torchdiffeq rk4 (3/8 rule)",
            "compile_seconds": compile_s}


def case_lorenz96(rounds, steps, use_compile, batch=1024):
    s = attsolver.systems.Lorenz96(N=40, F=8.0)
    y0 = s.sample_initial(batch, generator=torch.Generator().manual_seed(0))
    contenders, compile_s, _ = rk_contenders(s, y0, 0.01, steps, np_lorenz96(s), use_compile)
    return {"case": "lorenz96_batch",
            "title": f"Lorenz-96 (N=40, F=8), batch of {batch}, float64, RK4, {steps} steps",
            "us_per_step": interleaved(contenders, rounds, steps), "baseline": "torchdiffeq rk4 (3/8 rule)",
            "compile_seconds": compile_s}


def case_burgers(rounds, steps, nx, use_compile):
    s = attsolver.systems.Burgers(nu=0.01, nx=nx, length=1.0)
    u0 = s.sample_initial(1, generator=torch.Generator().manual_seed(0))[0]
    # a step inside RK4's stability region for this grid (diffusive limit ~ 2.8 / (nu k_max^2))
    k_max = np.pi * nx / s.length
    h = min(1e-3, 0.5 * 2.78 / (s.nu * k_max**2))
    f_np, L_np, N_np = np_burgers_parts(s)
    contenders, compile_s, t = rk_contenders(s, u0, h, steps, f_np, use_compile, prefix=steps + 1, tol=1e-9)
    etd_np = np_etdrk4(L_np, N_np, h)

    def numpy_etdrk4():
        v = np.fft.rfft(u0.numpy())
        out = [np.fft.irfft(v, n=nx)]
        for _ in range(steps):
            v = etd_np(v)
            out.append(np.fft.irfft(v, n=nx))
        return np.stack(out)

    _close(numpy_etdrk4(), attsolver.solve(s, u0, t, method="etdrk4"), 1e-9, f"numpy vs attsolver etdrk4, burgers {nx}")
    contenders["attsolver etdrk4 (eager)"] = lambda: attsolver.solve(s, u0, t, method="etdrk4")
    contenders["numpy etdrk4 loop"] = numpy_etdrk4
    return {"case": f"burgers_{nx}",
            "title": f"Burgers, nx={nx}, nu=0.01, one field, float64, h={h:.2e}, {steps} steps",
            "us_per_step": interleaved(contenders, rounds, steps), "baseline": "torchdiffeq rk4 (3/8 rule)",
            "compile_seconds": compile_s}


# ----------------------------------------------------------------------------- report


def summarise(case: dict) -> dict:
    us = case["us_per_step"]
    base = us[case["baseline"]]
    f_only = us.get("f evaluations only (4/step)")
    out = {}
    for name, v in us.items():
        row = {"us_per_step": v, "speedup_vs_torchdiffeq": base / v}
        if "numpy rk4 loop" in us:
            row["time_vs_numpy_rk4"] = v / us["numpy rk4 loop"]
        if f_only and "(eager)" in name and "rk" in name and "etd" not in name:
            row["overhead_beyond_f"] = (v - f_only) / f_only
        out[name] = row
    return out


def to_markdown(report: dict) -> str:
    lines = [
        "# Speed: attsolver.solve vs torchdiffeq vs a NumPy loop",
        "",
        f"Produced by `{report['command']}` on {report['date']}.",
        f"Machine: {report['machine']['cpus']} CPUs, torch {report['machine']['torch']} "
        f"({report['machine']['torch_threads']} thread), numpy {report['machine']['numpy']}, "
        f"Python {report['machine']['python']}.",
        "",
        "Median of interleaved rounds, microseconds per solver step.  `speed-up` is torchdiffeq's time "
        "divided by the row's (same method family: torchdiffeq's `rk4` is the 3/8 rule = our `rk38`; "
        "classic `rk4` costs the same number of evaluations).  `overhead` is the time beyond the four "
        "evaluations of `f` per step, relative to them.  `vs numpy` is the row's time over the NumPy RK4 "
        "loop's.  Compile time is reported apart and is not in the per-step figures.",
        "",
    ]
    for case in report["cases"]:
        lines += [f"## {case['title']}", "", "| contender | µs/step | speed-up vs torchdiffeq | overhead beyond f | vs numpy rk4 |",
                  "|---|---:|---:|---:|---:|"]
        for name, row in case["summary"].items():
            ov = f"{100 * row['overhead_beyond_f']:.0f}%" if "overhead_beyond_f" in row else ""
            vn = f"{row['time_vs_numpy_rk4']:.2f}×" if "time_vs_numpy_rk4" in row else ""
            lines.append(f"| {name} | {row['us_per_step']:.1f} | {row['speedup_vs_torchdiffeq']:.2f}× | {ov} | {vn} |")
        if case.get("compile_seconds") is not None:
            lines.append("")
            lines.append(f"Compile time (first call, excluded above): {case['compile_seconds']:.1f} s.")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="attsolver bench speed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results", help="folder for speed.md and speed.json")
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds (about a minute)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = ap.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 9)
    torch.set_num_threads(1)  # NumPy's elementwise loops are single-threaded too
    use_compile = not args.no_compile
    cases = [
        case_lorenz63(rounds, 500 if args.quick else 2000, use_compile),
        case_lorenz96(rounds, 100 if args.quick else 400, use_compile),
        case_burgers(rounds, 100 if args.quick else 400, 256, use_compile and not args.quick),
        case_burgers(rounds, 50 if args.quick else 200, 1024, use_compile and not args.quick),
    ]
    for c in cases:
        c["summary"] = summarise(c)
    report = {
        "command": "attsolver bench speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
                    "python": platform.python_version(), "torch_threads": torch.get_num_threads()},
        "quick": args.quick, "rounds": rounds, "cases": cases,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "speed.json", json.dumps(report, indent=2))
    md = to_markdown(report)
    atomic_write_text(out / "speed.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
