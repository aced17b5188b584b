"""``attsolver demo`` / ``make demo``: a one-minute tour of what the package does now.

It integrates Lorenz-63 with every explicit method and prints the error against a SciPy
DOP853 reference with the observed convergence order, times attsolver against torchdiffeq
on the same problem, and solves viscous Burgers with the spectral ETDRK4 stepper.
"""

from __future__ import annotations

import math
import time

import torch

from . import solve
from .steppers import TABLEAUS
from .systems import Burgers, Lorenz63


def _time(fn, repeat=3):
    fn()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_demo() -> int:
    torch.set_num_threads(1)
    system = Lorenz63()
    y0 = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    ref = solve(system, y0, t, method="scipy_dop853", options={"rtol": 1e-13, "atol": 1e-13})
    steps = (0.004, 0.002, 0.001)
    print("Lorenz-63 on [0, 1], max error vs SciPy DOP853 (rtol 1e-13), and observed order")
    print(f"{'method':10s}" + "".join(f"{'h=' + str(h):>10s}" for h in steps) + f" {'order':>6s} {'theory':>6s}")
    for name, tab in TABLEAUS.items():
        errs = [float((solve(system, y0, t, method=name, step_size=h) - ref).abs().max()) for h in steps]
        order = math.log2(errs[1] / errs[2])
        print(f"{name:10s} {errs[0]:10.2e} {errs[1]:10.2e} {errs[2]:10.2e} {order:6.2f} {tab.order:6d}")

    import torchdiffeq

    tt = torch.linspace(0.0, 10.0, 1001, dtype=torch.float64)
    ours = _time(lambda: solve(system, y0, tt, method="rk38"))
    theirs = _time(lambda: torchdiffeq.odeint(system, y0, tt, method="rk4"))
    print(f"\n1000 steps of the 3/8 rule: attsolver {ours * 1e3:.1f} ms, torchdiffeq {theirs * 1e3:.1f} ms "
          f"({theirs / ours:.2f}x); `attsolver bench speed` measures this properly")

    burgers = Burgers(nu=0.01, nx=256)
    u0 = burgers.sample_initial(4, generator=torch.Generator().manual_seed(0))
    tb = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    fine = solve(burgers, u0, tb, method="etdrk4", step_size=1e-4)
    print("\nBurgers (nu=0.01, 256 points, 4 fields) on [0, 1], relative L2 error at t=1 vs ETDRK4 h=1e-4:")
    for method in ("etdrk4", "ifrk4"):
        for h in (1e-2, 5e-3):
            u = solve(burgers, u0, tb, method=method, step_size=h)
            err = float(((u[-1] - fine[-1]).norm(dim=-1) / fine[-1].norm(dim=-1)).mean())
            print(f"  {method:7s} h={h:<6g} {err:.2e}")
    drift = float((fine.mean(-1) - fine[0].mean(-1)).abs().max())
    print(f"  spatial mean conserved to {drift:.1e}")
    return 0
