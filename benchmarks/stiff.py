"""Stiff speed benchmark: a batch of Van der Pol (mu = 1000) samples at equal tolerances.

attsolver's ``kvaerno5`` (batched, per-sample step control) against SciPy's Radau looping over
the samples (a subset timed, extrapolated linearly to the whole batch: SciPy's cost per
sample does not depend on the batch) and diffrax's ``Kvaerno5`` under ``jax.jit(jax.vmap(...))``
(compilation timed apart).  Single thread, CPU time (``time.process_time``), the three
interleaved round by round; accuracy of each checked against SciPy Radau at rtol 1e-12 on a
few samples first.

    PYTHONPATH=$PWD python benchmarks/stiff.py --batch 1024 --rounds 3

(a plain script: ``benchmarks/_suite.py`` had not landed in main when this was written).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import attsolver  # noqa: E402

MU = 1000.0


def initial_states(batch: int) -> np.ndarray:
    y = np.zeros((batch, 2))
    y[:, 0] = np.linspace(1.5, 2.5, batch)
    return y


def vdp_torch(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack((v, MU * (1 - x * x) * v - x), -1)


def vdp_np(t, y):
    return np.array([y[1], MU * (1 - y[0] ** 2) * y[1] - y[0]])


def run_ours(y0: np.ndarray, t1: float, rtol: float, atol: float) -> np.ndarray:
    with torch.no_grad():
        out = attsolver.solve(vdp_torch, torch.as_tensor(y0), torch.tensor([0.0, t1], dtype=torch.float64),
                              method="kvaerno5", options={"rtol": rtol, "atol": atol, "per_sample": True})
    return out[-1].numpy()


def run_scipy(y0: np.ndarray, t1: float, rtol: float, atol: float) -> np.ndarray:
    return np.stack([solve_ivp(vdp_np, (0.0, t1), y, method="Radau", rtol=rtol, atol=atol).y[:, -1] for y in y0])


def make_diffrax(t1: float, rtol: float, atol: float):
    import diffrax  # lazy: optional comparison library
    import jax  # lazy: optional comparison library

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp  # lazy: optional comparison library

    def field(t, y, args):
        return jnp.stack([y[1], MU * (1 - y[0] ** 2) * y[1] - y[0]])

    def one(y0):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Kvaerno5(), 0.0, t1, None, y0,
                                  stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                  max_steps=200_000, saveat=diffrax.SaveAt(t1=True))
        return sol.ys[-1]

    fn = jax.jit(jax.vmap(one))
    return lambda y0: np.asarray(fn(jnp.asarray(y0)).block_until_ready())


def cpu(fn, *args):
    start = time.process_time()
    out = fn(*args)
    return time.process_time() - start, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--scipy-subset", type=int, default=32)
    ap.add_argument("--t1", type=float, default=1000.0)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-9)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/stiff")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    y0 = initial_states(a.batch)
    sub = y0[np.linspace(0, a.batch - 1, a.scipy_subset).astype(int)]
    check = np.linspace(0, a.batch - 1, 8).astype(int)
    ref = run_scipy(y0[check], a.t1, 1e-12, 1e-14)
    diffrax_run = make_diffrax(a.t1, a.rtol, a.atol)
    compile_s, _ = cpu(diffrax_run, y0)  # the first call compiles
    times = {"attsolver_kvaerno5": [], "scipy_radau_loop": [], "diffrax_kvaerno5_jit": []}
    errors = {}
    for r in range(a.rounds):
        s, out = cpu(run_ours, y0, a.t1, a.rtol, a.atol)
        times["attsolver_kvaerno5"].append(s)
        errors["attsolver_kvaerno5"] = float(np.max(np.abs(out[check] - ref) / (np.abs(ref) + 1e-3)))
        s, out_sub = cpu(run_scipy, sub, a.t1, a.rtol, a.atol)
        times["scipy_radau_loop"].append(s * a.batch / a.scipy_subset)
        errors["scipy_radau_loop"] = float(np.max(np.abs(run_scipy(y0[check], a.t1, a.rtol, a.atol) - ref)
                                                  / (np.abs(ref) + 1e-3))) if r == 0 else errors["scipy_radau_loop"]
        s, out_d = cpu(diffrax_run, y0)
        times["diffrax_kvaerno5_jit"].append(s)
        errors["diffrax_kvaerno5_jit"] = float(np.max(np.abs(out_d[check] - ref) / (np.abs(ref) + 1e-3)))
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    summary = {k: {"min_s": min(v), "median_s": statistics.median(v), "max_s": max(v), "runs_s": v}
               for k, v in times.items()}
    ours = summary["attsolver_kvaerno5"]["min_s"]
    result = {
        "command": "PYTHONPATH=$PWD python benchmarks/stiff.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "problem": f"Van der Pol mu={MU:g}, t in [0, {a.t1:g}], batch {a.batch}, x0 in [1.5, 2.5], v0 = 0",
        "rtol": a.rtol, "atol": a.atol, "threads": 1, "clock": "process_time (CPU)",
        "scipy_note": f"SciPy Radau timed on {a.scipy_subset} of the {a.batch} samples, scaled by {a.batch}/{a.scipy_subset}",
        "diffrax_compile_s": compile_s,
        "max_relative_error_vs_radau_1e-12": errors, "times": summary,
        "speedup_vs_scipy": summary["scipy_radau_loop"]["min_s"] / ours,
        "ratio_to_diffrax": ours / summary["diffrax_kvaerno5_jit"]["min_s"],
        "torch": torch.__version__,
    }
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out + ".json", "w") as fh:
        json.dump(result, fh, indent=2)
    lines = [f"# Stiff benchmark: {result['problem']}", "", f"Command: `{result['command']}`", "",
             f"rtol={a.rtol:g}, atol={a.atol:g}; one thread; CPU time; {a.rounds} interleaved rounds; "
             f"{result['scipy_note']}; diffrax compile {compile_s:.1f} s apart.", "",
             "| solver | min s | median s | max s | max rel. error vs Radau 1e-12 (8 samples) |",
             "|---|---|---|---|---|"]
    for k, v in summary.items():
        lines.append(f"| {k} | {v['min_s']:.2f} | {v['median_s']:.2f} | {v['max_s']:.2f} | {errors[k]:.2e} |")
    lines += ["", f"attsolver vs SciPy Radau loop: {result['speedup_vs_scipy']:.1f}x faster; "
                  f"attsolver / diffrax: {result['ratio_to_diffrax']:.2f}x"]
    with open(a.out + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
