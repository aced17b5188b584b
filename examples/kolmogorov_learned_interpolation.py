"""Train Kochkov's learned interpolation in the 32^2 finite-difference Kolmogorov solver with
``fit`` (unrolled through ``solve``) on Re = 500 data, and score it on held-out initial fields.

    PYTHONPATH=. python examples/kolmogorov_learned_interpolation.py [--quick] [--out out/li]

Data: spun-up trajectories of the 128^2 pseudo-spectral ETDRK4 solve (nu = 1/500, drag 0.1,
forcing wavenumber 4), restricted spectrally to 32^2 every ``--frame`` time units.  Training
uses :class:`attsolver.correctors.InterpolationHost` (zero post-step correction, the CNN inside
every RK stage) with a rollout schedule.  Scoring: the mean over held-out fields of the
vorticity correlation with the reference on the 32^2 restriction; ``t95`` is the first time it
drops below 0.95.  Contenders: the FD ladder (Arakawa, n = 32, 40, 48, 64), the untrained
centred flux form at 32^2, the trained learned interpolation at 32^2.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from attsolver import fit, solve
from attsolver.correctors import InterpolationHost
from attsolver.data import TrajectoryDataset
from attsolver.evaluate.ladder import Rung, place_on_ladder, time_until
from attsolver.systems import LearnedInterpolation, NavierStokes2D, NavierStokes2DFD
from attsolver.systems.grid import restrict_2d

PHYSICS = {"nu": 1.0 / 500.0, "drag": 0.1, "forcing_wavenumber": 4, "forcing_amplitude": 1.0}
REF_N, N = 128, 32
DT32 = 0.025


def dt_for(n: int) -> float:
    return DT32 * N / n


def prolong(w: torch.Tensor, n: int) -> torch.Tensor:
    big = w.shape[-1]
    w_hat = torch.fft.rfft2(w)
    out = torch.zeros(*w.shape[:-2], n, n // 2 + 1, dtype=w_hat.dtype)
    h = big // 2
    out[..., :h, :h] = w_hat[..., :h, :h]
    out[..., n - h + 1:, :h] = w_hat[..., big - h + 1:, :h]
    return torch.fft.irfft2(out, s=(n, n)) * (n / big) ** 2


def trajectories(m: int, seed: int, t_total: float, frame: float, t_spin: float) -> torch.Tensor:
    """``[m, nt, REF_N, REF_N]`` spun-up reference trajectories (float32)."""
    s64, sref = NavierStokes2D(n=64, **PHYSICS), NavierStokes2D(n=REF_N, **PHYSICS)
    w = s64.sample_initial(m, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    w = solve(s64, w, torch.tensor([0.0, t_spin], dtype=torch.float64), method="etdrk4", step_size=dt_for(64))[-1]
    w = prolong(w, REF_N)
    w = solve(sref, w, torch.tensor([0.0, 1.0], dtype=torch.float64), method="etdrk4", step_size=dt_for(REF_N))[-1]
    t = torch.arange(int(round(t_total / frame)) + 1, dtype=torch.float64) * frame
    return solve(sref, w, t, method="etdrk4", step_size=dt_for(REF_N)).transpose(0, 1).contiguous(), t


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(dim=(-2, -1), keepdim=True)
    b = b - b.mean(dim=(-2, -1), keepdim=True)
    return (a * b).sum(dim=(-2, -1)) / (a.square().sum(dim=(-2, -1)) * b.square().sum(dim=(-2, -1))).sqrt()


def correlations(system, n: int, ref: torch.Tensor, t: torch.Tensor) -> np.ndarray:
    """``[m, nt]`` correlation with the reference on the 32^2 restriction (NaN -> -1: blown up)."""
    w0 = restrict_2d(ref[:, 0].double(), n)
    with torch.no_grad():
        pred = solve(system, w0, t, method="ssprk3", step_size=dt_for(n)).transpose(0, 1)
    return np.nan_to_num(correlation(restrict_2d(pred, N), restrict_2d(ref.double(), N)).numpy(), nan=-1.0)


def step_cost(system, n: int, batch: int, rounds: int = 5) -> float:
    """Median CPU seconds of one ssprk3 step of a batch (one thread), per trajectory."""
    w = system.sample_initial(batch, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 4 * dt_for(n)], dtype=torch.float64)
    out = []
    with torch.no_grad():
        for _ in range(rounds):
            c0 = time.process_time()
            solve(system, w, t, method="ssprk3", step_size=dt_for(n))
            out.append((time.process_time() - c0) / 4 / batch)
    return float(np.median(out))


def summarise(corr: dict[str, np.ndarray], t: np.ndarray, ladder_names: list[tuple[int, str]],
              cost: dict[str, float], boot: int = 200):
    """t95 of every contender, and the equivalent FD grid and speed-up of the others on the FD
    ladder (:func:`attsolver.evaluate.ladder.place_on_ladder`: neighbouring measured rungs, a
    censored rung never an upper bracket), with bootstrap 5-95 % over the initial fields."""
    m = next(iter(corr.values())).shape[0]
    rng = np.random.default_rng(0)
    draws = [np.arange(m)] + [rng.integers(0, m, m) for _ in range(boot)]
    res: dict[str, dict[str, list]] = {k: {"t95": [], "eq_n": [], "speedup": [], "how": []} for k in corr}
    for idx in draws:
        t95s = {k: time_until(t, c[idx].mean(axis=0)) for k, c in corr.items()}
        ladder = [Rung(n, *t95s[name], cost[name]) for n, name in ladder_names]
        for k in corr:
            p = place_on_ladder(ladder, *t95s[k])
            res[k]["t95"].append(t95s[k][0])
            res[k]["eq_n"].append(p["n"])
            res[k]["speedup"].append(p["cost"] / cost[k])
            res[k]["how"].append(p["how"])
    out = {}
    for k, r in res.items():
        tv, en, sp = np.array(r["t95"]), np.array(r["eq_n"]), np.array(r["speedup"])
        out[k] = {"t95": float(tv[0]), "t95_5_95": [float(np.percentile(tv[1:], 5)), float(np.percentile(tv[1:], 95))],
                  "censored": bool(tv[0] >= t[-1]), "eq_n": float(en[0]), "how": r["how"][0],
                  "eq_n_5_95": [float(np.percentile(en[1:], 5)), float(np.percentile(en[1:], 95))],
                  "halvings": float(np.log2(en[0] / N)), "speedup_vs_fd_at_equal_t95": float(sp[0]),
                  "speedup_5_95": [float(np.percentile(sp[1:], 5)), float(np.percentile(sp[1:], 95))]}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="out/li")
    ap.add_argument("--train", type=int, default=12, help="training trajectories (20%% held for validation)")
    ap.add_argument("--test", type=int, default=8, help="held-out initial fields for scoring")
    ap.add_argument("--t-train", type=float, default=3.0)
    ap.add_argument("--t-test", type=float, default=6.0)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--ladder", type=int, nargs="+", default=[32, 40, 48, 56, 64, 80, 96])
    a = ap.parse_args(argv)
    if a.quick:
        a.train, a.test, a.t_train, a.t_test, a.epochs, a.ladder = 4, 2, 1.0, 2.0, 2, [32, 48, 64]
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.process_time()
    y, t = trajectories(a.train, 13_500, a.t_train, 0.1, 8.0)
    data = TrajectoryDataset(t=t, y=restrict_2d(y, N), system=NavierStokes2DFD(n=N, **PHYSICS).config(),
                             config={"generator": "examples/kolmogorov_learned_interpolation.py", "reference": "128^2 etdrk4",
                                     "seed": 13_500, "t_spin": 9.0})
    ref, tt = trajectories(a.test, 13_000, a.t_test, 0.1, 8.0)
    cpu_data = time.process_time() - t0
    print(f"data: {cpu_data:.0f}s cpu", flush=True)
    li = LearnedInterpolation(N, PHYSICS["nu"], hidden=a.hidden, layers=3)
    host = InterpolationHost(li, step_size=DT32)
    q = max(1, a.epochs // 4)
    sched = [(0, 1), (q, 2), (2 * q, 4), (3 * q, 8)]  # up to 8 intervals = 32 steps of 0.025
    t0 = time.process_time()
    hist = fit(host, data, system=host.system(), epochs=a.epochs, lr=1e-3, batch_size=16, rollout_schedule=sched,
               patience=None, progress=False, grad_clip=1.0, check=False,
               on_epoch_end=lambda e, h: print(f"epoch {e}: cpu {time.process_time() - t0:.0f}s", flush=True))
    cpu_fit = time.process_time() - t0
    host.interpolation.double()
    ladder = [(n, f"fd-{n}") for n in a.ladder]
    systems = {f"fd-{n}": (NavierStokes2DFD(n=n, **PHYSICS), n) for n in a.ladder}
    systems["centred-flux-32 (untrained)"] = (NavierStokes2DFD(
        n=N, **PHYSICS, interpolation=LearnedInterpolation(N, PHYSICS["nu"]).double()), N)
    systems["learned-interp-32"] = (host.system(), N)
    corr = {k: correlations(sy, n, ref, tt) for k, (sy, n) in systems.items()}
    host.interpolation.float()  # timed in its training dtype (float32 weights, float64 fields)
    cost = {}
    for k, (sy, n) in systems.items():  # interleaved by construction: one contender after another, 5 rounds each
        cost[k] = step_cost(sy, n, 8) / dt_for(n)
    rows = summarise(corr, tt.numpy(), ladder, cost)
    for k, (sy, n) in systems.items():
        rows[k]["cpu_s_per_time_unit_batch8"] = cost[k]
        rows[k]["cpu_s_per_step_batch8"] = cost[k] * dt_for(n)
    report = {"rows": rows, "cpu_s": {"data": cpu_data, "fit": cpu_fit}, "args": vars(a), "schedule": sched,
              "data": f"{a.train} trajectories x {a.t_train} time units (frames 0.1) train (20% validation), "
                      f"{a.test} held-out x {a.t_test} test; 128^2 spectral ETDRK4 restricted to 32^2",
              "train_loss": [float(x) for x in hist.train_loss], "val_loss": [float(x) for x in hist.val_loss]}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    torch.save(host.interpolation.state_dict(), out / "learned_interpolation.pt")
    for k, v in rows.items():
        print(f"{k:30s} t95 {'>=' if v['censored'] else '  '}{v['t95']:.3f} [{v['t95_5_95'][0]:.3f}, "
              f"{v['t95_5_95'][1]:.3f}]  eq n {v['eq_n']:.1f} [{v['eq_n_5_95'][0]:.1f}, {v['eq_n_5_95'][1]:.1f}] "
              f"halvings {v['halvings']:.2f}  cpu/time-unit {v['cpu_s_per_time_unit_batch8'] * 1e3:.2f} ms  "
              f"speed-up {v['speedup_vs_fd_at_equal_t95']:.2f} ({v['how']})")
    print(json.dumps(report["cpu_s"]), json.dumps(report["val_loss"]))


if __name__ == "__main__":
    main()
