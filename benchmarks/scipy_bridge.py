"""How much the library's SciPy bridge (``solve(method="scipy_dop853")``) costs over SciPy
called directly (issue 22, item 2).

Four ways to run SciPy's DOP853 on the same problem, interleaved, process CPU time:

* ``numpy``  — ``solve_ivp`` with a NumPy right-hand side written here for the system (what a
  SciPy user writes);
* ``attsolver`` — ``attsolver.solve(system, ..., method="scipy_dop853")`` on the built-in
  system, which calls the system's NumPy twin (``system.numpy_rhs``): the library's SciPy
  contender in ``compare``.  Target (issue 22): at most 1.3x ``numpy``;
* ``bridge`` — ``solve_ivp`` with the system's torch ``f`` behind the thinnest hand-written
  bridge (``torch.from_numpy`` in, ``.numpy()`` out, under one ``no_grad``): the floor for any
  torch ``f``;
* ``attsolver_torch`` — ``attsolver.solve`` with the same torch ``f`` as a plain function (no
  twin): what a user's own torch ``f`` costs.

For a user's torch ``f`` the overhead over SciPy with a NumPy ``f`` splits into the wrapper's
own part (``attsolver_torch / bridge``) and torch's per-call cost of evaluating a tiny ``f``
(``bridge / numpy``; also given per evaluation of ``f``), which no wrapper removes.  The outputs
are checked first: ``attsolver_torch`` equals ``bridge`` bit for bit, ``attsolver`` equals
``numpy`` to round-off, and ``numpy`` agrees with ``bridge`` to the solver's tolerance (the
torch and NumPy ``f`` agree to round-off per call: see ``check_equal``).

Run: ``PYTHONPATH=. python benchmarks/scipy_bridge.py`` (writes
``benchmarks/results/scipy_bridge.{json,md}``, with the run record of ``benchmarks/_suite.py``:
load averages at the start and the end).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp

import attsolver
from attsolver.systems import make_system

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Run, parser  # noqa: E402

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
    opts = {"rtol": RTOL, "atol": ATOL}

    def numpy_direct():
        return solve_ivp(f_np, (t_np[0], t_np[-1]), y_np, method="DOP853", t_eval=t_np, rtol=RTOL, atol=ATOL)

    def bridge_fn(tt, yy):
        return system(torch.tensor(tt, dtype=torch.float64), torch.from_numpy(yy).view(shape)).reshape(-1).numpy()

    def bridge():
        with torch.no_grad():
            return solve_ivp(bridge_fn, (t_np[0], t_np[-1]), y_np, method="DOP853", t_eval=t_np,
                             rtol=RTOL, atol=ATOL)

    def torch_f(tt, yy):  # the system's torch f as a user's plain function: no NumPy twin
        return system(tt, yy)

    def ours():
        return attsolver.solve(system, y0, t, method="scipy_dop853", options=opts)

    def ours_torch():
        return attsolver.solve(torch_f, y0, t, method="scipy_dop853", options=opts)

    return {"numpy": numpy_direct, "attsolver": ours, "bridge": bridge, "attsolver_torch": ours_torch}


def check_equal(fns) -> dict[str, float]:
    """The outputs before any timing: the library with a torch f equals the bare bridge bit for
    bit; the library with the twin equals SciPy with a NumPy f to round-off; the solutions with
    the NumPy f and the torch f agree to the solver's tolerance: the two f's agree to round-off
    per call, not bit for bit (Lorenz-63's torch f is one matmul), and over t in [0, 10] of a
    chaotic system an adaptive solver's accepted steps then part, leaving differences of the size
    of its local error, not of round-off."""
    a, b = fns["numpy"](), fns["bridge"]()
    c = fns["attsolver"]().reshape(len(b.y.T), -1).numpy().T
    d = fns["attsolver_torch"]().reshape(len(b.y.T), -1).numpy().T
    assert np.array_equal(b.y, d), "attsolver's scipy_dop853 with a torch f differs from the hand-written bridge"
    scale = np.abs(b.y).max()
    diff = {"numpy_vs_bridge": float(np.abs(a.y - b.y).max() / scale),
            "attsolver_vs_numpy": float(np.abs(c - a.y).max() / scale), "nfev": int(a.nfev)}
    assert diff["attsolver_vs_numpy"] < 1e-10 and diff["numpy_vs_bridge"] < RTOL, diff
    return diff


def time_cpu(fns, rounds):
    samples = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            c0 = time.process_time()
            fn()
            samples[k].append(time.process_time() - c0)
    return samples


def _ratio(s, a: str, b: str) -> dict[str, float]:
    r = [x / y for x, y in zip(s[a], s[b])]
    return {"median": statistics.median(r), "min": min(r), "max": max(r)}


def main(argv=None) -> int:
    args = parser("scipy_bridge", __doc__, prog="PYTHONPATH=. python benchmarks/scipy_bridge.py").parse_args(argv)
    run = Run("scipy_bridge", argv, prog="PYTHONPATH=. python benchmarks/scipy_bridge.py")
    rows = []
    for name, f_np in (("lorenz63", lorenz_np), ("elastic_pendulum", pendulum_np)):
        system = make_system(name)
        for n in (1, 32):
            y0 = system.sample_initial(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            t = torch.linspace(0.0, T_FINAL, N_OUT, dtype=torch.float64)
            fns = runners(system, f_np, y0, t)
            check = check_equal(fns)
            s = time_cpu(fns, ROUNDS)
            med = {k: statistics.median(v) for k, v in s.items()}
            per_call = {k: med[k] / check["nfev"] for k in med}
            rows.append({"system": name, "batch": n, "cpu_median_s": med, "check": check,
                         "per_call_us": {k: 1e6 * v for k, v in per_call.items()},
                         "attsolver_over_numpy": _ratio(s, "attsolver", "numpy"),
                         "bridge_over_numpy": _ratio(s, "bridge", "numpy"),
                         "attsolver_torch_over_bridge": _ratio(s, "attsolver_torch", "bridge"),
                         "attsolver_torch_over_numpy": _ratio(s, "attsolver_torch", "numpy")})
            print(rows[-1], flush=True)
    report = run.stamp(run.report(rtol=RTOL, atol=ATOL, t_final=T_FINAL, rounds=ROUNDS,
                                  clock="process CPU time, one thread, interleaved", rows=rows), complete=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scipy_bridge.json").write_text(json.dumps(report, indent=1))
    (out / "scipy_bridge.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def _r(x) -> str:
    return f"{x['median']:.2f} ({x['min']:.2f}-{x['max']:.2f})"


def markdown(r) -> str:
    m = r["machine"]
    lines = [f"# SciPy DOP853 through attsolver vs SciPy directly ({r['date']})", "",
             f"`{r['command']}` — rtol {r['rtol']:g}, atol {r['atol']:g}, t in [0, {r['t_final']:g}], "
             f"{r['clock']}, median of {r['rounds']} rounds (min-max of the per-round ratio); load average "
             f"(1, 5, 15 min) {m.get('load_start')} -> {m.get('load_end')} on {m.get('cpus', '?')} cores, shared "
             "with other jobs.", "",
             "## The built-in systems: SciPy with their NumPy twin (compare's SciPy contender)", "",
             "| system | batch | SciPy + NumPy f (ms) | attsolver, twin (ms) | attsolver / SciPy (target <= 1.3) |",
             "|---|---|---|---|---|"]
    for x in r["rows"]:
        c = x["cpu_median_s"]
        lines.append(f"| {x['system']} | {x['batch']} | {c['numpy'] * 1e3:.1f} | {c['attsolver'] * 1e3:.1f} | "
                     f"{_r(x['attsolver_over_numpy'])} |")
    lines += ["", "## A user's torch f (no twin): where the overhead goes", "",
              "| system | batch | evaluations of f | per evaluation: NumPy f / torch f, bare bridge / attsolver (us) "
              "| attsolver / bridge (the wrapper) | bridge / NumPy (torch's per-call cost) | attsolver / NumPy (all) |",
              "|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        p = x["per_call_us"]
        lines.append(f"| {x['system']} | {x['batch']} | {x['check']['nfev']} | {p['numpy']:.1f} / {p['bridge']:.1f} "
                     f"/ {p['attsolver_torch']:.1f} | {_r(x['attsolver_torch_over_bridge'])} | "
                     f"{_r(x['bridge_over_numpy'])} | {_r(x['attsolver_torch_over_numpy'])} |")
    twin = max(x["check"]["attsolver_vs_numpy"] for x in r["rows"])
    torch_f = max(x["check"]["numpy_vs_bridge"] for x in r["rows"])
    lines += ["", "Checked before timing: attsolver with a torch f equals the bare bridge bit for bit; attsolver "
              f"with the twin differs from SciPy with the NumPy f by at most {twin:.2g}, and the NumPy and torch "
              f"f's solutions by at most {torch_f:.2g} (relative to the solution's size; the two f's agree to "
              f"round-off per call, and on a chaotic system the adaptive steps then part: bound {RTOL:g}, the "
              "rtol). The wrapper itself "
              "costs about nothing; a torch f on a state of a few numbers costs tens of microseconds of "
              "per-operation dispatch on every call, several times the NumPy arithmetic, and SciPy calls f on "
              "every stage of every step: give f a NumPy twin (`numpy_rhs`, as the built-in systems do) when a "
              "SciPy solver should run at SciPy's speed."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
