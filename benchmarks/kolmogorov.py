"""Kolmogorov-flow benchmark: where a learned corrector pays (2-D turbulence on coarse grids),
measured with Kochkov et al.'s (2021) equal-accuracy protocol, at a scale that fits a
2-core CPU.

Set-up (see docs/kolmogorov.md and docs/learned_interpolation.md for the choices and what they
cost):

* the flow: :class:`attsolver.systems.NavierStokes2D` on ``[0, 2 pi)^2`` with Kochkov's
  forcing (wavenumber 4, amplitude 1, linear drag 0.1) at ``nu = 1/500`` (Re = 500, half of
  Kochkov's 1000: a 512^2 reference at Re = 1000 costs more than this machine has);
* data: random fields spun up for ``t_spin`` time units (64^2, then 128^2), then reference
  trajectories from the 128^2 pseudo-spectral ETDRK4 solve over ``t_eval`` (8) time units,
  restricted to the coarse grids by spectral cut-off; the reference is checked against a finer
  spectral solve (``--check-n``, 256^2) from the same initial fields over the whole horizon:
  every contender's time-until-0.95 is computed against both;
* contenders: a fine finite-difference ladder (Arakawa + SSP-RK3, 32^2 ... 128^2), a fine
  spectral ladder (ETDRK4, 32^2 ... 96^2), periodic-convolution correctors (plain CNN,
  NeurVec-style, AttSolver-style with its SE gate) after a 32^2 step of either base solver,
  and Kochkov's learned interpolation inside the 32^2 FD solver
  (``NavierStokes2DFD(interpolation=...)``), all trained with ``attsolver.fit`` by unrolling
  through the differentiable coarse solver (the learned interpolation until its t95 on
  validation initial conditions of their own seed, ``--val-seed``, stops improving:
  :class:`attsolver.training.ScoreStopping`); each classical ladder steps at the largest step
  at which its accuracy does not change (``--step-scale``: spectral 2x, FD 1.1x the Courant-0.5
  step ``dt = 0.025 * 32 / n``, FD held below its CFL limit; a step check re-solves each at the
  Courant-0.5 step), the learned interpolation at the FD step, post-step correctors at the step
  they were trained for;
* accuracy: mean vorticity correlation with the reference over 16 held-out initial
  conditions, on the common 32^2 grid (the full band) and on its ``|k| <= 10`` band; the time
  until it falls below 0.95 (t95; censored at the horizon when it never does), nRMSE at fixed
  horizons, energy spectra at the end, blow-ups over a long rollout (``t_long`` = 20);
* cost: CPU seconds of one thread, in interleaved rounds; per call, the set-up (the call's
  fixed cost) is separated from the per-step cost by timing a short and a long solve; the
  per-step cost per unit simulated time per trajectory for one trajectory per solve and for
  batches of 16 and 64; the spread (quartiles over rounds) is stated;
* equal accuracy (:mod:`attsolver.evaluate.ladder`): the grid a corrected solver is worth, and
  its cost, interpolated between neighbouring measured rungs of each ladder; a censored rung is
  never an upper bracket; bootstrap (5-95 %) over the test initial conditions;
* our 2-D spectral step against exponax's (skipped, with a note, when exponax is not
  installed: ``pip install -e .[bench]``).

    attsolver bench kolmogorov --quick --out out/bench-kolmogorov-quick
    attsolver bench kolmogorov --out benchmarks/results
    attsolver bench kolmogorov --regime re1000 --out benchmarks/results/kolmogorov_re1000

``--regime re1000`` is Kochkov's Re = 1000 on a 64^2 base grid (FD ladder to 256^2, a 256^2
reference checked against 512^2), with the cuts a 2-core CPU forces listed on its page
(:func:`re1000_settings`); the default ``re500`` is the protocol above, unchanged.

Data and trained models are cached under ``--cache`` (default ``out/kolmogorov_cache``); a rerun
resumes from them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from argparse import SUPPRESS, ArgumentTypeError
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import attsolver
from attsolver import fit, solve
from attsolver._io import atomic_path, atomic_write_text
from attsolver.correctors import AttSolverConv, ConvCorrector, InterpolationHost, NeurVecConv, load_corrector
from attsolver.data import TrajectoryDataset, add_noise, load_h5, save_h5
from attsolver.evaluate.ladder import Rung, band_limit, place_on_ladder, time_until
from attsolver.steppers import get_method
from attsolver.systems import LearnedInterpolation, NavierStokes2D, NavierStokes2DFD
from attsolver.systems.grid import prolong_2d as prolong  # k.prolong: the tests' name
from attsolver.systems.grid import restrict_2d as spectral_restrict
from attsolver.systems.navier_stokes import energy_spectrum
from attsolver.training import NonFiniteLossError, ScoreStopping

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import (Run, figure, fingerprint, finite, parser, provenance_lines, timings,  # noqa: E402
                               write_report)

SCHEMA = 3  # 2: fine ladders, censoring-aware brackets, two bands, set-up apart, batches 1/16/64;
# 3: each ladder at its --step-scale step (contenders' "step"), the step check, X per unit time
DATA_VERSION = 1  # bump when the data generation changes: a cache built by another version is rebuilt
# The two protocols (``--regime``).  Re = 500 is the small, fast one; Re = 1000 is Kochkov's flow with
# a 64^2 base grid (the headroom: an FD ladder to 256^2).  ``dt_coarse``: the step at the base grid
# (``dt_for(n) = dt_coarse * coarse_n / n``, Courant number fixed); ``spin_n``: the spin-up grid.
REGIMES: dict[str, dict[str, Any]] = {
    "re500": {"physics": {"nu": 1.0 / 500.0, "drag": 0.1, "forcing_wavenumber": 4, "forcing_amplitude": 1.0},
              "coarse_n": 32, "ref_n": 128, "spin_n": 64,
              "dt_coarse": 0.025},  # Courant ~0.5 at 32^2 for the steady state's max |u| + |v| (about 3.5)
    "re1000": {"physics": {"nu": 1.0 / 1000.0, "drag": 0.1, "forcing_wavenumber": 4, "forcing_amplitude": 1.0},
               "coarse_n": 64, "ref_n": 256, "spin_n": 128,
               "dt_coarse": 0.01},  # Courant ~0.57 at 64^2 for the measured max |u| + |v| (about 5.6 after spin-up)
}
#: each regime's full-size test protocol (frames, spin-up, FD ladder): the suite's settings and the oracle's
PROTOCOL = {"re500": {"frame": 0.1, "t_spin": 12.0, "fd_ladder": [32, 40, 48, 56, 64, 80, 96, 128],
                      "spectral_ladder": [32, 40, 48, 56, 64, 80, 96]},
            "re1000": {"frame": 0.2, "t_spin": 10.0, "fd_ladder": [64, 80, 96, 112, 128, 160, 192, 256],
                       "spectral_ladder": [64, 80, 96, 112, 128, 160, 192]}}
PHYSICS = REGIMES["re500"]["physics"]
REF_N = 128
COARSE_N = 32
SPIN_N = 64
DT32 = 0.025  # the step at the base grid COARSE_N (the name predates --regime)
DTYPE = torch.float32
THRESHOLD = 0.95
BANDS = {"full": None, "k10": 10.0}  # scoring bands on the common 32^2 grid: all of it, |k| <= 10
TEST_SEED, TRAIN_SEED = 13_000, 13_500
VAL_SEED = 13_800  # the learned interpolation's validation initial conditions (early stopping on their t95)
# The learned interpolation's default build (the lever table's best: benchmarks/results/kolmogorov_li/summary.md)
# and the earlier one (``--li-weights-per stage --li-hidden 16 --li-layers 3 --li-train 16 --li-epochs 12
# --li-patience 0``, still the Re = 1000 default).  Keys: hidden, layers, weights_per, train, epochs, patience.
LI_DEFAULTS = {"re500": (4, 1, "step", 32, 32, 4), "re1000": (16, 3, "stage", 8, 4, 0)}
BASES = {"fd": (NavierStokes2DFD, "ssprk3"), "spectral": (NavierStokes2D, "etdrk4")}
KINDS = ("cnn", "neurvec", "attsolver", "li")
LI = "fd-32+learned-interp"
# Each ladder's step, as a multiple of ``dt_for(n)`` (the Courant-0.5 step), per regime (``--step-scale``):
# every classical rung at the largest step at which its accuracy does not change (a weaker baseline
# would flatter the learned solver; ``bench kolmogorov_steps`` measures it).  Spectral: 2; at 3 the
# Re = 1000 rungs from 128^2 up lose accuracy or blow up.  FD: its t95 does not move up to 1.65, but
# the FD system refuses a step above its CFL limit dx / max(|u| + |v|), which the test trajectories'
# fastest frames put at 1.27 dt_for (Re = 1000) and 1.18 (Re = 500) on the finest rungs; 1.2 and 1.1
# keep every rung's Courant number below 0.95 there.  The learned interpolation runs at the FD scale
# (a spatial scheme: its t95 does not move from 1 to 1.65 dt_for); a post-step corrector at the step
# it was trained for.  The run's step check re-solves every scaled contender at ``dt_for(n)``.
STEP_SCALE = {"re500": {"fd": 1.1, "spectral": 2.0}, "re1000": {"fd": 1.2, "spectral": 2.0}}


@contextlib.contextmanager
def regime(name: str):
    """Within the block the module's regime constants (:data:`PHYSICS`, :data:`COARSE_N`,
    :data:`REF_N`, :data:`SPIN_N`, :data:`DT32`, :data:`LI`) are those of ``REGIMES[name]``;
    restored after it (so a Re = 1000 run leaves the Re = 500 defaults as they were)."""
    if name not in REGIMES:
        raise ValueError(f"regime={name!r} is unknown; choose one of {sorted(REGIMES)}")
    g = globals()
    keys = ("PHYSICS", "COARSE_N", "REF_N", "SPIN_N", "DT32", "LI")
    saved = {k: g[k] for k in keys}
    r = REGIMES[name]
    g.update(PHYSICS=r["physics"], COARSE_N=r["coarse_n"], REF_N=r["ref_n"], SPIN_N=r["spin_n"], DT32=r["dt_coarse"],
             LI=f"fd-{r['coarse_n']}+learned-interp")
    try:
        yield r
    finally:
        g.update(saved)


def dt_for(n: int) -> float:
    """Step at grid ``n``: Courant number fixed, ``dt ~ dx``."""
    return DT32 * COARSE_N / n


def step_for(n: int, scale: float, frame: float) -> float:
    """The step a rung runs at: the largest ``h <= scale * dt_for(n)`` with a whole number of steps
    per frame (``scale`` 1 is :func:`dt_for` itself: the frames are whole numbers of those steps)."""
    if not scale > 0:
        raise ValueError(f"step scale={scale!r} must be > 0 (1: dt_for(n), the Courant-0.5 step)")
    return frame / math.ceil(frame / (scale * dt_for(n)) - 1e-9)


def step_of(c: dict[str, Any]) -> float:
    """A contender's step: its ``"step"`` (set by the protocol from ``--step-scale``), else :func:`dt_for`."""
    return c.get("step") or dt_for(c["n"])


def system_for(base: str, n: int):
    return BASES[base][0](n=n, **PHYSICS)


# --------------------------------------------------------------------------- data


def _advance(system, w, t_total, dt, method="etdrk4"):
    t = torch.tensor([0.0, t_total], dtype=torch.float64)
    return solve(system, w, t, method=method, step_size=dt)[-1]


def make_trajectories(n_traj: int, seed: int, t_total: float, frame: float, t_spin: float, log) -> TrajectoryDataset:
    """Spun-up reference trajectories at ``REF_N^2`` (``[n, nt, REF_N, REF_N]``)."""
    s64, sref = NavierStokes2D(n=SPIN_N, **PHYSICS), NavierStokes2D(n=REF_N, **PHYSICS)
    w = s64.sample_initial(n_traj, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
    t0 = time.perf_counter()
    w = _advance(s64, w, t_spin, dt_for(SPIN_N))
    w = _advance(sref, prolong(w, REF_N), min(1.5, t_spin / 5), dt_for(REF_N))  # small scales fill in
    log(f"  spin-up of {n_traj} fields: {time.perf_counter() - t0:.0f}s")
    nt = int(round(t_total / frame)) + 1
    t = torch.arange(nt, dtype=torch.float64) * frame
    t0 = time.perf_counter()
    y = solve(sref, w, t, method="etdrk4", step_size=dt_for(REF_N),  # progress: log lines per frame interval
              progress=COARSE_N > 32).transpose(0, 1).contiguous()
    log(f"  reference {REF_N}^2 trajectories to t={t_total:g}: {time.perf_counter() - t0:.0f}s")
    return TrajectoryDataset(t=t, y=y, system=sref.config(), config={
        "generator": "benchmarks/kolmogorov.py", "seed": seed, "t_spin": t_spin, "method": "etdrk4",
        "step_size": dt_for(REF_N), "dtype": "float32"})


def restricted(data: TrajectoryDataset, n: int, noise: float = 0.0, seed: int = 0) -> TrajectoryDataset:
    y = spectral_restrict(data.y, n)
    y_clean = None
    if noise > 0:
        scale = y.std().expand(n, n)  # one spread for the whole (statistically homogeneous) field
        y_clean = y
        y = add_noise(y, noise, generator=torch.Generator().manual_seed(seed), scale=scale)
    return TrajectoryDataset(t=data.t, y=y, y_clean=y_clean, system=NavierStokes2D(n=n, **PHYSICS).config(),
                             noise_level=noise, config={**data.config, "restricted_to": n})



# --------------------------------------------------------------------------- metrics


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Vorticity correlation ``<a, b> / (|a| |b|)`` over the last two dims (NaN -> 0)."""
    c = (a * b).sum((-2, -1)) / (a.norm(dim=(-2, -1)) * b.norm(dim=(-2, -1))).clamp_min(1e-30)
    return torch.nan_to_num(c.double(), nan=0.0, posinf=0.0, neginf=0.0)


def in_band(w: torch.Tensor, band: str) -> torch.Tensor:
    """``w`` on the common 32^2 grid restricted to a scoring band (:data:`BANDS`)."""
    kmax = BANDS[band]
    return w if kmax is None else band_limit(w, kmax)


def system_of(c: dict[str, Any], models: dict[str, Any]):
    """The system, method and post-step corrector of a contender (a learned interpolation lives
    in the system; a convolution corrector after the step)."""
    model = models.get(c.get("model", ""))
    if isinstance(model, InterpolationHost):
        return model.system(), "ssprk3", None
    return system_for(c["base"], c["n"]), BASES[c["base"]][1], model


def rollout(c: dict[str, Any], models: dict[str, Any], w0: torch.Tensor, t: torch.Tensor,
            guard: str | None = None) -> torch.Tensor | tuple[torch.Tensor, Any]:
    """``[B, nt, n, n]`` from ``w0 [B, n, n]`` (no finiteness check: blow-ups are scored); with
    ``guard`` (a learned interpolation's, :mod:`attsolver.systems.interpolation_guard`) also its report."""
    system, method, corrector = system_of(c, models)
    with torch.no_grad():
        out = solve(system, w0, t, method=method, step_size=step_of(c), corrector=corrector,
                    options={"check_finite": False}, guard=guard, return_stats=guard is not None)
    return out.transpose(0, 1) if guard is None else (out[0].transpose(0, 1), out[1].guard)


def predict(c: dict[str, Any], models: dict[str, Any], ref: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A contender's rollout from the reference's first frames (``ref [B, nt, N, N]``), on its own
    grid, restricted to the common grid: ``[B, nt, COARSE_N, COARSE_N]``."""
    return spectral_restrict(rollout(c, models, spectral_restrict(ref[:, 0], c["n"]), t), COARSE_N)


def score(pred: torch.Tensor, ref: torch.Tensor, t: np.ndarray, horizons: list[float]) -> dict[str, Any]:
    """``pred``, ``ref``: ``[B, nt, 32, 32]`` on the common grid; per band the correlations
    ``[B, nt]``, their mean and its t95; nRMSE (full band) at the horizons."""
    out: dict[str, Any] = {"corr": {}, "mean_corr": {}, "t95": {}, "censored": {}}
    for band in BANDS:
        corr = correlation(in_band(pred, band), in_band(ref, band)).numpy()  # [B, nt]
        out["corr"][band] = corr
        out["mean_corr"][band] = corr.mean(0).tolist()
        out["t95"][band], out["censored"][band] = time_until(t, corr.mean(0), THRESHOLD)
    err = ((pred - ref).double().norm(dim=(-2, -1)) / ref.double().norm(dim=(-2, -1))).numpy()
    err = np.nan_to_num(err, nan=np.inf)
    nrmse = {}
    for h in horizons:
        i = int(np.argmin(np.abs(t - h)))
        v = float(np.mean(err[:, i]))
        nrmse[f"{h:g}"] = v if math.isfinite(v) else None
    out["nrmse"] = nrmse
    return out

# --------------------------------------------------------------------------- correctors


def build_corrector(kind: str, base: str, seed: int) -> ConvCorrector:
    torch.manual_seed(seed)
    common = dict(method=BASES[base][1], step_size=dt_for(COARSE_N), domain_length=2 * math.pi, dtype=DTYPE)
    shape = (COARSE_N, COARSE_N)
    if kind == "cnn":  # plain CNN correction: the body and head, no gate
        return AttSolverConv(shape, attention="none", width=16, depth=3, kernel_size=3, head_kernel=3, **common)
    if kind == "neurvec":  # one wide hidden layer with NeurVec's rational activation, the field only
        return NeurVecConv(shape, width=32, kernel_size=5, **common)
    if kind == "attsolver":  # the CNN body + SE channel gate (values in (0, 1), Lipschitz-capped)
        return AttSolverConv(shape, attention="se", width=16, depth=3, kernel_size=3, head_kernel=3, **common)
    raise ValueError(f"unknown corrector kind {kind!r}; choose one of {KINDS}")


def curriculum(unroll: int, epochs: int) -> Callable[[int], int]:
    """Window length per epoch: 2 data intervals, rising to ``unroll`` over the first half."""
    return lambda e: max(2, min(unroll, 2 + (unroll - 1) * e // max(1, epochs // 2)))


def epochs_for(iterations: int, batch: int, unroll: int, data: TrajectoryDataset) -> int:
    """Epochs that show ``fit`` about as many windows as ``iterations`` random batches of
    ``batch`` did (one epoch: every window of ``unroll`` intervals once); at least 2, so the
    curriculum has a short and a long phase."""
    windows = len(data) * (data.n_times - 1 - unroll + 1)  # windows of `unroll` intervals per epoch
    return max(2, math.ceil(iterations * batch / max(1, windows)))


def train_corrector(model: ConvCorrector, base: str, data: TrajectoryDataset, *, iterations: int, unroll: int,
                    batch: int, seed: int, log) -> dict[str, Any]:
    """Solver-in-the-loop through :func:`attsolver.fit`: windows of ``k`` corrected coarse steps
    from a data frame matched to the next ``k`` frames, ``k`` rising 2 -> ``unroll``
    (:func:`curriculum`); Adam (lr 2e-3, cosine decay, gradient norm clipped to 1) on every
    trajectory (no validation split, no early stop) for :func:`epochs_for` epochs."""
    epochs = epochs_for(iterations, batch, unroll, data)
    history = fit(model, data, system=system_for(base, COARSE_N), method=BASES[base][1],
                  step_size=dt_for(COARSE_N), rollout_schedule=curriculum(unroll, epochs), epochs=epochs,
                  lr=2e-3, batch_size=batch, val_fraction=0.0, patience=None, grad_clip=1.0, seed=seed,
                  progress=False, check=False)
    losses = history.train_loss
    log(f"    fit {epochs} epochs (budget {iterations} its, unroll {unroll}) in {history.wall_time_s:.0f}s, "
        f"loss {losses[0]:.3g} -> {losses[-1]:.3g}")
    return {"seconds": history.wall_time_s, "loss_first": float(losses[0]), "loss_last": float(losses[-1]),
            "iterations": iterations, "unroll": unroll, "batch": batch,
            "parameters": sum(p.numel() for p in model.parameters())}


def build_learned_interpolation(hidden: int, layers: int, weights_per: str, **stencil: Any) -> InterpolationHost:
    """The 32^2 FD host of a learned interpolation (untrained); ``stencil``: ``width``,
    ``transverse``, ``base`` of :class:`LearnedInterpolation` (``--li-stencil``, ``--li-base``)."""
    li = LearnedInterpolation(COARSE_N, PHYSICS["nu"], hidden=hidden, layers=layers, weights_per=weights_per,
                              **stencil)
    return InterpolationHost(li, step_size=dt_for(COARSE_N))


def validation_t95(host: InterpolationHost, w_val: torch.Tensor, t: torch.Tensor) -> float:
    """t95 (full band, censored at the horizon) of the learned solver's mean correlation with the
    reference ``w_val`` (``[B, nt, n, n]`` on the base grid, from its first frame) over times ``t``."""
    pred = rollout({"base": "fd", "n": COARSE_N, "model": LI}, {LI: host}, w_val[:, 0], t)
    return time_until(t.numpy(), correlation(pred, w_val).numpy().mean(0), THRESHOLD)[0]


def train_learned_interpolation(data: TrajectoryDataset, *, epochs: int, hidden: int, log, layers: int = 3,
                                weights_per: str = "stage", unroll: int = 8, ramp: int | None = None,
                                validation: dict[str, Any] | None = None, stencil: dict[str, Any] | None = None,
                                checkpoint_steps: int | None = None,
                                loss: str = "mse") -> tuple[InterpolationHost, dict[str, Any]]:
    """Kochkov's learned interpolation in the 32^2 FD solver, trained through :func:`attsolver.fit`
    as ``examples/kolmogorov_learned_interpolation.py`` does: the CNN inside every RK stage
    (``weights_per="stage"``) or once per step (``"step"``), rollout schedule 1 -> 2 -> 4 -> ...
    -> ``unroll`` frame intervals in equal phases of the first ``ramp`` epochs (default all of them;
    ``unroll`` 8: up to 32 steps of 0.025), then ``unroll`` to the end; Adam lr 1e-3 (cosine decay
    over ``epochs``), gradient norm clipped to 1, 20 % of the trajectories for fit's validation
    loss.  Without ``validation`` it runs ``epochs`` epochs and keeps fit's best validation-loss
    epoch of the last window length.  With ``validation`` (``{"w": [B, nt, n, n], "t": times,
    "every": k, "patience": p, ...}``, initial conditions of their own seed) ``epochs`` is the cap:
    every ``k`` epochs the t95 of the learned solver on them (:func:`validation_t95`) is measured,
    the best weights are kept, and training stops after ``p`` evaluations without improvement
    counted from the first epoch of the final window (:class:`attsolver.training.ScoreStopping`
    with that warm-up: a change of window moves the score for reasons other than over-fitting).
    ``checkpoint_steps``: fit's gradient checkpointing over the unroll (the same gradients in
    memory that does not grow with the window; long windows at 64^2).  ``loss``: fit's training loss,
    ``"mse"`` or ``"correlation"`` (1 - the rolled-out vorticity's correlation with the data per
    frame, the measure t95 reads).  With ``validation``, a training or validation rollout that
    becomes non-finite ends the training (fit's :class:`NonFiniteLossError`) and the best
    validation-t95 weights of the epochs before it are kept; ``info["diverged"]`` records the
    epoch and the error (``None`` when training ran to its stop)."""
    torch.manual_seed(0)
    host = build_learned_interpolation(hidden, layers, weights_per, **(stencil or {}))
    phases = [2**i for i in range(int(math.log2(unroll)) + 1)]
    q = max(1, min(ramp or epochs, epochs) // len(phases))
    sched = [(i * q, p) for i, p in enumerate(phases)]
    stop = None
    if validation is not None:
        def score(h):
            v = validation_t95(h, validation["w"], validation["t"])
            log(f"      validation t95 {v:.3f}")
            return v
        stop = ScoreStopping(host, score, every=validation["every"], patience=validation["patience"],
                             warmup=sched[-1][0])
    started, diverged = time.perf_counter(), None
    try:
        history = fit(host, data, system=host.system(), epochs=epochs, lr=1e-3, batch_size=16,
                      rollout_schedule=sched, patience=None, progress=False, grad_clip=1.0, check=False, seed=0,
                      on_epoch_end=stop, restore_best=stop is None, checkpoint_steps=checkpoint_steps, loss=loss)
    except NonFiniteLossError as err:
        # a rollout blew up (the model left its stable states): with early stopping the best
        # validation-t95 weights of the epochs before it are a result, recorded as such
        if stop is None or stop.best_state is None:  # no scored epoch to keep
            raise
        history, diverged = err.history, {"epoch": err.epoch, "message": str(err)}
        history.wall_time_s = time.perf_counter() - started
        log(f"    training stopped in epoch {err.epoch}: {err}")
    log(f"    fit {history.epochs_run} epochs in {history.wall_time_s:.0f}s, val loss {history.val_loss[0]:.3g} -> "
        f"{history.val_loss[-1]:.3g}")
    info = {"seconds": history.wall_time_s, "loss_first": float(history.train_loss[0]),
            "loss_last": float(history.train_loss[-1]), "val_loss": [float(x) for x in history.val_loss],
            "epochs": epochs, "epochs_run": history.epochs_run, "schedule": sched, "trajectories": len(data),
            "t_train": float(data.t[-1]), "parameters": sum(p.numel() for p in host.parameters()), "hidden": hidden,
            "layers": layers, "weights_per": weights_per, "unroll": unroll, "ramp": ramp,
            "checkpoint_steps": checkpoint_steps, "loss": loss, "diverged": diverged}
    if stop is not None:
        stop.restore()
        info["validation"] = {**stop.record(), **{k: v for k, v in validation.items() if k not in ("w", "t")},
                              "horizon": float(validation["t"][-1]), "n": int(len(validation["w"])),
                              "metric": f"t95 of the mean vorticity correlation (full {COARSE_N}² band)",
                              "window": [history.rollout_steps[e - 1] for e, _ in stop.curve]}
        log(f"    early stopping: best validation t95 {stop.best_score:.3f} at epoch {stop.best_epoch} "
            f"of {history.epochs_run} run (cap {epochs})")
    return host, info


# --------------------------------------------------------------------------- timing


def interleaved_median(fns: dict[str, Callable[[], Any]], rounds: int
                       ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Median CPU seconds and median wall seconds per call over interleaved rounds, and the
    first (warm-up) call's wall seconds (the exponax comparison's clock)."""
    t = timings(fns, rounds)
    return ({k: v.median("cpu") for k, v in t.items()}, {k: v.median() for k, v in t.items()},
            {k: v.first_s for k, v in t.items()})


def time_costs(contenders: dict[str, dict[str, Any]], models: dict[str, Any], w_ref: torch.Tensor,
               batches: list[int], rounds: int, steps: tuple[int, int] = (2, 10)) -> dict[str, Any]:
    """CPU seconds of one thread: every contender at every batch size, a short and a long solve
    (``steps``) in the same interleaved rounds.  Per round, the per-step cost is the difference
    over the extra steps and the set-up the short call less its steps; medians and quartiles over
    the rounds.  Before timing, the batched end state is checked equal to per-trajectory solves
    (the first two initial conditions).  ``w_ref``: ``[B, REF_N, REF_N]`` fields, tiled to the
    largest batch."""
    fns, checks = {}, {}
    for name, c in contenders.items():
        n = c["n"]
        system, method, corrector = system_of(c, models)
        w_all = spectral_restrict(w_ref, n)
        w_all = w_all.repeat(math.ceil(max(batches) / len(w_all)), 1, 1)

        def make(w0, k, system=system, method=method, corrector=corrector, h=step_of(c)):
            t = torch.tensor([0.0, k * h], dtype=torch.float64)

            def run():
                with torch.no_grad():
                    return solve(system, w0, t, method=method, step_size=h, corrector=corrector,
                                 options={"check_finite": False})[-1]
            return run
        for b in batches:
            for k in steps:
                fns[(name, b, k)] = make(w_all[:b].contiguous(), k)
        whole = fns[(name, max(batches), steps[0])]()[:2]
        single = torch.cat([make(w_all[i:i + 1], steps[0])() for i in range(2)])
        checks[name] = float((whole - single).norm() / single.norm())
        if not checks[name] < 1e-4:
            raise AssertionError(f"batched solve of {name} differs from its per-trajectory solves "
                                 f"(relative difference {checks[name]:.2e})")
    tm = timings(fns, rounds, alternate=True)
    out: dict[str, Any] = {"batches": batches, "steps": list(steps), "rounds": rounds,
                           "relative_difference_batched_vs_single": checks,
                           "clock": "CPU seconds of this process (time.process_time), one thread, interleaved rounds",
                           "per_step": {}, "per_step_q1_q3": {}, "setup": {}, "setup_q1_q3": {},
                           "per_time_per_trajectory": {}}
    k0, k1 = steps
    for b in batches:
        key = str(b)
        for table in ("per_step", "per_step_q1_q3", "setup", "setup_q1_q3", "per_time_per_trajectory"):
            out[table][key] = {}
        for name, c in contenders.items():
            short, long_ = tm[(name, b, k0)].cpu, tm[(name, b, k1)].cpu
            step = [(y - x) / (k1 - k0) for x, y in zip(short, long_)]
            setup = [x - k0 * s for x, s in zip(short, step)]
            out["per_step"][key][name] = float(np.median(step))
            out["per_step_q1_q3"][key][name] = [float(np.percentile(step, 25)), float(np.percentile(step, 75))]
            out["setup"][key][name] = float(np.median(setup))
            out["setup_q1_q3"][key][name] = [float(np.percentile(setup, 25)), float(np.percentile(setup, 75))]
            out["per_time_per_trajectory"][key][name] = out["per_step"][key][name] / b / step_of(c)
    return out


def halving_ratios(cost: dict[str, float], rungs: list[str]) -> list[float]:
    """Cost ratio per halving of the grid spacing between consecutive rungs, ``(c1/c0)^(1/log2(n1/n0))``."""
    def n_of(name):
        return int(name.split("-")[-1])
    return [(cost[b] / cost[a]) ** (1.0 / math.log2(n_of(b) / n_of(a))) for a, b in zip(rungs, rungs[1:])]


# --------------------------------------------------------------------------- equal accuracy


def _t95s(scores: dict[str, Any], band: str, t: np.ndarray, idx: np.ndarray | None) -> dict[str, tuple[float, bool]]:
    out = {}
    for k, s in scores.items():
        c = s["corr"][band]
        out[k] = time_until(t, (c if idx is None else c[idx]).mean(0), THRESHOLD)
    return out


def placements(scores: dict[str, Any], t: np.ndarray, ladders: dict[str, list[tuple[str, int]]],
               names: list[str], n_boot: int) -> dict[str, Any]:
    """Accuracy only: per band, ladder (``{name: [(rung contender, n), ...]}``) and solver in
    ``names``, the equivalent grid and halvings over :data:`COARSE_N` (:func:`place_on_ladder`),
    bootstrap 5-95 % over the initial conditions (the same resamples for every entry)."""
    rng = np.random.default_rng(0)
    n_ic = next(iter(scores.values()))["corr"]["full"].shape[0]
    draws = [None] + [rng.integers(0, n_ic, n_ic) for _ in range(n_boot)]
    out: dict[str, Any] = {}
    for band in BANDS:
        per: dict[tuple[str, str], list] = {}
        for d in draws:
            t95 = _t95s(scores, band, t, d)
            for lname, rungs in ladders.items():
                ladder = [Rung(n, *t95[r], float(n) ** 3) for r, n in rungs]
                for name in names:
                    per.setdefault((lname, name), []).append(place_on_ladder(ladder, *t95[name]))
        out[band] = {}
        for (lname, name), ps in per.items():
            h = np.log2(np.array([p["n"] for p in ps[1:]]) / COARSE_N)
            out[band].setdefault(lname, {})[name] = {
                "how": ps[0]["how"], "n": ps[0]["n"], "halvings": math.log2(ps[0]["n"] / COARSE_N),
                "h_5_95": [float(np.percentile(h, 5)), float(np.percentile(h, 95))]}
    return out


def equal_accuracy(scores: dict[str, Any], contenders: dict[str, Any], costs: dict[str, dict[str, float]],
                   t: np.ndarray, ladders: dict[str, list[str]], corrected: list[str], n_boot: int,
                   seed: int) -> dict[str, Any]:
    """Per band, corrected solver, ladder and cost model: the equivalent grid (and halvings over
    32^2) and the speed-up at equal t95 (:func:`attsolver.evaluate.ladder.place_on_ladder`), with
    bootstrap 5-95 % over the initial conditions (the same resamples for every entry)."""
    rng = np.random.default_rng(seed)
    n_ic = next(iter(scores.values()))["corr"]["full"].shape[0]
    draws = [None] + [rng.integers(0, n_ic, n_ic) for _ in range(n_boot)]
    out: dict[str, Any] = {}
    for band in BANDS:
        samples: dict[tuple, list] = {}
        for d in draws:
            t95 = _t95s(scores, band, t, d)
            for lname, rungs in ladders.items():
                for cm, cost in costs.items():
                    ladder = [Rung(contenders[r]["n"], *t95[r], cost[r]) for r in rungs]
                    for k in corrected:
                        p = place_on_ladder(ladder, *t95[k])
                        samples.setdefault((k, lname, cm), []).append((p, cost[k]))
        out[band] = {}
        for (k, lname, cm), ps in samples.items():
            p0, c0 = ps[0]
            sp = np.array([p["cost"] / c for p, c in ps[1:]])
            ns = np.array([p["n"] for p, _ in ps[1:]])
            entry = {"how": p0["how"], "n": p0["n"], "n_hi": p0["n_hi"], "halvings": math.log2(p0["n"] / COARSE_N),
                     "n_5_95": [float(np.percentile(ns, 5)), float(np.percentile(ns, 95))],
                     "speedup": p0["cost"] / c0, "p05": float(np.percentile(sp, 5)), "p95": float(np.percentile(sp, 95)),
                     "speedup_hi": None if p0["cost_hi"] is None else p0["cost_hi"] / c0,
                     "how_resamples": {h: sum(p["how"] == h for p, _ in ps[1:]) for h in
                                       ("interpolated", "between", "above", "below")}}
            out[band].setdefault(cm, {}).setdefault(k, {})[lname] = entry
    return out

# --------------------------------------------------------------------------- exponax


def exponax_comparison(sizes: list[int], steps: int, rounds: int, log) -> dict[str, Any]:
    """Our ETDRK4 2-D vorticity step against exponax's, same physics and arithmetic (float32,
    ETDRK4 with contour coefficients, 2/3 dealiasing), checked equal first.  Both on one
    thread: XLA's CPU thread pool is limited before jax is imported (torch runs on one)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
    try:
        import exponax as ex
        import jax
        import jax.numpy as jnp
    except Exception as e:  # noqa: BLE001 - any import failure means "not installed / broken"
        return {"skipped": f"exponax/jax not importable ({type(e).__name__}: {e}); pip install -e .[bench]"}
    jax.config.update("jax_platform_name", "cpu")
    out: dict[str, Any] = {"versions": {"exponax": getattr(ex, "__version__", "?"), "jax": jax.__version__},
                           "sizes": {}}
    for n in sizes:
        s = NavierStokes2D(n=n, **PHYSICS)
        dt = dt_for(n)
        w0 = spectral_restrict(NavierStokes2D(n=n, **PHYSICS).sample_initial(
            1, generator=torch.Generator().manual_seed(5), dtype=DTYPE), n)
        w0 = _advance(s, w0, 20 * dt, dt)  # a smooth, dealiased start
        # exponax's KolmogorovFlowVorticity is the mirror image of ours (its forcing varies along
        # the last axis, ours along the one before): its field is -transpose(ours) with the
        # forcing's sign flipped.  Its 2/3 mask keeps |k| <= fraction * (n/2) - 1; the fraction
        # below keeps exactly our modes 3|k| < n.  Order-4 ETDRK with 16 contour points.
        fraction = ((n - 1) // 3 + 1.5) / (n / 2)
        stepper = ex.stepper.KolmogorovFlowVorticity(
            2, 2 * math.pi, n, dt, diffusivity=PHYSICS["nu"], drag=-PHYSICS["drag"],
            injection_mode=PHYSICS["forcing_wavenumber"], injection_scale=-PHYSICS["forcing_amplitude"],
            order=4, dealiasing_fraction=fraction, num_circle_points=16, circle_radius=1.0)
        u_ex = jnp.asarray((-w0.transpose(-2, -1)).numpy())  # [1, n, n]: one channel
        step_ex = jax.jit(lambda u: jax.lax.fori_loop(0, steps, lambda i, v: stepper(v), u))
        ours_step = get_method("etdrk4").build(s, w0)
        ts = [torch.tensor(0.0)] * 4

        def ours():
            with torch.no_grad():
                x = ours_step.to_state(w0)
                for _ in range(steps):
                    x = ours_step.step(ts, x, dt)
                return ours_step.from_state(x)

        def theirs():
            return step_ex(u_ex).block_until_ready()

        a, b = ours(), -torch.tensor(np.asarray(theirs())).transpose(-2, -1)
        rel = float((a - b).norm() / a.norm())
        med, wall, warm = interleaved_median({"ours": ours, "exponax": theirs}, rounds)
        out["sizes"][str(n)] = {"relative_difference": rel, "steps": steps,
                                "ours_ms_per_step": 1e3 * med["ours"] / steps,
                                "exponax_ms_per_step": 1e3 * med["exponax"] / steps,
                                "ratio_ours_over_exponax": med["ours"] / med["exponax"],
                                "wall_ratio_ours_over_exponax": wall["ours"] / wall["exponax"],
                                "exponax_cpu_over_wall": med["exponax"] / wall["exponax"],
                                "exponax_compile_s": warm["exponax"]}
        log(f"  exponax {n}^2: diff {rel:.2e}, ours {1e3 * med['ours'] / steps:.2f} ms/step, "
            f"exponax {1e3 * med['exponax'] / steps:.2f} ms/step")
    return out


# --------------------------------------------------------------------------- plots


def make_plots(report: dict[str, Any], fields: dict[str, np.ndarray]):
    """Snapshots, correlation against time, cost against time-until-0.95, energy spectra."""
    t = np.asarray(report["t"])
    sc = report["scores"]
    names = list(fields)
    vmax = float(np.abs(fields["reference"]).max())
    fig, axes = figure(1, len(names), figsize=(2.6 * len(names), 2.9), layout=None)  # room for the colour bar
    for ax, name in zip(axes, names):
        im = ax.imshow(fields[name], origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="vorticity")
    fig.suptitle(f"Kolmogorov flow, Re = {1 / PHYSICS['nu']:.0f}: vorticity at t = {report['snapshot_time']:g} "
                 f"({report['setup']['coarse_n']}^2 restriction of each)", fontsize=9)
    yield "kolmogorov_snapshots.png", fig
    fig, axes = figure(1, 2, figsize=(11, 4))
    for ax, band in zip(axes, BANDS):
        for name, s in sc.items():
            style = "--" if "+" in name else "-"
            ax.plot(t, s["mean_corr"][band], style, label=name, lw=1)
        ax.axhline(THRESHOLD, color="k", lw=0.5)
        ax.set_xlabel("time")
        ax.set_ylabel("mean vorticity correlation")
        ax.set_ylim(0.5, 1.01)
        ax.set_title(f"band: {band}", fontsize=9)
    axes[0].legend(fontsize=5, ncol=2)
    yield "kolmogorov_correlation.png", fig
    fig, ax = figure(figsize=(6.5, 4))
    bs = [str(b) for b in report["timing"]["batches"]]
    for i, (key, style) in enumerate(((bs[0], "-"), (bs[-1], "--"))):
        cost = report["timing"]["per_time_per_trajectory"][key]
        for j, (lname, rungs) in enumerate(report["ladders"].items()):
            ax.plot([sc[k]["t95"]["full"] for k in rungs], [cost[k] for k in rungs], "o" + style, color=f"C{j}",
                    mfc="none" if i else None, label=f"{lname} ladder (batch {key})")
            if not i:
                for k in rungs:
                    ax.annotate(k.split("-")[-1], (sc[k]["t95"]["full"], cost[k]), fontsize=6)
        for j, k in enumerate(report["corrected"]):
            ax.plot(sc[k]["t95"]["full"], cost[k], "*", ms=9, color=f"C{j + 2}", mfc="none" if i else None,
                    label=k if not i else None)
    ax.set_yscale("log")
    ax.set_xlabel(f"time until mean correlation < 0.95 (full {report['setup']['coarse_n']}^2 band)")
    ax.set_ylabel("CPU s per unit time per trajectory (1 thread)")
    ax.set_title(f"filled / solid: batch {bs[0]}; hollow / dashed: batches of {bs[-1]}", fontsize=8)
    ax.legend(fontsize=5)
    yield "kolmogorov_cost_accuracy.png", fig
    fig, ax = figure(figsize=(6.5, 4))
    for name, e in report["spectra"].items():
        e = np.asarray(e, dtype=float)  # None (a non-finite value) -> NaN, not drawn
        k = np.arange(len(e))
        ax.loglog(k[1:], np.maximum(e[1:], 1e-12), label=name, lw=2 if name == "reference" else 0.8)
    ax.set_xlabel("wavenumber |k|")
    ax.set_ylabel("E(k)")
    ax.set_ylim(1e-8, None)
    ax.legend(fontsize=5, ncol=2)
    ax.set_title(f"energy spectra at t = {t[-1]:g} (mean over test ICs)", fontsize=9)
    yield "kolmogorov_spectra.png", fig
    li = f"fd-{report['setup']['coarse_n']}+learned-interp"
    v = report["training"].get(li, {}).get("validation")
    if v:
        fig, ax = figure(figsize=(5.5, 3.5))
        ax.plot([e for e, _ in v["curve"]], [np.nan if x is None else x for _, x in v["curve"]], "o-", lw=1)
        ax.axvline(v["best_epoch"], color="k", lw=0.5, ls="--")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation t95 ({v['n']} ICs, seed {v['seed']})")
        ax.set_title(f"{li}: early stopping (best epoch {v['best_epoch']})", fontsize=9)
        yield "kolmogorov_li_validation.png", fig


# --------------------------------------------------------------------------- report


def _f(x, d=3):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{d}g}"
    return str(x)


MARK = {"interpolated": "", "between": "≥", "above": "≥", "below": "≤"}


def _eq_cell(e: dict[str, Any]) -> str:
    """Equivalent grid and speed-up of one entry of :func:`equal_accuracy`."""
    m = MARK[e["how"]]
    hi = f" (< {e['n_hi']:.0f}², ≤ {_f(e['speedup_hi'])}×)" if e["how"] == "between" else ""
    return (f"{m}{e['n']:.0f}² [{e['n_5_95'][0]:.0f}, {e['n_5_95'][1]:.0f}], {m}{e['halvings']:.2f} h; "
            f"{m}{_f(e['speedup'])}× [{_f(e['p05'])}, {_f(e['p95'])}]{hi}")


def _equal_accuracy_lines(r: dict[str, Any]) -> list[str]:
    L = []
    for band in BANDS:
        grid = f"all of the {r['setup']['coarse_n']}² grid"
        L += ["", f"### Band: {band} ({grid if BANDS[band] is None else f'|k| ≤ {BANDS[band]:g}'})",
              "", "| corrected solver | t95 | batch | vs FD ladder: grid, halvings; speed-up | "
              "vs spectral ladder: grid, halvings; speed-up |", "|---|---|---|---|---|"]
        for k in r["corrected"]:
            s = r["scores"][k]
            for cm in r["timing"]["batches"]:
                e = r["equal_accuracy"][band][str(cm)][k]
                L.append(f"| {k} | {'≥' if s['censored'][band] else ''}{_f(s['t95'][band])} | {cm} | "
                         f"{_eq_cell(e['fd'])} | {_eq_cell(e['spectral'])} |")
    return L


def _contender_lines(r: dict[str, Any]) -> list[str]:
    tm = r["timing"]
    L = ["", "## All contenders", "",
         "Costs: CPU ms per step per call (quartiles over rounds), the per-call set-up apart; CPU ms per unit "
         "simulated time per trajectory for batches of " + ", ".join(str(b) for b in tm["batches"]) + ".", "",
         "| contender | t95 full | t95 \\|k\\|≤10 | nRMSE " + " | nRMSE ".join(f"t={h}" for h in r["horizons"])
         + " | step ms (batch 1) | set-up ms (batch 1) | " + " | ".join(f"ms / unit time / traj (batch {b})"
                                                                     for b in tm["batches"]) + " | blow-ups |",
         "|---|---|---|" + "---|" * len(r["horizons"]) + "---|---|" + "---|" * len(tm["batches"]) + "---|"]
    for k, s in r["scores"].items():
        bl = r["blowups"].get(k)
        q = tm["per_step_q1_q3"]["1"][k]
        L.append(f"| {k} | {'≥' if s['censored']['full'] else ''}{_f(s['t95']['full'])} | "
                 f"{'≥' if s['censored']['k10'] else ''}{_f(s['t95']['k10'])} | "
                 + " | ".join(_f(s["nrmse"][f'{h:g}']) for h in r["horizons"])
                 + f" | {1e3 * tm['per_step']['1'][k]:.3g} [{1e3 * q[0]:.3g}, {1e3 * q[1]:.3g}] | "
                 + f"{1e3 * tm['setup']['1'][k]:.3g} | "
                 + " | ".join(f"{1e3 * tm['per_time_per_trajectory'][str(b)][k]:.3g}" for b in tm["batches"])
                 + " | " + (_blowup_cell(bl) if bl else "—") + " |")
    return L


def _blowup_cell(b: dict[str, Any]) -> str:
    """``k/n``, and with a learned interpolation's guard what it does to them."""
    g = b.get("guarded")
    if g is None:
        return f"{b['blown_up']}/{b['n']}"
    fell = (f"{g['flagged']} fell back, first at t = {min(g['first_flag_times']):.3g}" if g["flagged"]
            else "none fell back")
    return f"{b['blown_up']}/{b['n']}; guarded {g['blown_up']}/{b['n']} ({fell})"


def _guard_note(k: str, b: dict[str, Any]) -> str:
    g = b["guarded"]
    text = (f"{k} with its guard (`solve(..., guard=\"fallback\")`: a trajectory whose max |w| or whose weights' "
            f"departure from the base scheme leaves the training domain, {g['domain']}, takes the base scheme's "
            f"weights from then on): {g['blown_up']}/{b['n']} blow-ups by t = {b['t_long']:g} against "
            f"{b['blown_up']}/{b['n']} without it; ")
    if not g["flagged"]:
        return text + "no trajectory left the domain, so the guarded rollouts are the scored ones."
    return text + (f"{g['flagged']} trajectories fell back (first at t = "
                   + ", ".join(f"{x:.3g}" for x in g["first_flag_times"]) + f"; {'; '.join(g['reasons'])}), "
                   f"{g['flagged_before_t_eval']} of them before the scored horizon t = {g['t_eval']:g}.")


def to_markdown(r: dict[str, Any]) -> str:
    L = ["# Kolmogorov flow: corrected coarse solvers vs classical ladders (Kochkov's protocol)", ""]
    L += provenance_lines(r, unfinished="stage")
    p = r["setup"]
    L += ["", f"Re = {1 / p['physics']['nu']:.0f} (nu = {p['physics']['nu']:g}), drag {p['physics']['drag']}, "
          f"forcing wavenumber {p['physics']['forcing_wavenumber']}; reference {p['ref_n']}² pseudo-spectral "
          f"ETDRK4; {p['n_test']} held-out initial conditions after a spin-up of {p['t_spin']:g} time units; "
          f"horizon {p['t_eval']:g}; {_steps_text(r)}; float32, 1 thread. Correlations on "
          f"the common {p['coarse_n']}² grid, on the full band and on |k| ≤ 10.", "",
          "Costs are CPU seconds of the process (one thread), medians of interleaved rounds (the machine is "
          "shared: wall times measure the neighbours too). The per-step cost excludes the per-call set-up, which "
          "is reported apart. Equal accuracy: the equivalent grid and its cost are interpolated between "
          "neighbouring measured rungs; a censored rung is never an upper bracket (≥: a lower bound at the finest "
          "measured rung; a range up to the cheapest censored rung is given in parentheses); bootstrap 5–95 % over "
          "the initial conditions."]
    L += ["", "## Equivalent grid and speed-up at equal time-until-0.95"] + _equal_accuracy_lines(r)
    L += _contender_lines(r)
    L += ["", "## Cost per halving of the grid spacing", "",
          "Ratio of consecutive rungs' per-step CPU cost per unit time per trajectory, per halving "
          "((c₁/c₀)^(1/log₂(n₁/n₀))):", "", "| ladder | batch | rungs and ratios |", "|---|---|---|"]
    for lname, rungs in r["ladders"].items():
        for b, ratios in r["halving_cost_ratios"][lname].items():
            L.append(f"| {lname} | {b} | " + ", ".join(f"{a.split('-')[-1]}→{c.split('-')[-1]}: {x:.2g}"
                                                     for a, c, x in zip(rungs, rungs[1:], ratios)) + " |")
    L += ["", f"## Corrected solver cost (multiple X of its base {p['coarse_n']}² solver, CPU per unit time)", "",
          "| corrected solver | parameters | training s | " + " | ".join(f"X (batch {b})" for b in r["timing"]["batches"])
          + " |", "|---|---|---|" + "---|" * len(r["timing"]["batches"])]
    for k in r["corrected"]:
        L.append(f"| {k} | {r['training'][k]['parameters']} | {_f(r['training'][k]['seconds'])} | "
                 + " | ".join(_f(r["cost_multiples"][str(b)][k]) for b in r["timing"]["batches"]) + " |")
    L += (_validation_lines(r) + _accounting_lines(r) + _step_check_lines(r) + _reference_lines(r)
          + _exponax_lines(r.get("exponax", {})))
    if p.get("cuts"):
        L += ["", "## What was cut for CPU time", ""] + [f"- {x}" for x in p["cuts"]]
    L += ["", "## Notes", ""] + [f"- {x}" for x in r["notes"]]
    L += ["", "Plots: " + ", ".join(f"`{f}`" for f in r.get("plots", []))]
    return "\n".join(L) + "\n"


def _validation_lines(r: dict[str, Any]) -> list[str]:
    """The learned interpolation's validation curve (early stopping on validation t95), if any."""
    li = f"fd-{r['setup']['coarse_n']}+learned-interp"
    v = r["training"].get(li, {}).get("validation")
    if not v:
        return []
    diverged = r["training"][li].get("diverged")
    if v["stopped_epoch"]:
        stop = f"stopped after epoch {v['stopped_epoch']} ({v['patience']} evaluations without improvement)"
    elif diverged:
        stop = (f"stopped in epoch {diverged['epoch']}, where a training or validation rollout became non-finite "
                f"(fit: {diverged['message']})")
    else:
        stop = f"ran to the cap of {r['training'][li]['epochs']} epochs"
    L = ["", "## Learned interpolation: early stopping on validation t95", "",
         f"Every {v['every']} epoch(s) the learned solver is rolled out from {v['n']} validation initial conditions "
         f"(seed {v['seed']}, distinct from the training and test seeds) to t = {v['horizon']:g} and scored by the "
         f"{v['metric']} against their reference (≥: censored at that horizon). Best: {v['best_score']:.3f} at epoch "
         f"{v['best_epoch']}, whose weights are the ones tested above; {stop}. Misses count only after epoch "
         f"{v.get('warmup', 0)}, once the training window has reached its final length (a change of window moves "
         "the score for reasons other than over-fitting).", "",
         "| epoch | training window (frame intervals) | validation t95 |", "|---|---|---|"]
    for (e, val), k in zip(v["curve"], v["window"]):
        cens = val is not None and val >= v["horizon"] - 1e-9
        best = " (best)" if e == v["best_epoch"] else ""
        L.append(f"| {e} | {k} | {'≥' if cens else ''}{'—' if val is None else f'{val:.3f}'}{best} |")
    return L


def _accounting_lines(r: dict[str, Any]) -> list[str]:
    """The speed-up against the FD ladder split as r^h / X: h halvings of the grid spacing bought,
    r the ladder's cost ratio per halving from 32^2 to the equivalent grid, X the corrected step's
    cost in base steps (an identity when both are per unit time; a lower bound where h is)."""
    n0 = r["setup"]["coarse_n"]
    L = ["", "## The r^h / X accounting (full band, FD ladder)", "",
         f"Speed-up = r^h / X: h halvings of the grid spacing (equivalent FD grid over {n0}²), r the FD ladder's "
         f"cost ratio per halving between {n0}² and that grid, X the corrected step's cost in FD {n0}² steps "
         "(≥ where the equivalent grid is a lower bound).", "",
         "| corrected solver | batch | h | r | r^h | X | r^h / X |", "|---|---|---|---|---|---|---|"]
    for k in r["corrected"]:
        if not k.startswith("fd-"):
            continue
        for b in r["timing"]["batches"]:
            e = r["equal_accuracy"]["full"][str(b)][k]["fd"]
            c32 = r["timing"]["per_time_per_trajectory"][str(b)][f"fd-{n0}"]
            x = r["timing"]["per_time_per_trajectory"][str(b)][k] / c32
            rh = e["speedup"] * x
            rr = rh ** (1 / e["halvings"]) if e["halvings"] > 1e-9 else float("nan")
            m = MARK[e["how"]]
            L.append(f"| {k} | {b} | {m}{e['halvings']:.2f} | {_f(rr if rr == rr else None, 2)} | {m}{rh:.2g} | {x:.2g} | {m}{e['speedup']:.2g} |")
    return L


def _steps_text(r: dict[str, Any]) -> str:
    """The set-up line's steps: one Courant-0.5 step for all (schema 2), or each ladder's scale."""
    p = r["setup"]
    base = f"dt = {p['dt32']} · {p['coarse_n']} / n"
    sc = p.get("step_scale")
    if not sc or all(v == 1 for v in sc.values()):
        return f"all solvers at {base}"
    return (f"each ladder at its --step-scale multiple of {base} (FD {sc['fd']:g}×, spectral {sc['spectral']:g}×), "
            "rounded down to a whole number of steps per frame; the learned interpolation at the FD scale, "
            f"post-step correctors at their training step {base}")


def _step_check_lines(r: dict[str, Any]) -> list[str]:
    sc = r.get("step_check")
    if not sc or not sc["contenders"]:
        return []
    L = ["", "## Step check: each scaled contender again at the Courant-0.5 step", "",
         f"Every contender that runs at a step other than dt = {r['setup']['dt32']} · {r['setup']['coarse_n']} / n "
         "solved again at that step from the same initial conditions: the larger step changes no t95 by more than "
         f"{sc['max_t95_change']:.3f} (largest: {' on '.join(sc['worst'])}).", "",
         "| contender | step (Courant-0.5 step) | t95 full | t95 full at the Courant-0.5 step | t95 |k| ≤ 10 | "
         "t95 |k| ≤ 10 at the Courant-0.5 step |", "|---|---|---|---|---|---|"]

    def cell(v, b, key):
        return ("≥" if v["censored" + key][b] else "") + f"{v['t95' + key][b]:.3f}"
    for k, v in sc["contenders"].items():
        L.append(f"| {k} | {v['step']:.5g} ({v['step_dt_for']:.5g}) | {cell(v, 'full', '')} | "
                 f"{cell(v, 'full', '_dt_for')} | {cell(v, 'k10', '')} | {cell(v, 'k10', '_dt_for')} |")
    return L


def _reference_lines(r: dict[str, Any]) -> list[str]:
    rc = r["reference_check"]
    return ["", "## Reference convergence", "",
            f"The {r['setup']['ref_n']}² reference against a finer spectral solve ({rc['finer']}²) from the same "
            f"initial fields, for the first {rc['n_ic']} test initial conditions over the whole horizon: mean "
            f"correlation at t = {r['setup']['t_eval']:g} {_f(rc['corr_at_end']['full'], 4)} (full band), "
            f"{_f(rc['corr_at_end']['k10'], 4)} (|k| ≤ 10); its minimum over the horizon "
            f"{_f(rc['corr_min']['full'], 4)}. Every contender's t95 on those initial conditions measured against "
            f"the {rc['finer']}² solve instead of the reference differs by at most {_f(rc['max_t95_difference'])} "
            f"time units (largest for {rc['worst']})."]


def _exponax_lines(ex: dict[str, Any]) -> list[str]:
    L = ["", "## Our 2-D spectral step vs exponax", ""]
    if "skipped" in ex:
        return L + [f"Skipped: {ex['skipped']}."]
    L += [f"exponax {ex['versions']['exponax']}, jax {ex['versions']['jax']} (CPU, jit); both ETDRK4 "
          "(16-point contour coefficients), 2/3 dealiasing, float32, same initial field.", "",
          "| grid | relative difference after the steps | ours CPU ms/step | exponax CPU ms/step | ours / exponax "
          "(CPU) | ours / exponax (wall) | exponax CPU / wall |", "|---|---|---|---|---|---|---|"]
    for n, e in ex["sizes"].items():
        L.append(f"| {n}^2 | {e['relative_difference']:.2e} | {e['ours_ms_per_step']:.2f} | "
                 f"{e['exponax_ms_per_step']:.2f} | {e['ratio_ours_over_exponax']:.2f} | "
                 f"{e['wall_ratio_ours_over_exponax']:.2f} | {e['exponax_cpu_over_wall']:.2f} |")
    return L

def honest_notes(r: dict[str, Any]) -> list[str]:
    p = r["setup"]
    scale = (f"Scale: Re = {1 / p['physics']['nu']:.0f}, not Kochkov's 1000 (see `--regime re1000` for that flow, "
             "with its cuts); " if p.get("regime", "re500") == "re500" else
             f"Scale: Kochkov's Re = 1000 on a {p['coarse_n']}² base grid, cut to fit a 2-core CPU (the section above "
             "lists every cut); ")
    notes = [
        scale + f"a {p['ref_n']}² spectral reference, checked against "
        f"{r['reference_check']['finer']}² on {r['reference_check']['n_ic']} of the {p['n_test']} test initial "
        "conditions (the CPU budget's cut). Costs are CPU, one thread, float32.",
        "A t95 marked ≥ reached the horizon without falling below 0.95 (censored). Against a ladder, ≥ marks an "
        "equivalent grid and speed-up that are lower bounds: the solver beats the finest measured rung, and a "
        "censored rung (its t95 unknown) is never used to bracket it.",
        f"Batches larger than {p['n_test']} repeat the {p['n_test']} test initial conditions (cost only; accuracy "
        "is per initial condition).",
    ]
    blown = [k for k, b in r["blowups"].items() if b["blown_up"]]
    for k, b in r["blowups"].items():
        if b.get("guarded"):
            notes.append(_guard_note(k, b))
    notes.append(("Blow-ups over the long rollout (non-finite or |w| > 5× the reference maximum) by t = "
                  f"{p['t_long']:g}: " + ", ".join(f"{k} {r['blowups'][k]['blown_up']}/{r['blowups'][k]['n']}"
                                                  for k in blown)) if blown else
                 f"No {p['coarse_n']}² contender blew up by t = {p['t_long']:g} (non-finite or |w| > 5× the reference maximum).")
    bb = "16" if "16" in r["cost_multiples"] else str(r["timing"]["batches"][-1])
    for k in r["corrected"]:
        e = r["equal_accuracy"]["full"][bb][k]["fd"]
        if e["speedup"] < 1:
            notes.append(f"{k} does not pay against the FD ladder with batches of {bb}: {MARK[e['how']]}{e['speedup']:.2g}× "
                         f"(it is worth {MARK[e['how']]}{e['n']:.0f}², {e['halvings']:.2f} halvings, at "
                         f"{r['cost_multiples'][bb][k]:.2g}× the base step's cost).")
    return notes


# --------------------------------------------------------------------------- main


def parse_args(argv):
    ap = parser("kolmogorov", __doc__.split("\n\n")[0], out="out/bench-kolmogorov",
                quick="small settings (minutes): fewer training its, shorter runs, coarse ladders")
    ap.add_argument("--cache", default="out/kolmogorov_cache", help="data and model cache")
    ap.add_argument("--n-test", type=int, default=16)
    ap.add_argument("--test-seed", type=int, default=TEST_SEED,
                    help=f"seed of the test initial conditions (default {TEST_SEED}; another draws a fresh test set)")
    ap.add_argument("--train-seed", type=int, default=TRAIN_SEED,
                    help=f"seed of the training initial conditions (default {TRAIN_SEED}; the learned interpolation's "
                         "is this + 1)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--no-exponax", action="store_true", help="skip the exponax speed comparison")
    ap.add_argument("--iterations", type=int, default=None, help="training budget in batches, mapped to fit epochs (default 150; quick 40)")
    ap.add_argument("--unroll", type=int, default=None, help="steps unrolled in training (default 8; quick 4)")
    ap.add_argument("--li-epochs", type=int, default=None,
                    help="learned-interpolation fit epochs: the cap with early stopping, the count without "
                         "(default 32; quick 4; re1000 4)")
    ap.add_argument("--li-train", type=int, default=None,
                    help="learned-interpolation training trajectories (default 32; quick 4; re1000 8)")
    ap.add_argument("--li-hidden", type=int, default=None, help="learned-interpolation CNN channels (default 4; re1000 16)")
    ap.add_argument("--li-layers", type=int, default=None,
                    help="learned-interpolation CNN convolutions (default 1: a linear 3x3 map; re1000 3)")
    ap.add_argument("--li-weights-per", default=None, choices=("stage", "step"),
                    help="learned-interpolation weights chosen once per step (default) or in every RK stage "
                         "(re1000's default). The earlier Re = 500 build: --li-weights-per stage --li-hidden 16 "
                         "--li-layers 3 --li-train 16 --li-epochs 12 --li-patience 0")
    ap.add_argument("--li-patience", type=int, default=None,
                    help="early stopping: validation-t95 evaluations without improvement before the learned "
                         "interpolation's training stops, the best weights kept (default 4; 0: no early stopping, "
                         "exactly --li-epochs epochs as the earlier builds; re1000 0)")
    ap.add_argument("--li-ramp", type=int, default=12,
                    help="with early stopping: epochs over which the training window rises 1, 2, 4, ... to "
                         "--li-unroll (default 12, the earlier builds' 12-epoch schedule); the final window runs "
                         "from then to the stop; patience counts from its first epoch")
    ap.add_argument("--li-val-every", type=int, default=1, help="epochs between validation-t95 evaluations (default 1)")
    ap.add_argument("--li-val-n", type=int, default=None, help="validation initial conditions (default 8; quick 4)")
    ap.add_argument("--li-val-t", type=float, default=None,
                    help="validation horizon in time units (default 4: the t95 of the learned builds is 1.2-2)")
    ap.add_argument("--val-seed", type=int, default=VAL_SEED,
                    help=f"seed of the validation initial conditions (default {VAL_SEED}; must differ from the test "
                         "and training seeds)")
    ap.add_argument("--li-unroll", type=int, default=8, choices=(2, 4, 8, 16, 32),
                    help="learned-interpolation longest training window in frame intervals (default 8)")
    ap.add_argument("--li-checkpoint-steps", type=int, default=None,
                    help="back-propagate through each training window in recomputed segments of this many solver "
                         "steps (fit's checkpoint_steps: the same gradients in memory that does not grow with the "
                         "window; for --li-unroll 16 at Re = 1000); default: keep every step's graph")
    ap.add_argument("--li-stencil", default="4x1", metavar="WxT",
                    help="learned-interpolation stencil: W cells across a face (even), T along it (odd); default 4x1")
    ap.add_argument("--li-base", default="centred2", choices=("centred2", "centred4"),
                    help="the consistent scheme an untrained learned interpolation equals (default centred2)")
    ap.add_argument("--li-loss", default="mse", choices=("mse", "correlation"),
                    help="the learned interpolation's training loss (fit's loss): the squared error of the "
                         "rolled-out vorticity (default), or 'correlation': 1 - its correlation with the "
                         "reference per frame, the measure t95 reads")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved timing rounds (default 5; quick 3; re1000 3): more rounds narrow the "
                         "per-step cost's spread on a loaded machine")
    ap.add_argument("--check-n", type=int, default=256, help="grid of the finer spectral solve checking the reference")
    ap.add_argument("--check-ic", type=int, default=4, help="test initial conditions the reference check covers")
    ap.add_argument("--regime", default="re500", choices=sorted(REGIMES),
                    help="re500: the small, fast protocol (32^2 base); re1000: Kochkov's Re = 1000, 64^2 base, "
                         "FD ladder to 256^2, with the CPU cuts its page states")
    ap.add_argument("--step-scale", type=_step_scales, default={}, metavar="fd=M,spectral=M",
                    help="each ladder's step as a multiple of the Courant-0.5 step dt_for(n), rounded down to a whole "
                         "number of steps per frame (default re500 fd=1.1,spectral=2, re1000 fd=1.2,spectral=2: the "
                         "largest at which no rung's t95 moves and the FD CFL check passes; fd=1,spectral=1: the "
                         "earlier protocol); the learned interpolation takes the fd scale")
    ap.add_argument("--tiny", action="store_true", help=SUPPRESS)  # the test's seconds-long run
    args = ap.parse_args(argv)
    args.step_scale = {**STEP_SCALE[args.regime], **args.step_scale}
    _li_settings(ap, args)
    if args.regime == "re1000":
        return re1000_settings(ap, args, argv)
    if args.n_test < 16:
        ap.error("--n-test must be >= 16 (Kochkov's protocol averages over 16 initial conditions)")
    q = args.quick
    args.li_frame = 0.1
    args.t_spin = 8.0 if q else PROTOCOL["re500"]["t_spin"]
    args.t_eval = 3.0 if q else 8.0
    args.t_long = 6.0 if q else 20.0
    args.frame = PROTOCOL["re500"]["frame"]
    args.n_train = 4 if q else 8
    args.t_train = 1.0 if q else 2.0
    args.iterations = args.iterations or (40 if q else 150)
    args.unroll = args.unroll or (4 if q else 8)
    args.batch = 4 if q else 6
    args.li_epochs = args.li_epochs or (4 if q else 32)
    args.li_train = args.li_train or (4 if q else 32)
    args.li_val_n = args.li_val_n or (4 if q else 8)
    args.li_val_t = args.li_val_t or (2.0 if q else 4.0)
    args.li_t_train = 1.0 if q else 3.0
    args.fd_ladder = [32, 48, 64, 96] if q else list(PROTOCOL["re500"]["fd_ladder"])
    args.spectral_ladder = [32, 48, 64] if q else list(PROTOCOL["re500"]["spectral_ladder"])
    args.batches = [1, 16, 64]
    args.rounds = args.rounds or (3 if q else 5)
    args.n_boot = 300 if q else 1000
    if args.tiny:
        args.t_spin, args.t_eval, args.t_long, args.t_train, args.li_t_train = 1.0, 0.5, 1.0, 0.3, 0.3
        args.iterations, args.unroll, args.batch, args.rounds, args.n_boot = 3, 2, 2, 1, 50
        args.fd_ladder, args.spectral_ladder, args.n_train, args.li_train, args.li_epochs = [32, 48, 64], [32, 64], 2, 3, 2
        args.li_val_n, args.li_val_t, args.li_patience = 2, 0.3, min(args.li_patience, 1)
        args.batches, args.check_n, args.check_ic = [1, 16], 128, 2
    args.li_ramp = min(args.li_ramp, args.li_epochs)
    return args


def _step_scales(text: str) -> dict[str, float]:
    """``--step-scale``: ``"fd=1.2,spectral=2"`` (a base left out keeps its regime's default)."""
    out: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        base, _, value = part.partition("=")
        base = base.strip()
        if base not in BASES:
            raise ArgumentTypeError(f"{part!r}: the base must be one of {sorted(BASES)} (e.g. fd=1.25,spectral=2)")
        try:
            out[base] = float(value)
        except ValueError:
            raise ArgumentTypeError(f"{part!r}: the scale must be a number (e.g. {base}=1.25)") from None
        if not (math.isfinite(out[base]) and out[base] > 0):
            raise ArgumentTypeError(f"{part!r}: the scale must be finite and > 0 (1: the Courant-0.5 step)")
    return out


def _li_settings(ap, args) -> None:
    """The learned interpolation's build defaults of the regime (:data:`LI_DEFAULTS`) where not
    given, and the early-stopping settings checked (the validation seed must be a fresh one)."""
    hidden, layers, per, train, epochs, patience = LI_DEFAULTS[args.regime]
    args.li_hidden = args.li_hidden or hidden
    args.li_layers = args.li_layers or layers
    args.li_weights_per = args.li_weights_per or per
    args.li_train = args.li_train or (None if args.regime == "re500" else train)  # re500: also --quick's
    args.li_epochs = args.li_epochs or (None if args.regime == "re500" else epochs)
    args.li_patience = patience if args.li_patience is None else args.li_patience
    if args.li_checkpoint_steps is not None and args.li_checkpoint_steps < 1:
        ap.error(f"--li-checkpoint-steps must be >= 1 (or left out: no checkpointing), got {args.li_checkpoint_steps}")
    if args.li_patience < 0 or args.li_val_every < 1 or args.li_ramp < 1:
        ap.error(f"--li-patience must be >= 0 (0: no early stopping), --li-val-every and --li-ramp >= 1, got "
                 f"{args.li_patience}, {args.li_val_every} and {args.li_ramp}")
    taken = {"--test-seed": args.test_seed, "--train-seed": args.train_seed, "--train-seed + 1": args.train_seed + 1}
    clash = [k for k, v in taken.items() if v == args.val_seed]
    if clash:
        ap.error(f"--val-seed {args.val_seed} equals {', '.join(clash)}: the validation initial conditions must be "
                 "their own; pick another seed")


def re1000_settings(ap, args, argv):
    """The Re = 1000 protocol's settings, sized for a 2-core CPU (every cut is listed in
    ``args.cuts`` and on the results page); ``--tiny`` is the test's seconds-long version."""
    given = set(argv or [])
    if "--n-test" not in given:
        args.n_test = 8
    if "--kinds" not in given:
        args.kinds = ["li"]
    if args.n_test < 2:
        ap.error("--n-test must be >= 2 for --regime re1000 (the bootstrap resamples initial conditions)")
    args.t_spin, args.t_eval, args.t_long = PROTOCOL["re1000"]["t_spin"], 8.0, 20.0
    # frames of 0.2: an integer number of steps at every rung (n a multiple of 16)
    args.frame, args.li_frame = PROTOCOL["re1000"]["frame"], 0.1
    args.n_train, args.t_train, args.batch = 8, 2.0, 6
    args.iterations, args.unroll = args.iterations or 150, args.unroll or 8
    args.li_epochs, args.li_train, args.li_t_train = args.li_epochs or 4, args.li_train or 8, 2.0
    args.li_val_n, args.li_val_t = args.li_val_n or 8, args.li_val_t or 4.0
    args.li_ramp = min(args.li_ramp, args.li_epochs)
    args.fd_ladder = list(PROTOCOL["re1000"]["fd_ladder"])
    args.spectral_ladder = list(PROTOCOL["re1000"]["spectral_ladder"])
    args.batches, args.rounds, args.n_boot = [1, 16, 64], args.rounds or 3, 1000
    args.check_n = 512 if "--check-n" not in given else args.check_n
    args.check_ic = 2 if "--check-ic" not in given else args.check_ic
    args.no_exponax = True
    if args.tiny:
        args.n_test, args.t_spin, args.t_eval, args.t_long, args.li_t_train = 2, 0.4, 0.6, 0.4, 0.3
        args.li_epochs, args.li_train, args.rounds, args.n_boot = 1, 3, 1, 50
        args.li_val_n, args.li_val_t, args.li_patience = 2, 0.3, min(args.li_patience, 1)
        args.fd_ladder, args.spectral_ladder, args.batches, args.check_n = [64, 80], [64, 80], [1, 2], 256
    args.cuts = [
        f"test initial conditions: {args.n_test}, not Kochkov's 16 (the bootstrap intervals are over these "
        f"{args.n_test}; batches larger than {args.n_test} repeat them, for cost only)",
        f"reference: {REGIMES['re1000']['ref_n']}² pseudo-spectral, not ≥ 512²; checked against a {args.check_n}² "
        f"solve on {args.check_ic} of the test initial conditions over the whole horizon ({args.t_eval:g})",
        f"spin-up: {args.t_spin:g} time units at {REGIMES['re1000']['spin_n']}², then {min(1.5, args.t_spin / 5):g} at "
        f"{REGIMES['re1000']['ref_n']}²",
        f"ladders: FD {args.fd_ladder[0]}–{args.fd_ladder[-1]}² ({len(args.fd_ladder)} rungs), spectral "
        f"{args.spectral_ladder[0]}–{args.spectral_ladder[-1]}² (its next rung would be the reference itself)",
        f"timing: {args.rounds} interleaved rounds (Re = 500: 5)",
        "contenders: only the learned interpolation is trained at 64² (no CNN / NeurVec / AttSolver correctors, "
        "no noisy-data variant)" if args.kinds == ["li"] else f"correctors trained: {', '.join(args.kinds)}",
        f"learned-interpolation training: {args.li_train} trajectories × {args.li_t_train:g} time units "
        f"(frames every {args.li_frame:g}), " + (
            f"at most {args.li_epochs} epochs, stopped early on the t95 of {args.li_val_n} validation initial "
            f"conditions (seed {args.val_seed}, horizon {args.li_val_t:g}, patience {args.li_patience})"
            if args.li_patience > 0 else f"{args.li_epochs} epochs, fixed") + ", rollout schedule up to "
        f"{args.li_unroll} frames ({args.li_unroll * 10} steps); Re = 500 uses 32 × 3 with early stopping",
        "no exponax speed comparison (the Re = 500 page has it; it does not depend on the regime's accuracy)",
    ]
    return args


def li_stencil(args) -> dict[str, Any]:
    """``--li-stencil WxT`` and ``--li-base`` as :class:`LearnedInterpolation` arguments."""
    try:
        width, transverse = (int(x) for x in args.li_stencil.lower().split("x"))
    except ValueError:
        raise ValueError(f"--li-stencil must be WxT (e.g. 4x1, 4x3, 6x1), got {args.li_stencil!r}") from None
    return {"width": width, "transverse": transverse, "base": args.li_base}


def _li_cache_name(args, tag: str) -> str:
    """The learned interpolation's cache file (without suffix): the earlier builds keep the names
    they had; early stopping adds its settings and the validation seed."""
    arch = (args.li_hidden, args.li_layers, args.li_weights_per)
    suffix = (f"_h{args.li_hidden}" + ("" if arch == (16, 3, "stage") else f"l{args.li_layers}_{args.li_weights_per}")
              + ("" if args.li_unroll == 8 else f"_u{args.li_unroll}")
              + ("" if (args.li_stencil, args.li_base) == ("4x1", "centred2") else f"_s{args.li_stencil}{args.li_base}")
              + ("" if args.li_loss == "mse" else f"_{args.li_loss}"))
    if args.li_patience > 0:
        suffix += (f"_es{args.li_patience}e{args.li_val_every}r{args.li_ramp}v{args.li_val_n}x{args.li_val_t:g}"
                   + ("" if args.val_seed == VAL_SEED else f"_vseed{args.val_seed}"))
    return (f"li_{tag}_{args.li_train}x{args.li_t_train:g}_e{args.li_epochs}{suffix}"
            f"{_seed_tag(args.train_seed, TRAIN_SEED)}")


def correctors(args, cache: Path, tag: str, train_sets: dict[float, TrajectoryDataset], li_set, log,
               li_val: dict[str, Any] | None = None):
    """The corrected contenders: every convolution kind on the FD base, AttSolver on the spectral
    base and with noisy data, the learned interpolation; a trained model (and its training record)
    is cached."""
    rows = [(k, "fd", 0.0) for k in args.kinds if k != "li"]
    if "attsolver" in args.kinds:
        rows += [("attsolver", "spectral", 0.0), ("attsolver", "fd", 0.01)]
    contenders, models, training = {}, {}, {}
    for kind, base, noise in rows:
        name = f"{base}-32+{kind}" + (f"(noise {noise:g})" if noise else "")
        path = cache / (f"model_{tag}_{base}_{kind}_{noise:g}_fit_{args.iterations}_{args.unroll}"
                        f"{_seed_tag(args.train_seed, TRAIN_SEED)}.pt")  # fit-trained
        log(f"corrector {name}")
        if path.exists():
            model = load_corrector(path)
            training[name] = json.loads(path.with_suffix(".json").read_text())
        else:
            model = build_corrector(kind, base, seed=0)
            training[name] = train_corrector(model, base, train_sets[noise], iterations=args.iterations,
                                             unroll=args.unroll, batch=args.batch, seed=0, log=log)
            model.save(path)
            atomic_write_text(path.with_suffix(".json"), json.dumps(training[name]))
        models[name] = model
        contenders[name] = {"base": base, "n": COARSE_N, "model": name}
    if "li" in args.kinds:
        log(f"learned interpolation {LI}")
        arch = (args.li_hidden, args.li_layers, args.li_weights_per)
        stencil = li_stencil(args)
        path = cache / f"{_li_cache_name(args, tag)}.pt"
        if path.exists():
            host = build_learned_interpolation(*arch, **stencil)
            host.interpolation.load_state_dict(torch.load(path, weights_only=True))
            training[LI] = json.loads(path.with_suffix(".json").read_text())
        else:
            host, training[LI] = train_learned_interpolation(li_set, epochs=args.li_epochs, hidden=args.li_hidden,
                                                             layers=args.li_layers, weights_per=args.li_weights_per,
                                                             unroll=args.li_unroll, log=log, validation=li_val,
                                                             ramp=args.li_ramp if li_val is not None else None,
                                                             stencil=stencil, checkpoint_steps=args.li_checkpoint_steps,
                                                             loss=args.li_loss)
            with atomic_path(path) as tmp:  # a killed run leaves no half-written model in the cache
                torch.save(host.interpolation.state_dict(), tmp)
            atomic_write_text(path.with_suffix(".json"), json.dumps(training[LI]))
        if not host.interpolation.has_domain:  # saved before domains existed, or its training blew up
            host.record_interpolation_domain(li_set.y)  # what fit records: its training states
        models[LI] = host
        contenders[LI] = {"base": "fd", "n": COARSE_N, "model": LI}
    return contenders, models, training


def reference_check(args, contenders, preds, scores, ref, t, log) -> dict[str, Any]:
    """The reference against a finer spectral solve from the same initial fields (the first
    ``check_ic`` test initial conditions, the whole horizon), and every contender's t95 on
    those initial conditions against both."""
    m, nf = min(args.check_ic, len(ref)), args.check_n
    t0 = time.perf_counter()
    fine = rollout({"base": "spectral", "n": nf}, {}, prolong(ref[:m, 0], nf), t)
    log(f"  {nf}^2 check of the reference on {m} initial conditions: {time.perf_counter() - t0:.0f}s")
    fine32, ref32 = spectral_restrict(fine, COARSE_N), spectral_restrict(ref[:m], COARSE_N)
    t_np = t.numpy()
    diffs = {name: abs(score(preds[name][:m], fine32, t_np, [])["t95"]["full"]
                       - score(preds[name][:m], ref32, t_np, [])["t95"]["full"]) for name in contenders}
    worst = max(diffs, key=diffs.get)
    self_corr = {b: correlation(in_band(fine32, b), in_band(ref32, b)).numpy().mean(0) for b in BANDS}
    return {"finer": nf, "n_ic": m, "corr_at_end": {b: float(c[-1]) for b, c in self_corr.items()},
            "corr_min": {b: float(c.min()) for b, c in self_corr.items()},
            "t95": {b: time_until(t_np, c, THRESHOLD)[0] for b, c in self_corr.items()},
            "max_t95_difference": diffs[worst], "worst": worst, "t95_differences": diffs}


def blowups_of(args, contenders, models, ref) -> dict[str, Any]:
    """Blow-ups of the 32^2 contenders over a long rollout (non-finite or |w| > 5x the reference's max);
    a learned interpolation's also with its guard falling back to the base scheme (``"guarded"``:
    the blow-ups then, the trajectories it flagged, when, and how many before the scored horizon)."""
    t_long = torch.tensor([0.0, args.t_long], dtype=torch.float64)
    bound = 5.0 * float(ref.abs().max())
    out = {}

    def blown(end):
        return ~torch.isfinite(end).all(dim=(-2, -1)) | (end.abs().amax(dim=(-2, -1)) > bound)

    for name, c in contenders.items():
        if c["n"] == COARSE_N:
            w0 = spectral_restrict(ref[:, 0], COARSE_N)
            bad = blown(rollout(c, models, w0, t_long)[:, -1])
            out[name] = {"blown_up": int(bad.sum()), "n": int(len(bad)), "t_long": args.t_long, "bound": bound}
            if isinstance(models.get(c.get("model", "")), InterpolationHost):
                sol, report = rollout(c, models, w0, t_long, guard="fallback")
                first = report.first_time[report.flagged]
                out[name]["guarded"] = {
                    "blown_up": int(blown(sol[:, -1]).sum()), "flagged": int(report.flagged.sum()),
                    "first_flag_times": [round(float(x), 4) for x in first],
                    "flagged_before_t_eval": int((first <= args.t_eval).sum()), "t_eval": args.t_eval,
                    "reasons": sorted(set(report.reasons.values())), "domain": models[c["model"]].interpolation.domain_text}
    return out


def costs(args, contenders, models, scores, ref, t_np, log) -> dict[str, Any]:
    """Timings (set-up apart; batches), cost multiples X, equal accuracy, halving ratios."""
    timing = time_costs(contenders, models, ref[:, -1], args.batches, args.rounds)
    log("  timed")
    ladders = {"fd": [f"fd-{n}" for n in args.fd_ladder], "spectral": [f"spectral-{n}" for n in args.spectral_ladder]}
    corrected = list(models)
    per_time = {str(b): timing["per_time_per_trajectory"][str(b)] for b in args.batches}
    # X per unit simulated time (per step when the two share the step): speed-up = r^h / X
    mult = {str(b): {k: per_time[str(b)][k] / per_time[str(b)][f"{contenders[k]['base']}-{COARSE_N}"]
                     for k in corrected} for b in args.batches}
    return {"ladders": ladders, "corrected": corrected, "timing": timing, "cost_multiples": mult,
            "equal_accuracy": equal_accuracy(scores, contenders, per_time, t_np, ladders, corrected, args.n_boot, seed=0),
            "halving_cost_ratios": {ln: {b: halving_ratios(c, r) for b, c in per_time.items()}
                                    for ln, r in ladders.items()}}


def step_check(contenders, models, scores, ref, t, log) -> dict[str, Any]:
    """Every contender that runs at a step other than :func:`dt_for` solved again at ``dt_for(n)``:
    its t95 (both bands) at both steps, and the largest change."""
    ref_c, t_np, out = spectral_restrict(ref, COARSE_N), t.numpy(), {}
    for name, c in contenders.items():
        if step_of(c) == dt_for(c["n"]):
            continue
        t0 = time.perf_counter()
        s = score(predict({**c, "step": None}, models, ref, t), ref_c, t_np, [])
        out[name] = {"step": step_of(c), "step_dt_for": dt_for(c["n"]),
                     "t95": {b: scores[name]["t95"][b] for b in BANDS}, "t95_dt_for": dict(s["t95"]),
                     "censored": {b: scores[name]["censored"][b] for b in BANDS}, "censored_dt_for": dict(s["censored"])}
        log(f"  {name} at dt_for: t95 {s['t95']['full']:.2f} (at {step_of(c):.5g}: {scores[name]['t95']['full']:.2f}; "
            f"{time.perf_counter() - t0:.0f}s)")
    diffs = {(k, b): abs(v["t95"][b] - v["t95_dt_for"][b]) for k, v in out.items() for b in BANDS}
    worst = max(diffs, key=diffs.get) if diffs else None
    return {"contenders": out, "max_t95_change": diffs[worst] if worst else 0.0,
            "worst": list(worst) if worst else None}


def evaluate(args, contenders, models, ref, t, log):
    """Roll every contender out from the test initial fields; its 32^2 restriction and scores."""
    ref32, t_np = spectral_restrict(ref, COARSE_N), t.numpy()
    horizons = [h for h in (0.5, 1.0, 2.0, 4.0, 8.0) if h <= args.t_eval]
    preds, scores = {}, {}
    for name, c in contenders.items():
        t0 = time.perf_counter()
        preds[name] = predict(c, models, ref, t)
        scores[name] = score(preds[name], ref32, t_np, horizons)
        log(f"  {name}: t95 {scores[name]['t95']['full']:.2f}{' (censored)' if scores[name]['censored']['full'] else ''}"
            f", |k|<=10 {scores[name]['t95']['k10']:.2f} ({time.perf_counter() - t0:.0f}s)")
    return preds, scores, horizons


def versioned_h5(cache: Path, name: str, make: Callable[[], TrajectoryDataset], log) -> TrajectoryDataset:
    """``cache/<name>_<key>.h5``, the key a fingerprint of the regime, :data:`DATA_VERSION` and the
    package version (also stored in the file's config and checked on load): data built by another
    version or regime is rebuilt, never reused."""
    key = fingerprint({"name": name, "physics": PHYSICS, "ref_n": REF_N, "spin_n": SPIN_N, "dt32": DT32,
                       "data_version": DATA_VERSION, "attsolver": attsolver.__version__})
    path = cache / f"{name}_{key}.h5"
    if path.exists():
        data = load_h5(path)
        if data.config.get("cache_key") == key:
            return data
        log(f"  {path.name}: built by another version (key {data.config.get('cache_key')!r}, not {key!r}): rebuilding")
    data = make()
    data.config["cache_key"] = key
    save_h5(data, path)
    return data


def _seed_tag(seed: int, default: int) -> str:
    """The cache-name suffix of a non-default seed (none for the default: existing caches keep their names)."""
    return "" if seed == default else f"_seed{seed}"


def load_data(args, cache: Path, tag: str, log):
    """The test set, the corrector training sets (clean and noisy, only when a convolution corrector
    is trained), the learned interpolation's training set and, with early stopping, its validation
    set (initial conditions of ``--val-seed``, restricted to the base grid), from the cache or made."""
    log("data: test and training trajectories")
    test = versioned_h5(cache, f"test_{tag}_{args.n_test}_t{args.t_eval:g}_f{args.frame:g}{_seed_tag(args.test_seed, TEST_SEED)}",
                        lambda: make_trajectories(args.n_test, args.test_seed, args.t_eval, args.frame, args.t_spin, log), log)
    train_sets = {}
    if any(k != "li" for k in args.kinds):
        train = versioned_h5(cache, f"train_{tag}_{args.n_train}{_seed_tag(args.train_seed, TRAIN_SEED)}", lambda: make_trajectories(
            args.n_train, args.train_seed, args.t_train, dt_for(COARSE_N), args.t_spin, log), log)
        train_sets = {noise: restricted(train, COARSE_N, noise, seed=1) for noise in (0.0, 0.01)}
        for noise, d in train_sets.items():
            save_h5(d, cache / f"train_{tag}_{COARSE_N}_noise{noise:g}.h5")
    li_set = None
    if "li" in args.kinds:
        li_train = versioned_h5(cache, f"train_li_{tag}_{args.li_train}_t{args.li_t_train:g}"
                                f"{_seed_tag(args.train_seed, TRAIN_SEED)}", lambda: make_trajectories(
            args.li_train, args.train_seed + 1, args.li_t_train, args.li_frame, args.t_spin, log), log)
        li_set = TrajectoryDataset(
            t=li_train.t, y=spectral_restrict(li_train.y, COARSE_N), system=NavierStokes2DFD(n=COARSE_N, **PHYSICS).config(),
            config={**li_train.config, "restricted_to": COARSE_N})
    li_val = None
    if "li" in args.kinds and args.li_patience > 0:
        val = versioned_h5(cache, f"val_li_{tag}_{args.li_val_n}_t{args.li_val_t:g}{_seed_tag(args.val_seed, VAL_SEED)}",
                           lambda: make_trajectories(args.li_val_n, args.val_seed, args.li_val_t, args.li_frame,
                                                     args.t_spin, log), log)
        li_val = {"w": spectral_restrict(val.y, COARSE_N).to(DTYPE), "t": val.t, "every": args.li_val_every,
                  "patience": args.li_patience, "seed": args.val_seed}
    return test, train_sets, li_set, li_val


def main(argv=None) -> int:
    args = parse_args(argv)
    with regime(args.regime):
        return run_protocol(args, argv)


def run_protocol(args, argv) -> int:
    """The whole protocol in the regime already set (:func:`regime`)."""
    run = Run("kolmogorov", argv, quick=args.quick, schema=SCHEMA)
    out, cache = Path(args.out), Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    log = run.log
    if COARSE_N > 32:  # the reference solves' progress lines (attsolver.progress) into the log
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tag = f"re{1 / PHYSICS['nu']:.0f}_{'t' if args.tiny else 'q' if args.quick else 'f'}"
    test, train_sets, li_set, li_val = load_data(args, cache, tag, log)
    t, t_np = test.t, test.t.numpy()
    ref = test.y.to(DTYPE)  # [B, nt, REF_N, REF_N]
    contenders = {f"fd-{n}": {"base": "fd", "n": n} for n in args.fd_ladder}
    contenders.update({f"spectral-{n}": {"base": "spectral", "n": n} for n in args.spectral_ladder})
    corrected, models, training = correctors(args, cache, tag, train_sets, li_set, log, li_val)
    contenders.update(corrected)
    for c in contenders.values():  # the ladders and the learned interpolation at their --step-scale step
        if c.get("model") is None or isinstance(models[c["model"]], InterpolationHost):
            c["step"] = step_for(c["n"], args.step_scale[c["base"]], args.frame)
    log("rollouts on the test set")
    preds, scores, horizons = evaluate(args, contenders, models, ref, t, log)
    log("reference check against a finer solve; blow-ups over a long rollout; timing (interleaved)")
    checks = {"reference_check": reference_check(args, contenders, preds, scores, ref, t, log),
              "blowups": blowups_of(args, contenders, models, ref),
              "step_check": step_check(contenders, models, scores, ref, t, log)}
    spectra = {"reference": energy_spectrum(ref[:, -1].double())[1].mean(0).tolist()}
    spectra.update({name: energy_spectrum(preds[name][:, -1].double())[1].mean(0).tolist() for name in contenders})
    report = run.report(
        setup={"physics": PHYSICS, "ref_n": REF_N, "coarse_n": COARSE_N, "dt32": DT32, "n_test": args.n_test,
               "n_train": args.n_train, "t_spin": args.t_spin, "t_eval": args.t_eval, "t_train": args.t_train,
               "t_long": args.t_long, "iterations": args.iterations, "unroll": args.unroll, "quick": args.quick,
               "li_train": args.li_train, "li_t_train": args.li_t_train, "li_epochs": args.li_epochs,
               "li_hidden": args.li_hidden, "li_layers": args.li_layers, "li_weights_per": args.li_weights_per,
               "li_unroll": args.li_unroll, "li_patience": args.li_patience, "li_val_every": args.li_val_every,
               "li_val_n": args.li_val_n, "li_val_t": args.li_val_t, "val_seed": args.val_seed, "li_ramp": args.li_ramp,
               "li_stencil": args.li_stencil, "li_base": args.li_base, "li_loss": args.li_loss,
               "bands": BANDS, "n_boot": args.n_boot, "regime": args.regime, "frame": args.frame,
               "step_scale": args.step_scale,
               "test_seed": args.test_seed, "train_seed": args.train_seed,
               "cuts": getattr(args, "cuts", [])},
        t=t_np.tolist(), horizons=horizons, contenders=contenders,
        scores={k: {kk: vv for kk, vv in v.items() if kk != "corr"} for k, v in scores.items()},
        **checks, **costs(args, contenders, models, scores, ref, t_np, log), training=training, spectra=spectra,
        exponax={"skipped": "--no-exponax"} if args.no_exponax or args.tiny else exponax_comparison(
            [64, 128, 256] if not args.quick else [64, 128], steps=10 if args.quick else 20, rounds=args.rounds,
            log=log))
    i_snap = int(np.argmin(np.abs(t_np - min(2.0, args.t_eval))))
    report["snapshot_time"] = float(t_np[i_snap])
    snap = [f"fd-{COARSE_N}", f"spectral-{COARSE_N}", f"fd-{COARSE_N}+attsolver", LI, f"fd-{args.fd_ladder[-1]}"]
    fields = {"reference": spectral_restrict(ref[0, i_snap], COARSE_N).numpy()}
    fields.update({k: preds[k][0, i_snap].numpy() for k in snap if k in preds})
    report = finite(run.stamp(report, complete=True))
    report["notes"] = honest_notes(report)
    write_report(out, "kolmogorov", report, to_markdown, lambda r: make_plots(r, fields))
    log(f"wrote {out / 'kolmogorov.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
