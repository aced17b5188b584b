"""How much the library's SciPy bridge (``solve(method="scipy_dop853")``) costs over SciPy
called directly (issue 22, item 2).

Three ways to run SciPy's DOP853 on the same problem, interleaved, process CPU time:

* ``numpy``  — ``solve_ivp`` with a NumPy right-hand side written for the system (what a
  SciPy user writes);
* ``bridge`` — ``solve_ivp`` with the library's torch system behind the thinnest hand-written
  bridge (``torch.from_numpy`` in, ``.numpy()`` out, under one ``no_grad``): the floor for any
  torch ``f``;
* ``attsolver`` — ``attsolver.solve(system, ..., method="scipy_dop853")``.

``attsolver / bridge`` is the wrapper's own overhead; ``bridge / numpy`` is the cost of
evaluating ``f`` in torch (per-op dispatch on tiny tensors), which no wrapper removes.
The outputs are checked first: ``attsolver`` equals ``bridge`` bit for bit, ``numpy`` agrees to
round-off.

Run: ``PYTHONPATH=. python benchmarks/scipy_bridge.py`` (writes
``benchmarks/results/scipy_bridge.{json,md}``).  Standalone for now; it moves onto
``benchmarks/_suite.py`` when that lands in main.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp

import attsolver
from attsolver.systems import make_system

RTOL, ATOL, T_FINAL, N_OUT, ROUNDS = 1e-6, 1e-8, 10.0, 101, 9


def lorenz_np(t, y, s=10.0, r=28.0, b=8.0 / 3.0):
    x, yy, z = y.reshape(-1, 3).T
    return np.stack((s * (yy - x), x * (r - z) - yy, x * yy - b * z), axis=-1).reshape(-1)


def pendulum_np(t, y, g=9.81, k=40.0, m=1.0, L0=1.0):
    r, th, dr, dth = y.reshape(-1, 4).T
    ddr = r * dth * dth + g * np.cos(th) - (k / m) * (r - L0)
    ddth = -(g * np.sin(th) + 2.0 * dr * dth) / r
    return np.stack((dr, dth, ddr, ddth), axis=-1).reshape(-1)


def runners(system, f_np, y0: torch.Tensor, t: torch.Tensor):
    t_np, y_np, shape = t.numpy(), y0.reshape(-1).numpy().copy(), y0.shape

    def numpy_direct():
        return solve_ivp(f_np, (t_np[0], t_np[-1]), y_np, method="DOP853", t_eval=t_np, rtol=RTOL, atol=ATOL).y

    def bridge_fn(tt, yy):
        return system(torch.tensor(tt, dtype=torch.float64), torch.from_numpy(yy).view(shape)).reshape(-1).numpy()

    def bridge():
        with torch.no_grad():
            return solve_ivp(bridge_fn, (t_np[0], t_np[-1]), y_np, method="DOP853", t_eval=t_np,
                             rtol=RTOL, atol=ATOL).y

    def ours():
        return attsolver.solve(system, y0, t, method="scipy_dop853", options={"rtol": RTOL, "atol": ATOL})

    return {"numpy": numpy_direct, "bridge": bridge, "attsolver": ours}


def check_equal(fns, y0) -> float:
    a = fns["numpy"]()
    b = fns["bridge"]()
    c = fns["attsolver"]().reshape(len(b.T), -1).numpy().T
    assert np.array_equal(b, c), "attsolver's scipy_dop853 differs from the hand-written bridge"
    return float(np.abs(a - b).max() / np.abs(b).max())


def time_cpu(fns, rounds):
    samples = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            c0 = time.process_time()
            fn()
            samples[k].append(time.process_time() - c0)
    return samples


def main(argv=None) -> int:
    torch.set_num_threads(1)
    out = Path(os.environ.get("BENCH_OUT", "benchmarks/results"))
    rows = []
    load_start = os.getloadavg()[0]
    for name, f_np in (("lorenz63", lorenz_np), ("elastic_pendulum", pendulum_np)):
        system = make_system(name)
        for n in (1, 32):
            y0 = system.sample_initial(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            t = torch.linspace(0.0, T_FINAL, N_OUT, dtype=torch.float64)
            fns = runners(system, f_np, y0, t)
            diff = check_equal(fns, y0)
            s = time_cpu(fns, ROUNDS)
            med = {k: statistics.median(v) for k, v in s.items()}
            ratio_b = [a / b for a, b in zip(s["attsolver"], s["bridge"])]
            ratio_n = [a / b for a, b in zip(s["attsolver"], s["numpy"])]
            rows.append({"system": name, "batch": n, "cpu_median_s": med, "numpy_vs_bridge_max_rel_diff": diff,
                         "attsolver_over_bridge": statistics.median(ratio_b),
                         "attsolver_over_bridge_range": [min(ratio_b), max(ratio_b)],
                         "attsolver_over_numpy": statistics.median(ratio_n),
                         "attsolver_over_numpy_range": [min(ratio_n), max(ratio_n)]})
            print(rows[-1], flush=True)
    report = {"suite": "scipy_bridge", "command": "PYTHONPATH=. python benchmarks/scipy_bridge.py",
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rtol": RTOL, "atol": ATOL,
              "t_final": T_FINAL, "rounds": ROUNDS, "clock": "process CPU time, one thread, interleaved",
              "load_start": load_start, "load_end": os.getloadavg()[0], "cores": os.cpu_count(), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "scipy_bridge.json").write_text(json.dumps(report, indent=1))
    (out / "scipy_bridge.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(r) -> str:
    lines = [f"# SciPy DOP853 through attsolver vs SciPy directly ({r['date']})", "",
             f"`{r['command']}` — rtol {r['rtol']:g}, atol {r['atol']:g}, t in [0, {r['t_final']:g}], "
             f"{r['clock']}, median of {r['rounds']} rounds (min-max of the per-round ratio); load "
             f"{r['load_start']:.2f} -> {r['load_end']:.2f} on {r['cores']} cores.", "",
             "| system | batch | numpy RHS (ms) | torch f, bare bridge (ms) | attsolver (ms) | attsolver / bridge "
             "| attsolver / numpy |", "|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        m = x["cpu_median_s"]
        lines.append(f"| {x['system']} | {x['batch']} | {m['numpy'] * 1e3:.1f} | {m['bridge'] * 1e3:.1f} | "
                     f"{m['attsolver'] * 1e3:.1f} | {x['attsolver_over_bridge']:.2f} "
                     f"({x['attsolver_over_bridge_range'][0]:.2f}-{x['attsolver_over_bridge_range'][1]:.2f}) | "
                     f"{x['attsolver_over_numpy']:.2f} ({x['attsolver_over_numpy_range'][0]:.2f}-"
                     f"{x['attsolver_over_numpy_range'][1]:.2f}) |")
    lines += ["", "attsolver equals the bare bridge bit for bit (checked before timing); the NumPy RHS agrees to "
              "round-off. attsolver / bridge is the wrapper's own overhead; bridge / numpy is torch's per-call cost "
              "of evaluating f on tiny tensors, which no wrapper removes."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
