"""ODE benchmark: learned correctors (NeurVec, Hypersolver, AttSolver add/mul) against
classical solvers, trained on small noisy data sets and tested on held-out initial states.

For every case (a system with the classical method and coarse step the correctors
correct) the suite

1. builds a fixed test set: ``--n-test`` initial states (their own seed, never trained on)
   and a reference solution (RK4 at the coarse step / 256);
2. runs the classical solvers on it, timed in this process: the corrected method at the
   coarse step divided by ``k`` (``k = 1`` is the classical coarse solver), RK4 at several
   steps and dopri5 over tolerances;
3. for every training-set size × noise level × seed, draws training trajectories (their
   own seeds), adds relative observation noise (docs/guide/data.md), trains every corrector with
   the same recipe and scores its corrected coarse rollout on the test set: relative L2
   error up to ¼, ½ and all of the test horizon, MAPE, valid prediction time (chaotic
   systems), blow-up rate, rollout and training wall time, and the speed-up at equal
   accuracy against the fine classical solver of the same method and against the best
   classical solver (RK4 at any step, dopri5 at any tolerance);
4. writes ``ode.json`` (every row, the classical sweeps, metadata and the command),
   ``ode.md`` (mean ± std tables, headline first, target verdicts) and PNG plots.

Every finished row is appended to ``ode_progress.jsonl`` in the output folder, so an
interrupted run continues where it stopped when rerun with the same ``--out``.

    attsolver bench ode --quick                     # < 10 min on 2 cores, to out/bench-ode-quick
    attsolver bench ode --out benchmarks/results    # the full grid of the issue
    attsolver bench ode --systems lorenz63 --sizes 4 16 --noise 0 0.01 --seeds 2 --out DIR
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.lines import Line2D
from torch.nn.utils import parametrize

import attsolver
from attsolver.cli.common import nonneg_float, nonneg_int, positive_float, positive_int
from attsolver.cli.user_rhs import check_rhs, load_rhs, load_sampler, sample_states
from attsolver.correctors import (AttSolver, Hypersolver, LocalAttSolver, LocalCorrector, LocalHypersolver,
                                  LocalNeurVec, NeurVec)
from attsolver.data import TrajectoryDataset, add_noise, generate_trajectories
from attsolver.evaluate.metrics import (BLOW_UP_FACTOR, HORIZONS, MAPE_FLOOR, VPT_THRESHOLD, blow_up_limit,
                                        score_rollout, speedups_at_equal_accuracy)
from attsolver.systems import make_system
from attsolver.training import NonFiniteLossError, fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Progress, Run, figure, fingerprint, parser, provenance_lines, timings, write_report  # noqa: E402

#: layout version of ode.json and of the progress file
SCHEMA = 1
PROGRESS = "ode_progress.jsonl"
TEST_SEED = 10_007           # the test initial states; training seeds are TRAIN_SEED + seed
TRAIN_SEED = 1_000
REFERENCE_REFINE = 256       # test reference: RK4 at step / 256
TRAIN_REFINE = 32            # training data: RK4 at step / 32 (error ~1e-6 of the coarse one)
# BLOW_UP_FACTOR, VPT_THRESHOLD, MAPE_FLOOR and HORIZONS are the library's (attsolver.compare),
# so the tables and `attsolver compare` score alike

# --------------------------------------------------------------------------- what is run


@dataclass(frozen=True)
class Case:
    """A system and the classical step its correctors correct.

    Attributes:
        name: case key (``--systems``).
        system: registered system name (default parameters).
        method, step: the fixed-step method and coarse step ``h`` the correctors correct.
        t_test, t_train: horizon of the test rollouts and of each training trajectory.
        spin_up: time integrated and discarded before ``t = 0`` (chaotic systems).
        fine_ks: refinements ``k`` of the same method (step ``h / k``) timed for the speed-up.
        rk4_ks: refinements of RK4 (when ``method`` is not RK4) for the best-classical front.
        dopri_rtols: dopri5 tolerances for the best-classical front.
        match: the error used for "equal accuracy" (``err_q1`` for chaotic systems, whose
            rollouts decorrelate later in the horizon whatever the solver; else ``err_full``).
        why: why this step (shown in ode.md).
    """

    name: str
    system: str
    method: str
    step: float
    t_test: float
    t_train: float
    spin_up: float
    fine_ks: tuple[int, ...]
    rk4_ks: tuple[int, ...] = ()
    dopri_rtols: tuple[float, ...] = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
    match: str = "err_full"
    why: str = ""


_K64 = (1, 2, 4, 8, 16, 32, 64)

CASES: dict[str, Case] = {c.name: c for c in [
    Case("lorenz63", "lorenz63", "rk4", 0.1, t_test=10.0, t_train=10.0, spin_up=10.0, fine_ks=_K64,
         match="err_q1",
         why="RK4 at h=0.1: one-step error 1.3e-2 of the attractor's spread, above the 1e-2 noise "
             "(at h=0.05 it is 5e-4 and noise swamps it); stable but decorrelated within 2 Lyapunov times"),
    Case("lorenz96", "lorenz96", "rk4", 0.125, t_test=5.0, t_train=10.0, spin_up=5.0, fine_ks=_K64,
         match="err_q1",
         why="RK4 at h=0.125: one-step error 1.3e-2 of the spread; h=0.2 already blows up in a third "
             "of the rollouts"),
    Case("spring_chain", "spring_chain", "euler", 0.2, t_test=20.0, t_train=20.0, spin_up=0.0,
         fine_ks=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), rk4_ks=_K64,
         why="NeurVec's case: Euler at h=0.2 on 20 masses (d=40); one-step error 4.6e-2 of the "
             "spread, the classical rollout grows without bound (Euler amplifies every mode)"),
    Case("elastic_pendulum", "elastic_pendulum", "rk4", 0.2, t_test=10.0, t_train=10.0, spin_up=0.0,
         fine_ks=_K64,
         why="RK4 at h=0.2 (NeurVec uses 0.1, whose one-step error 6e-4 lies below 1e-2 noise): "
             "one-step error 1.9e-2 of the spread, stable"),
    # extra cases, run on request (--systems): the same systems with another base solver
    Case("spring_chain_rk4", "spring_chain", "rk4", 0.5, t_test=20.0, t_train=20.0, spin_up=0.0,
         fine_ks=_K64,
         why="RK4 at h=0.5: stable, one-step error 3.9e-3 of the spread (below 1e-2 noise)"),
    Case("lorenz96_euler", "lorenz96", "euler", 0.01, t_test=5.0, t_train=5.0, spin_up=5.0,
         fine_ks=(1, 2, 4, 8, 16, 32, 64, 128), rk4_ks=(1, 2, 4, 8),
         match="err_q1",
         why="Euler at h=0.01: first order, so a fine Euler solver needs k ~ error ratio (RK4: its "
             "fourth root)"),
]}
DEFAULT_CASES = ("lorenz63", "lorenz96", "spring_chain", "elastic_pendulum")

#: a user's own system (``--rhs``): case.system -> (f, initial-state sampler or None, Lyapunov exponent)
USER_SYSTEMS: dict[str, tuple[Any, Any, float | None]] = {}


def case_system(case: Case):
    """The right-hand side of a case: a built-in system (default parameters) or the user's ``--rhs``."""
    if case.system in USER_SYSTEMS:
        return USER_SYSTEMS[case.system][0]
    return make_system(case.system)


def _sampler(case: Case):
    return USER_SYSTEMS[case.system][1] if case.system in USER_SYSTEMS else None


def _lyapunov(case: Case, system) -> float | None:
    if case.system in USER_SYSTEMS:
        return USER_SYSTEMS[case.system][2]
    return system.lyapunov_exponent

#: corrector name -> (class, constructor arguments); the package defaults otherwise
CORRECTORS: dict[str, tuple[type, dict[str, Any]]] = {
    "NeurVec": (NeurVec, {}),
    "Hypersolver": (Hypersolver, {}),
    "AttSolver-add": (AttSolver, {"combine": "add"}),
    "AttSolver-mul": (AttSolver, {"combine": "mul"}),
    # ablation, on request: the AttSolver body and head without the attention gate
    "AttSolver-none": (AttSolver, {"attention": "none"}),
    # design probe: NeurVec's body (one wide rational layer on y) with the bounded SE gate
    "AttSolver-wide-add": (AttSolver, {"features": ("y",), "width": 1024, "depth": 1, "activation": "rational",
                                       "reduction": 16, "combine": "add"}),
    "AttSolver-wide-mul": (AttSolver, {"features": ("y",), "width": 1024, "depth": 1, "activation": "rational",
                                       "reduction": 16, "combine": "mul"}),
    # design probe: the gate reads the state y (not the body's output), the residual-block reading
    "AttSolver-gate-y-add": (AttSolver, {"attention_input": "y", "combine": "add"}),
    "AttSolver-gate-y-mul": (AttSolver, {"attention_input": "y", "combine": "mul"}),
    # weight-shared local forms (issue 14), for the systems that declare a lattice (lorenz96,
    # spring_chain); scored with a float32 network on the float64 states (mixed_precision)
    "LocalNeurVec": (LocalNeurVec, {}),
    "LocalHypersolver": (LocalHypersolver, {}),
    "LocalAttSolver": (LocalAttSolver, {}),
    # design probe: a window of 13 sites, the reach of one RK4 step of Lorenz-96 (i-8 .. i+4)
    "LocalNeurVec-w13": (LocalNeurVec, {"window": 13}),
    "LocalAttSolver-w13": (LocalAttSolver, {"window": 13}),
}
DEFAULT_CORRECTORS = ("NeurVec", "Hypersolver", "AttSolver-add", "AttSolver-mul")


@dataclass(frozen=True)
class Recipe:
    """The training recipe, identical for every corrector (fairness).

    ``train_steps`` optimiser steps in all (epochs = steps / batches per epoch, at least
    ``min_epochs``), so small and large data sets get the same optimisation budget; Adam
    with cosine decay to ``min_lr_ratio · lr``; a validation split by trajectory (noisy, like
    the training data: a user has no clean data) with early stopping after ``patience_frac``
    of the epochs without improvement, best weights restored.
    """

    train_steps: int = 1500
    lr: float = 3e-3
    batch_size: int = 128
    rollout_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    val_fraction: float = 0.25
    min_lr_ratio: float = 0.05
    patience_frac: float = 0.25
    min_epochs: int = 5
    restore_best: bool = True  # False with patience_frac 0: the weights of the last epoch, no model selection


#: Recipe fields added after rows were committed: left out of the fingerprint at their default,
#: so adding a field does not invalidate the resumable progress file
_LATER_RECIPE_FIELDS = {"restore_best": True}


def recipe_fingerprint(recipe: Recipe) -> str:
    d = {k: v for k, v in asdict(recipe).items() if not (k in _LATER_RECIPE_FIELDS and _LATER_RECIPE_FIELDS[k] == v)}
    return _fingerprint(d)


_fingerprint = fingerprint  # the resume keys of the committed progress file (sha256, 16 hex digits)


def interleaved_min(fns: dict[str, Any], rounds: int) -> dict[str, float]:
    """Shortest wall time (s) per function over ``rounds`` interleaved rounds after one warm-up
    each: the least disturbed run is the most repeatable estimate of a solver's own cost."""
    return {k: t.min() for k, t in timings(fns, rounds).items()}


# --------------------------------------------------------------------------- data


@dataclass
class TestSet:
    """Held-out initial states with their reference rollout and the scales derived from it."""

    data: TrajectoryDataset
    std: torch.Tensor     # per-component spread of the reference [d]
    limit: float          # blow-up bound
    lyapunov: float | None

    @property
    def y0(self) -> torch.Tensor:
        return self.data.y_true[:, 0]

    @property
    def true(self) -> torch.Tensor:
        return self.data.y_true


def make_test_set(case: Case, n_test: int, seed: int = TEST_SEED) -> TestSet:
    """``n_test`` held-out initial states drawn with ``seed`` and their reference rollout."""
    system = case_system(case)
    data = generate_trajectories(system, n_test, t_final=case.t_test, dt=case.step, spin_up=case.spin_up,
                                 method="rk4", step_size=case.step / REFERENCE_REFINE, seed=seed,
                                 progress=False, sampler=_sampler(case))
    std = data.y_true.reshape(-1, math.prod(data.state_shape)).std(dim=0, correction=0)
    return TestSet(data, std, blow_up_limit(data.y_true), _lyapunov(case, system))


def make_training_pool(case: Case, n: int, seed: int, base: int = TRAIN_SEED) -> TrajectoryDataset:
    """``n`` clean training trajectories for one seed (drawn with ``base + seed``); smaller sizes
    take its first ones (nested sets)."""
    return generate_trajectories(case_system(case), n, t_final=case.t_train, dt=case.step, spin_up=case.spin_up,
                                 method="rk4", step_size=case.step / TRAIN_REFINE, seed=base + seed,
                                 progress=False, sampler=_sampler(case))


def training_set(pool: TrajectoryDataset, size: int, noise: float, seed: int) -> TrajectoryDataset:
    clean = pool.y_true[:size]
    gen = torch.Generator().manual_seed(int(_fingerprint([seed, size, noise]), 16) % (2**62))
    y = add_noise(clean, noise, generator=gen) if noise > 0 else clean.clone()
    return TrajectoryDataset(t=pool.t, y=y, system=pool.system, y_clean=clean if noise > 0 else None,
                             noise_level=noise, config={"benchmark": "ode", "size": size, "seed": seed})


# --------------------------------------------------------------------------- scoring


def rollout(case: Case, system, test: TestSet, *, method: str | None = None, step: float | None = None,
            corrector=None, options: dict | None = None) -> torch.Tensor:
    """The solution on the test times, ``[n_test, nt, d]``; never raises on a blow-up."""
    method = method or case.method
    kw = {} if method.startswith("dopri") else {"step_size": step if step is not None else case.step}
    with torch.no_grad(), parametrize.cached():
        sol = attsolver.solve(system, test.y0, test.data.t, method=method, corrector=corrector,
                              options={"check_finite": False, **(options or {})}, **kw)
    return sol.transpose(0, 1)


def score(case: Case, test: TestSet, pred: torch.Tensor) -> dict[str, Any]:
    """Error metrics of a rollout (mean over the test trajectories): :func:`attsolver.evaluate.metrics.score_rollout`."""
    out = score_rollout(pred, test.true, test.data.t, scale=test.std, limit=test.limit,
                        lyapunov_exponent=test.lyapunov, match=case.match)
    out.pop("blowups")  # the rows keep their committed layout (blowup_rate)
    if test.lyapunov is None:
        out["vpt"] = None
    return out


def classical_sweep(case: Case, test: TestSet, rounds: int) -> dict[str, Any]:
    """Error and median wall time of every classical contender on the test set."""
    system = case_system(case)
    specs: list[tuple[str, str, dict[str, Any]]] = []
    for k in case.fine_ks:
        specs.append(("same", f"{case.method} h/{k}", {"method": case.method, "step": case.step / k, "k": k}))
    if case.method != "rk4":
        for k in case.rk4_ks:
            specs.append(("rk4", f"rk4 h/{k}", {"method": "rk4", "step": case.step / k, "k": k}))
    for tol in case.dopri_rtols:
        specs.append(("dopri5", f"dopri5 rtol={tol:g}",
                      {"method": "dopri5", "options": {"rtol": tol, "atol": tol * 1e-2}, "rtol": tol}))
    entries, fns = [], {}
    for family, label, spec in specs:
        run = (lambda s=spec: rollout(case, system, test, method=s["method"], step=s.get("step"),
                                      options=s.get("options")))
        entry = {"family": family, "label": label, **{k: v for k, v in spec.items() if k != "options"}}
        entry.update(score(case, test, run()))
        entries.append(entry)
        fns[label] = run
    times = interleaved_min(fns, rounds)
    for e in entries:
        e["time_s"] = times[e["label"]]
    coarse = next(e for e in entries if e["family"] == "same" and e["k"] == 1)
    return {"entries": entries, "coarse_time_s": coarse["time_s"], "rounds": rounds}


def speedups(case: Case, sweep: dict[str, Any], err: float, time_norm: float) -> dict[str, Any]:
    """Speed-up at equal accuracy against the same method refined, and against the best classical:
    :func:`attsolver.evaluate.metrics.speedups_at_equal_accuracy` (the analysis ``attsolver compare`` prints)."""
    return speedups_at_equal_accuracy(sweep["entries"], err, time_norm, case.match)


# --------------------------------------------------------------------------- one row


def train_corrector(case: Case, corrector: str, data: TrajectoryDataset, recipe: Recipe,
                    seed: int) -> tuple[Any, dict[str, Any]]:
    """Train one corrector on ``data`` with ``recipe`` (``seed``: its initial draw and batches).

    Returns the model, in float64 and eval mode (a local corrector: a float32 network on float64
    states), and its row fields: ``n_params``, ``train_time_s``, the fit summary and ``failure``.
    """
    system = case_system(case)
    cls, kw = CORRECTORS[corrector]
    torch.manual_seed(seed)  # the same initial draw for every corrector class of a seed
    if issubclass(cls, LocalCorrector):  # the lattice is the system's declaration
        model = cls.for_system(system, method=case.method, step_size=case.step, **kw)
    else:
        model = cls(data.state_shape, method=case.method, step_size=case.step, **kw)
    n = len(data)
    val_fraction = recipe.val_fraction if n >= 2 else 0.0
    n_train = n - (max(1, round(val_fraction * n)) if val_fraction > 0 else 0)
    k = max(recipe.rollout_steps, 1)
    samples = n_train * (data.n_times - k)
    epochs = max(recipe.min_epochs, math.ceil(recipe.train_steps / max(1, math.ceil(samples / recipe.batch_size))))
    patience = max(recipe.min_epochs, math.ceil(recipe.patience_frac * epochs)) if recipe.patience_frac > 0 else None
    failure = None
    started = time.perf_counter()
    try:
        history = fit(model, data, epochs=epochs, lr=recipe.lr, batch_size=recipe.batch_size,
                      rollout_steps=recipe.rollout_steps, val_fraction=val_fraction, patience=patience,
                      seed=seed, progress=False, weight_decay=recipe.weight_decay, grad_clip=recipe.grad_clip,
                      min_lr_ratio=recipe.min_lr_ratio, restore_best=recipe.restore_best, system=system,
                      check=False)  # scored on the test set below; fit's own check would only cost time
        fit_info = {"epochs": epochs, "epochs_run": history.epochs_run, "best_epoch": history.best_epoch,
                    "best_val_loss": history.best_loss if math.isfinite(history.best_loss) else None,
                    "stopped_early": history.stopped_early}
    except NonFiniteLossError as e:  # the model is back at its last good epoch; score that
        failure = f"training stopped: {e}"
        fit_info = {"epochs": epochs, "epochs_run": e.epoch - 1, "best_epoch": None, "best_val_loss": None,
                    "stopped_early": False}
    train_time = time.perf_counter() - started
    if isinstance(model, LocalCorrector):  # float32 network, float64 states and steps
        model.mixed_precision = True
        model = model.eval()
    else:
        model = model.double().eval()  # scored and timed in float64, like the classical solvers
    info = {"n_params": sum(p.numel() for p in model.parameters()), "train_time_s": train_time, **fit_info,
            "failure": failure}
    return model, info


def train_and_score(case: Case, corrector: str, data: TrajectoryDataset, test: TestSet, sweep: dict[str, Any],
                    recipe: Recipe, seed: int, rounds: int) -> dict[str, Any]:
    """Train one corrector on ``data`` and score it on the test set; ``rounds`` timing rounds."""
    system = case_system(case)
    model, info = train_corrector(case, corrector, data, recipe, seed)
    row: dict[str, Any] = dict(info)
    row.update(score(case, test, rollout(case, system, test, corrector=model)))
    times = interleaved_min({"corrected": lambda: rollout(case, system, test, corrector=model),
                                "coarse": lambda: rollout(case, system, test)}, rounds)
    row["rollout_time_s"] = times["corrected"]
    row["coarse_time_now_s"] = times["coarse"]
    # the corrected time in the units of the sweep: (corrected / coarse, timed together) x coarse in the sweep
    row["time_ratio_vs_coarse"] = times["corrected"] / times["coarse"]
    row["rollout_time_norm_s"] = row["time_ratio_vs_coarse"] * sweep["coarse_time_s"]
    row.update(speedups(case, sweep, row["err_match"], row["rollout_time_norm_s"]))
    return row


def target_snr(case: Case, noise_levels: list[float], n: int = 16, seed: int = 0) -> dict[str, float]:
    """Signal-to-noise ratio of the one-step training targets: RMS of the clean residual
    ``y(t+h) − Φ_h(y(t))`` over RMS of what the observation noise adds to it, on ``n``
    training trajectories of ``seed``.  Below ~1 the regression target is mostly noise."""
    system = case_system(case)
    pool = make_training_pool(case, n, seed)
    t01 = torch.tensor([0.0, case.step], dtype=torch.float64)

    def residual(y: torch.Tensor) -> torch.Tensor:
        y = y.to(torch.float64)
        y0, y1 = y[:, :-1].reshape(-1, *pool.state_shape), y[:, 1:].reshape(-1, *pool.state_shape)
        with torch.no_grad():
            step = attsolver.solve(system, y0, t01, method=case.method, step_size=case.step)[-1]
        return y1 - step

    clean = residual(pool.y_true)
    rms = float(clean.pow(2).mean().sqrt())
    out = {}
    for noise in noise_levels:
        if noise > 0:
            added = residual(training_set(pool, n, noise, seed).y) - clean
            out[f"{noise:g}"] = rms / float(added.pow(2).mean().sqrt())
    return out


# --------------------------------------------------------------------------- aggregation


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


METRICS = ("err_q1", "err_q2", "err_full", "err_match", "mape", "vpt", "blowup_rate", "rollout_time_s",
           "rollout_time_norm_s", "train_time_s", "speedup_same", "speedup_best", "k_equiv")


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (case, corrector, size, noise)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["corrector"], r["n_train"], r["noise"]), []).append(r)
    out = []
    for (case, corrector, size, noise), rs in groups.items():
        g: dict[str, Any] = {"case": case, "corrector": corrector, "n_train": size, "noise": noise, "n_seeds": len(rs)}
        for m in METRICS:
            g[m], g[m + "_std"] = _mean_std([r.get(m) for r in rs])
        for kind in ("speedup_same_kind", "speedup_best_kind"):
            kinds = sorted({r[kind] for r in rs})
            g[kind] = kinds[0] if len(kinds) == 1 else "mixed:" + "/".join(kinds)
        g["failures"] = sum(r.get("failure") is not None for r in rs)
        out.append(g)
    return out


def _cell(aggs, case, corrector, size, noise):
    for g in aggs:
        if (g["case"], g["corrector"], g["n_train"], g["noise"]) == (case, corrector, size, noise):
            return g
    return None


def _attsolver_variants(correctors) -> list[str]:
    """The AttSolver variants among ``correctors``, in the order of :data:`CORRECTORS`."""
    return [c for c in CORRECTORS if c.startswith("AttSolver") and c in correctors]


def _is_full_grid(grid: dict[str, Any]) -> bool:
    """Whether a run covers the issue's grid: every default case, size, noise level and seed."""
    return (set(DEFAULT_CASES) <= set(grid["cases"]) and {4, 16, 64, 256} <= set(grid["sizes"])
            and {0.0, 1e-3, 1e-2, 5e-2} <= set(grid["noise"]) and len(grid["seeds"]) >= 5
            and set(DEFAULT_CORRECTORS) <= set(grid["correctors"]))


def _measured_kind(kind: str) -> bool:
    """Whether an (aggregated) speed-up kind is a measurement: interpolated or extrapolated
    along the classical front for every seed, not an upper bound."""
    return all(k in ("interpolated", "extrapolated") for k in kind.removeprefix("mixed:").split("/"))


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, computed from the rows."""
    aggs = report["aggregates"]
    grid = report["grid"]
    out: dict[str, Any] = {"speedup_10x": [], "att_vs_neurvec": [], "blowups": {}}
    for case in grid["cases"]:
        if CASES[case].system not in ("spring_chain", "lorenz96"):
            continue
        for corr in grid["correctors"]:
            cells = [g for g in aggs if g["case"] == case and g["corrector"] == corr and g["speedup_same"] is not None]
            if not cells:
                continue
            # a speed-up is measured where every seed's error lies on or beyond the classical front
            # (interpolated or extrapolated); "≤" upper bounds do not count
            measured = [g for g in cells if _measured_kind(g["speedup_same_kind"])]
            best = max(measured or cells, key=lambda g: g["speedup_same"])
            best_vs_classical = max(cells, key=lambda g: g["speedup_best"] or 0.0)
            out["speedup_10x"].append({
                "case": case, "corrector": corr, "max_speedup_same": best["speedup_same"],
                "at": {"n_train": best["n_train"], "noise": best["noise"]},
                "kind": best["speedup_same_kind"], "err_match": best["err_match"],
                "max_speedup_best": best_vs_classical["speedup_best"],
                "max_speedup_best_kind": best_vs_classical["speedup_best_kind"],
                "holds": best["speedup_same"] >= 10 and _measured_kind(best["speedup_same_kind"]),
            })
    noise_t = 1e-2
    for case in grid["cases"]:
        for size in [s for s in grid["sizes"] if s <= 16]:
            nv = _cell(aggs, case, "NeurVec", size, noise_t)
            if nv is None:
                continue
            entry = {"case": case, "n_train": size, "neurvec_err": nv["err_match"], "neurvec_err_full": nv["err_full"]}
            for corr in _attsolver_variants(grid["correctors"]):
                a = _cell(aggs, case, corr, size, noise_t)
                if a is not None:
                    entry[corr] = {"err": a["err_match"], "ratio": a["err_match"] / nv["err_match"],
                                   "ratio_full": a["err_full"] / nv["err_full"]}
            ratios = [entry[c]["ratio"] for c in _attsolver_variants(grid["correctors"])
                      if c in entry and c != "AttSolver-none"]
            entry["holds"] = bool(ratios) and min(ratios) <= 0.7
            out["att_vs_neurvec"].append(entry)
    for corr in grid["correctors"]:
        rs = [r for r in report["rows"] if r["corrector"] == corr]
        out["blowups"][corr] = {"rows": len(rs), "rows_with_blowup": sum(r["blowup_rate"] > 0 for r in rs),
                                "mean_rate": float(np.mean([r["blowup_rate"] for r in rs])) if rs else None}
    return out


# --------------------------------------------------------------------------- markdown


def _f(x, digits=3) -> str:
    if x is None:
        return "–"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def _pm(g, m, digits=3, scale=1.0) -> str:
    if g.get(m) is None:
        return "–"
    s = g.get(m + "_std") or 0.0
    if g["n_seeds"] <= 1:
        return _f(g[m] * scale, digits)
    return f"{_f(g[m] * scale, digits)} ± {_f(s * scale, 2)}"


_KIND_MARK = {"interpolated": "", "extrapolated": "≳", "cheapest": "≤", "unreached": "?"}


def _speed(g, m) -> str:
    kind = g[m + "_kind"]
    mark = "~" if kind.startswith("mixed") else _KIND_MARK.get(kind, "")
    if g.get(m) is None:
        return "–"
    return mark + _pm(g, m, 3) + "×"


def _classical_row(case: Case, entry: dict[str, Any], label: str) -> str:
    vpt = _f(entry["vpt"]) if entry.get("vpt") is not None else "–"
    return (f"| {label} | – | {_f(entry['err_q1'])} | {_f(entry['err_q2'])} | {_f(entry['err_full'])} | "
            f"{_f(entry['mape'])} | {vpt} | {_f(100 * entry['blowup_rate'], 2)} | {_f(1e3 * entry['time_s'])} | – | 1× | – |")


_TABLE_HEAD = ("| solver | n train | err ¼ | err ½ | err 1 | MAPE % | VPT (Λ) | blow-up % | rollout ms | "
               "train s | speed-up vs same method | speed-up vs best classical |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def _agg_row(g, label=None) -> str:
    vpt = _pm(g, "vpt") if g.get("vpt") is not None else "–"
    fail = f" ({g['failures']} failed)" if g["failures"] else ""
    return (f"| {label or g['corrector']}{fail} | {g['n_train']} | {_pm(g, 'err_q1')} | {_pm(g, 'err_q2')} | "
            f"{_pm(g, 'err_full')} | {_pm(g, 'mape')} | {vpt} | {_pm(g, 'blowup_rate', 2, 100)} | "
            f"{_pm(g, 'rollout_time_norm_s', 3, 1e3)} | {_pm(g, 'train_time_s', 2)} | "
            f"{_speed(g, 'speedup_same')} | {_speed(g, 'speedup_best')} |")


def to_markdown(report: dict[str, Any]) -> str:
    grid, recipe = report["grid"], report["recipe"]
    aggs = report["aggregates"]
    issue_grid = "4 sizes (4, 16, 64, 256) × 4 noise levels (0, 1e-3, 1e-2, 5e-2) × 5 seeds"
    L = [
        "# ODE benchmark: learned correctors vs classical solvers",
        "",
        *provenance_lines(report, unfinished="case"),
        f"This invocation: {report['rows_computed']} rows computed, {report['rows_resumed']} resumed from "
        f"`{PROGRESS}`; the rows and classical sweeps took {report['compute_minutes']:.1f} min to compute in all.",
        "",
        f"**Grid run here:** cases {', '.join(grid['cases'])}; training-set sizes {grid['sizes']}; "
        f"noise levels {grid['noise']}; {len(grid['seeds'])} seeds; correctors {', '.join(grid['correctors'])}; "
        f"{grid['n_test']} held-out test initial states per case"
        + (" (`--quick`: short training)." if report["quick"] else "."),
        ("This is the issue's full grid." if _is_full_grid(grid) else
         f"The issue's full grid ({issue_grid}) is produced by `attsolver bench ode --out benchmarks/results` "
         f"(estimated {report['estimated_full_minutes']:.0f} min on this machine, extrapolated from this run's "
         "per-row times; rerunning into the same folder resumes)."),
        "",
        "Metrics (held-out test set, mean over its trajectories; tables give mean ± std over seeds): "
        "**err ¼ / ½ / 1** relative L2 error ‖ŷ − y‖₂/‖y‖₂ of the rollout over the first quarter, half and all "
        "of the test horizon; **MAPE** mean |ŷ − y| / max(|y|, 1 % of the component's spread); **VPT** valid "
        f"prediction time in Lyapunov times, first time the error normalised by the attractor's per-component "
        f"std exceeds {VPT_THRESHOLD}; **blow-up** share of rollouts that became non-finite or exceeded "
        f"{BLOW_UP_FACTOR:g}× the attractor's scale (their errors are computed on the clipped rollout, so they "
        "show as huge, never as NaN); **rollout ms** wall time of the corrected solve of the whole test batch "
        "(float64, no autograd), in the units of the classical sweep; **train s** wall time of `fit`. "
        "**Speed-up** = time of the classical solver at the accuracy of the corrected coarse solver ÷ time of "
        "the corrected coarse solver, the classical time interpolated log-log along the classical "
        "error–time front measured in the same process (same method at h/k; best classical = RK4 at any h/k "
        "or dopri5 at any tolerance). `≤` the corrected run is no more accurate than the cheapest classical "
        "run, so there is no equal-accuracy point and the figure is an upper bound; `≳` extrapolated beyond "
        "the most accurate classical run; `~` seeds of different kinds.",
        "",
        f"Training recipe, the same for every corrector: {recipe['train_steps']} Adam steps (lr "
        f"{recipe['lr']:g}, cosine decay to {recipe['min_lr_ratio']:g}×, batch {recipe['batch_size']}, "
        f"gradient clip {recipe['grad_clip']:g}, weight decay {recipe['weight_decay']:g}), "
        + ("one-step residual targets" if recipe["rollout_steps"] == 0 else f"{recipe['rollout_steps']}-step rollout loss")
        + f"; {recipe['val_fraction']:g} of the (noisy) trajectories held out for early stopping "
        f"(patience {recipe['patience_frac']:g} of the epochs), best weights restored. Correctors use the "
        "package defaults (NeurVec width 1024 rational; Hypersolver 64-64 tanh; AttSolver width 128, depth 2, "
        "SE gate capped at spectral norm 1), trained in float32, scored in float64.",
        "",
        "## Targets",
        "",
    ]
    L += _targets(report)
    # headline
    h_noise = 1e-2 if 1e-2 in grid["noise"] else max(grid["noise"])
    h_size = 16 if 16 in grid["sizes"] else min(grid["sizes"])
    L += [f"## Headline: noise {h_noise:g}, {h_size} training trajectories", ""]
    for case in grid["cases"]:
        c = CASES[case]
        sweep = report["cases"][case]["sweep"]
        coarse = next(e for e in sweep["entries"] if e["family"] == "same" and e["k"] == 1)
        L += [f"### {case}: {c.system}, {c.method} h={c.step:g}", "", _TABLE_HEAD,
              _classical_row(c, coarse, f"classical {c.method} h={c.step:g}")]
        for corr in grid["correctors"]:
            g = _cell(aggs, case, corr, h_size, h_noise)
            if g is not None:
                L.append(_agg_row(g))
        L.append("")
    L += ["## Where AttSolver does not win", ""]
    L += honest_notes(report)
    if report.get("target_snr"):
        levels = sorted({k for v in report["target_snr"].values() for k in v}, key=float)
        L += ["", "Why noise dominates: signal-to-noise ratio of the one-step training targets (RMS of the clean "
              "residual y(t+h) − Φ_h(y(t)) over RMS of the part the observation noise adds; 16 trajectories). "
              "At noise 1e-2 it is about 1: half of each target's variance is noise, whatever the corrector, and "
              "a gate that reweights the body's features does not see clean targets either:", "",
              "| case | " + " | ".join(f"noise {lv}" for lv in levels) + " |",
              "|---|" + "---:|" * len(levels)]
        for case, snr in report["target_snr"].items():
            L.append(f"| {case} | " + " | ".join(_f(snr.get(lv)) for lv in levels) + " |")
    L.append("")
    if report.get("probes"):
        L += probe_table(report["probes"])
    L += _all_rows(report)
    L += ["## Plots", "",
          "* `ode_error_vs_size.png`: test error (the matching error) against training-set size, one panel per "
          "case and noise level, classical coarse dashed.",
          "* `ode_pareto.png`: error against wall time: the classical solvers at several steps/tolerances and "
          "every corrected configuration (mean over seeds).", ""]
    return "\n".join(L)


def _targets(report: dict[str, Any]) -> list[str]:
    """The issue's three targets (the section the README quotes)."""
    grid, v = report["grid"], report["verdicts"]
    L: list[str] = []
    L.append("**Corrected coarse steps match the fine classical solver with ≥ 10× less wall time "
             "(spring chain, Lorenz-96).**")
    L.append("")
    if v["speedup_10x"]:
        L += ["| case | corrector | best speed-up vs same method | at (n, noise) | its error | best speed-up vs best classical | holds |",
              "|---|---|---:|---|---:|---:|---|"]
        for e in v["speedup_10x"]:
            L.append(f"| {e['case']} | {e['corrector']} | {_KIND_MARK.get(e['kind'], '~')}{_f(e['max_speedup_same'])}× | "
                     f"({e['at']['n_train']}, {e['at']['noise']:g}) | {_f(e['err_match'])} | "
                     f"{_KIND_MARK.get(e['max_speedup_best_kind'], '~')}{_f(e['max_speedup_best'])}× | "
                     f"{'yes' if e['holds'] else 'no'} |")
    else:
        L.append("_Not measured in this grid (needs spring_chain or lorenz96)._")
    L.append("")
    L.append("**Under noise 1e-2 with ≤ 16 training trajectories, AttSolver's test error ≤ 0.7× NeurVec's** "
             "(error used for matching: err ¼ for the chaotic systems, err 1 otherwise).")
    L.append("")
    if v["att_vs_neurvec"]:
        shown = [c for c in _attsolver_variants(grid["correctors"]) if c != "AttSolver-none"]
        L += ["| case | n train | NeurVec error | " + " | ".join(f"{c} / NeurVec" for c in shown) + " | holds |",
              "|---|---:|---:|" + "---:|" * len(shown) + "---|"]
        for e in v["att_vs_neurvec"]:
            def rat(c):
                return f"{e[c]['ratio']:.2f} (err 1: {e[c]['ratio_full']:.2f})" if c in e else "–"
            L.append(f"| {e['case']} | {e['n_train']} | {_f(e['neurvec_err'])} | "
                     + " | ".join(rat(c) for c in shown) + f" | {'yes' if e['holds'] else 'no'} |")
    else:
        L.append("_Not measured in this grid (needs noise 0.01, a size ≤ 16 and NeurVec)._")
    L.append("")
    L.append("**No configuration silently produces NaN:** every rollout runs with `check_finite=False` and is "
             "scored; rows with a blow-up, per corrector: "
             + "; ".join(f"{c} {b['rows_with_blowup']}/{b['rows']} (mean rate {_f(b['mean_rate'], 2)})"
                         for c, b in v["blowups"].items()) + ".")
    L.append("")
    return L


def _all_rows(report: dict[str, Any]) -> list[str]:
    """Per case and noise level every (size, corrector) cell, then the classical sweep."""
    grid, aggs = report["grid"], report["aggregates"]
    L = ["## All rows", ""]
    for case in grid["cases"]:
        c = CASES[case]
        sweep = report["cases"][case]["sweep"]
        coarse = next(e for e in sweep["entries"] if e["family"] == "same" and e["k"] == 1)
        L += [f"### {case}: {c.system}, {c.method} h={c.step:g}, test horizon {c.t_test:g}", "",
              f"Why this step: {c.why}.", ""]
        for noise in grid["noise"]:
            L += [f"Noise {noise:g}:", "", _TABLE_HEAD, _classical_row(c, coarse, f"classical {c.method} h={c.step:g}")]
            for size in grid["sizes"]:
                for corr in grid["correctors"]:
                    g = _cell(aggs, case, corr, size, noise)
                    if g is not None:
                        L.append(_agg_row(g))
            L.append("")
        L += ["Classical solvers on the same test set (the speed-up references):", "",
              "| solver | err ¼ | err ½ | err 1 | VPT (Λ) | blow-up % | time ms |", "|---|---:|---:|---:|---:|---:|---:|"]
        for e in sweep["entries"]:
            L.append(f"| {e['label']} | {_f(e['err_q1'])} | {_f(e['err_q2'])} | {_f(e['err_full'])} | "
                     f"{_f(e['vpt']) if e.get('vpt') is not None else '–'} | {_f(100 * e['blowup_rate'], 2)} | "
                     f"{_f(1e3 * e['time_s'])} |")
        L.append("")
    return L


def load_probes(folder: Path) -> list[dict[str, Any]]:
    """Design-space probes: ``ode.json`` files of other runs of this suite under ``folder/*/``
    (the same cases, other training choices), reduced to their AttSolver / NeurVec verdicts."""
    probes = []
    for path in sorted(folder.glob("*/ode.json")):
        try:
            rep = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rep.get("suite") != "ode" or "verdicts" not in rep:
            continue
        probes.append({"name": path.parent.name, "command": rep["command"], "recipe": rep["recipe"],
                       "att_vs_neurvec": rep["verdicts"]["att_vs_neurvec"],
                       "file": f"{folder.name}/{path.parent.name}/ode.md"})
    return probes


def probe_table(probes: list[dict[str, Any]]) -> list[str]:
    L = ["## Design-space probes: other training choices and AttSolver designs, same target cells", "",
         "AttSolver / NeurVec test-error ratio at noise 1e-2 (target ≤ 0.7), from runs of this suite with "
         "another training recipe (applied to every corrector alike) or other AttSolver designs (full tables "
         "in the linked files).", "",
         "| probe | change | case | n train | NeurVec error | AttSolver variant / NeurVec |",
         "|---|---|---|---:|---:|---|"]
    base = asdict(Recipe())
    for p in probes:
        change = ", ".join(f"{k}={v}" if isinstance(v, bool) else f"{k}={v:g}"
                           for k, v in p["recipe"].items() if k in base and base[k] != v) or "recipe as above"
        variants = [c for c in CORRECTORS if c.startswith("AttSolver") and c not in DEFAULT_CORRECTORS
                    and any(c in e for e in p["att_vs_neurvec"])]
        if variants:
            change += "; design variants " + ", ".join(variants)
        for e in p["att_vs_neurvec"]:
            ratios = ", ".join(f"{c.removeprefix('AttSolver-')} {e[c]['ratio']:.2f}"
                               for c in _attsolver_variants(e) if c in e)
            L.append(f"| [{p['name']}]({p['file']}) | {change} | {e['case']} | {e['n_train']} | "
                     f"{_f(e['neurvec_err'])} | {ratios or '–'} |")
    L.append("")
    return L


def honest_notes(report: dict[str, Any]) -> list[str]:
    """Cell counts where AttSolver loses, computed from the aggregates, plus the reasons we know."""
    aggs, grid = report["aggregates"], report["grid"]
    lines = []
    for case in grid["cases"]:
        sweep = report["cases"][case]["sweep"]
        coarse = next(e for e in sweep["entries"] if e["family"] == "same" and e["k"] == 1)[CASES[case].match]
        cells = [(s, n) for s in grid["sizes"] for n in grid["noise"]]
        for att in [c for c in ("AttSolver-add", "AttSolver-mul") if c in grid["correctors"]]:
            parts = []
            for other in [c for c in ("NeurVec", "Hypersolver") if c in grid["correctors"]]:
                wins = [(s, n) for s, n in cells if (a := _cell(aggs, case, att, s, n)) and (o := _cell(aggs, case, other, s, n))
                        and a["err_match"] < o["err_match"]]
                lost = [f"({s}, {n:g})" for s, n in cells if (s, n) not in wins and _cell(aggs, case, att, s, n)]
                parts.append(f"lower error than {other} in {len(wins)}/{len(cells)} (size, noise) cells"
                             + (f" — not in {', '.join(lost)}" if lost and len(lost) <= 8 else ""))
            worse = [f"({s}, {n:g})" for s, n in cells
                     if (a := _cell(aggs, case, att, s, n)) and a["err_match"] >= coarse]
            parts.append(f"no better than the classical coarse solver in {len(worse)}/{len(cells)} cells"
                         + (f" ({', '.join(worse)})" if worse and len(worse) <= 8 else ""))
            lines.append(f"* {case}, {att}: " + "; ".join(parts) + ".")
        if "AttSolver-none" in grid["correctors"]:
            for att in [c for c in ("AttSolver-add", "AttSolver-mul") if c in grid["correctors"]]:
                pairs = [(a, o) for s, n in cells if (a := _cell(aggs, case, att, s, n))
                         and (o := _cell(aggs, case, "AttSolver-none", s, n))]
                if pairs:
                    better = sum(a["err_match"] < o["err_match"] for a, o in pairs)
                    ratio = float(np.exp(np.mean([np.log(a["err_match"] / o["err_match"]) for a, o in pairs])))
                    lines.append(f"* {case}, the gate ({att} against the same body without it, AttSolver-none): "
                                 f"lower error in {better}/{len(pairs)} cells, geometric-mean error ratio {ratio:.2f}.")
    lines += [
        "* The spring chain is linear, so its Euler correction is a linear map of the state: NeurVec's one "
        "wide layer with a rational (nearly polynomial) activation fits it far better than the saturating "
        "tanh bodies of the Hypersolver and AttSolver — the gap there is about the body, not the attention.",
        "* Speed-up against the same method refined is what NeurVec reports; against the best classical "
        "solver (RK4 at a smaller step, dopri5) a corrected *Euler* step is rarely competitive: RK4 is "
        "four orders more accurate per evaluation, and on these small CPU batches the network costs as "
        "much as several evaluations of f.",
        "* For a fourth-order base method, equal accuracy with a k-times finer step needs an error k⁴ times "
        "smaller: a 10× speed-up against RK4/k needs the corrector to cut the error ~10⁴× (more, counting the "
        "network's cost), which noisy training data do not allow.",
        "* Training targets are one-step residuals of noisy observations: the noise (σ × the spread, per "
        "component) enters the targets and, through the noisy input state, biases the regression; where the "
        "classical one-step error is not well above σ the learned correction is mostly fitted noise.",
    ]
    return lines


# --------------------------------------------------------------------------- plots


def make_plots(report: dict[str, Any]):
    """``ode_error_vs_size.png`` and ``ode_pareto.png`` from a report (re-render the committed
    ones without training: ``write_report(out, "ode", report, to_markdown, make_plots)``)."""
    yield "ode_error_vs_size.png", _error_vs_size(report)
    yield "ode_pareto.png", _pareto(report)


def _coarse_solver(report: dict[str, Any], case: str) -> tuple[str, float, str]:
    """The case's coarse method, step and matching error, as the report recorded them."""
    d = report["cases"][case].get("definition", {})
    return d.get("method", CASES[case].method), d.get("step", CASES[case].step), d.get("match", CASES[case].match)


def _error_vs_size(report: dict[str, Any]):
    """Error against training-set size: one row per case, one column per noise level; the dashed
    line is that row's own classical coarse solver (method and step in the row label)."""
    grid, aggs = report["grid"], report["aggregates"]
    markers = {"NeurVec": "o", "Hypersolver": "s", "AttSolver-add": "^", "AttSolver-mul": "v", "AttSolver-none": "x"}
    colours = {corr: f"C{i}" for i, corr in enumerate(grid["correctors"])}
    cases, noises = grid["cases"], grid["noise"]
    fig, axes = figure(len(cases), len(noises), figsize=(3.3 * len(noises), 2.8 * len(cases)), dpi=100,
                       squeeze=False, sharex=True, layout=None)
    for i, case in enumerate(cases):
        method, step, match = _coarse_solver(report, case)
        sweep = report["cases"][case]["sweep"]
        coarse = next(e for e in sweep["entries"] if e["family"] == "same" and e["k"] == 1)[match]
        for j, noise in enumerate(noises):
            ax = axes[i][j]
            for corr in grid["correctors"]:
                pts = [(g["n_train"], g["err_match"], g["err_match_std"]) for g in aggs
                       if g["case"] == case and g["corrector"] == corr and g["noise"] == noise]
                if pts:
                    pts.sort()
                    x, y, sd = zip(*pts)
                    ax.errorbar(x, y, yerr=sd, marker=markers.get(corr, "x"), color=colours[corr], ms=4,
                                capsize=2, lw=1.2)
            ax.axhline(coarse, color="k", ls="--", lw=1)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"noise {noise:g}", fontsize=10)
            ax.tick_params(labelsize=8)
            if j == 0:
                horizon = "¼ horizon" if match == "err_q1" else "whole horizon"
                ax.set_ylabel(f"{case}  (dashed: {method} h={step:g})\nrel. L2 error ({horizon})", fontsize=9)
            if i == len(cases) - 1:
                ax.set_xlabel("training trajectories", fontsize=9)
    handles = [Line2D([], [], color=colours[c], marker=markers.get(c, "x"), lw=1.2, label=c) for c in grid["correctors"]]
    handles.append(Line2D([], [], color="k", ls="--", lw=1, label="classical coarse solver of the row (uncorrected)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle("Corrected coarse solvers: test error against training-set size (mean ± std over seeds)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.035, 1, 0.98))
    return fig


def _pareto(report: dict[str, Any]):
    """Work-precision: one panel per case; classical solvers as lines, corrected configurations as
    points: colour = corrector, marker = noise level, size = training-set size."""
    grid, aggs = report["grid"], report["aggregates"]
    colours = {corr: f"C{i}" for i, corr in enumerate(grid["correctors"])}
    cases, noises = grid["cases"], grid["noise"]
    sizes = sorted({g["n_train"] for g in aggs})
    noise_markers = dict(zip(noises, ["o", "s", "^", "D", "v", "P"]))
    size_of = {n: 14 + 22 * k for k, n in enumerate(sizes)}
    ncols = 2 if len(cases) > 1 else 1
    nrows = (len(cases) + ncols - 1) // ncols
    legend_in = 1.5  # inches below the panels for the two legends
    fig, axes = figure(nrows, ncols, figsize=(6.2 * ncols, 4.4 * nrows + legend_in), dpi=100, squeeze=False,
                       layout=None)
    for i, case in enumerate(cases):
        ax = axes[i // ncols][i % ncols]
        method, step, match = _coarse_solver(report, case)
        entries = report["cases"][case]["sweep"]["entries"]
        for fam, style in (("same", "k-o"), ("rk4", "b-s"), ("dopri5", "g-d")):
            fam_entries = [e for e in entries if e["family"] == fam]  # in order of refinement
            if fam_entries:
                name = ("classical: the panel's method, h/k" if fam == "same" else
                        ("classical: rk4, h/k" if fam == "rk4" else "classical: dopri5 over rtol"))
                ax.plot([e["time_s"] * 1e3 for e in fam_entries], [e[match] for e in fam_entries], style,
                        ms=3.5, lw=1.2, label=name, zorder=3)
        for corr in grid["correctors"]:
            for noise in noises:
                pts = [(g["rollout_time_norm_s"] * 1e3, g["err_match"], size_of[g["n_train"]]) for g in aggs
                       if g["case"] == case and g["corrector"] == corr and g["noise"] == noise]
                if pts:
                    x, y, sz = zip(*pts)
                    ax.scatter(x, y, marker=noise_markers.get(noise, "x"), s=sz, color=colours[corr], alpha=0.6,
                               edgecolors="none" if noise_markers.get(noise, "x") != "x" else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("wall time of the test batch (ms)", fontsize=10)
        ax.set_ylabel(f"rel. L2 error ({'¼ horizon' if match == 'err_q1' else 'whole horizon'})", fontsize=10)
        ax.set_title(f"{case}: corrected {method} h={step:g} vs classical", fontsize=11)
        ax.tick_params(labelsize=9)
        ax.grid(True, which="major", alpha=0.25)
    for k in range(len(cases), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    classical = {}
    for ax in axes.flat:
        for hnd, lab in zip(*ax.get_legend_handles_labels()):
            classical.setdefault(lab, hnd)
    leg_corr = [Line2D([], [], ls="", marker="o", color=colours[c], ms=7, label=c) for c in grid["correctors"]]
    leg_noise = [Line2D([], [], ls="", marker=noise_markers.get(n, "x"), color="0.35", ms=7, label=f"noise {n:g}")
                 for n in noises]
    leg_size = [Line2D([], [], ls="", marker="o", color="0.35", ms=(size_of[n] ** 0.5), label=f"{n} trajectories")
                for n in sizes]
    fig.legend(handles=list(classical.values()) + leg_corr, loc="lower left", bbox_to_anchor=(0.01, 0.0),
               ncol=2, fontsize=9, frameon=False, title="lines: classical solvers; points: colour = corrector",
               title_fontsize=9)
    fig.legend(handles=leg_noise + leg_size, loc="lower right", bbox_to_anchor=(0.99, 0.0), ncol=2, fontsize=9,
               frameon=False, title="points: marker = training noise, size = training trajectories",
               title_fontsize=9)
    fig.suptitle("Error against wall time: classical solvers and every corrected configuration (mean over seeds)",
                 fontsize=12)
    fig.tight_layout(rect=(0, legend_in / (4.4 * nrows + legend_in), 1, 0.97))
    return fig


# --------------------------------------------------------------------------- driver


def parse_args(argv):
    ap = parser("ode", __doc__, out=None, quick="small grid and short training (all 4 systems, sizes 4 16, "
                "noise 0 0.01, 2 seeds); < 10 min on 2 cores")
    ap.add_argument("--systems", nargs="+", choices=sorted(CASES), default=None,
                    help=f"cases to run (default: {' '.join(DEFAULT_CASES)})")
    ap.add_argument("--sizes", nargs="+", type=positive_int, default=None, help="training-set sizes (default 4 16 64 256)")
    ap.add_argument("--noise", nargs="+", type=nonneg_float, default=None, help="relative noise levels (default 0 1e-3 1e-2 5e-2)")
    ap.add_argument("--seeds", type=positive_int, default=None, help="seeds per configuration (default 5)")
    ap.add_argument("--correctors", nargs="+", choices=list(CORRECTORS), default=list(DEFAULT_CORRECTORS),
                    help=f"default: {' '.join(DEFAULT_CORRECTORS)}; AttSolver-none is the gate-less ablation")
    ap.add_argument("--n-test", type=positive_int, default=32, help="held-out test initial states per case")
    ap.add_argument("--rounds", type=positive_int, default=None,
                    help="timing rounds of the classical sweep (default 3, quick 2); each row times its "
                         "corrected and coarse rollouts over 5 interleaved rounds")
    ap.add_argument("--train-steps", type=positive_int, default=None, help="optimiser steps per fit (default 1500, quick 300)")
    ap.add_argument("--lr", type=positive_float, default=None)
    ap.add_argument("--rollout-steps", type=nonneg_int, default=None, help="k-step rollout loss (default 0: one-step)")
    ap.add_argument("--weight-decay", type=nonneg_float, default=None)
    ap.add_argument("--no-early-stopping", action="store_true",
                    help="train every epoch and keep the last weights (no validation-based selection; "
                         "the published NeurVec recipe)")
    ap.add_argument("--out", default=None,
                    help="output folder (default benchmarks/results; with --quick out/bench-ode-quick)")
    ap.add_argument("--no-plots", action="store_true")
    user = ap.add_argument_group("your own system (instead of --systems)")
    user.add_argument("--rhs", default=None, metavar="MODULE:F",
                      help="right-hand side f(t, y): module:function or path/to/file.py:function")
    user.add_argument("--init", default=None, metavar="MODULE:SAMPLE",
                      help="initial-state sampler sample(n, generator) (default: the system's sample_initial)")
    user.add_argument("--method", default="rk4", help="with --rhs: the fixed-step method corrected (default rk4)")
    user.add_argument("--step", type=float, default=None, help="with --rhs: the coarse step corrected")
    user.add_argument("--t-test", type=float, default=None, help="with --rhs: test horizon")
    user.add_argument("--t-train", type=float, default=None, help="with --rhs: training trajectory length")
    user.add_argument("--spin-up", type=float, default=0.0, help="with --rhs: time integrated first")
    user.add_argument("--match", default="err_full", choices=[k for k, _ in HORIZONS],
                      help="with --rhs: the error compared at equal accuracy (err_q1 for chaotic systems)")
    user.add_argument("--lyapunov", type=float, default=None, help="with --rhs: largest Lyapunov exponent")
    args = ap.parse_args(argv)
    q = args.quick
    if args.rhs:
        if args.systems:
            ap.error("give --systems or --rhs, not both")
        if args.step is None or args.t_test is None:
            ap.error("--rhs needs --step (the coarse step) and --t-test (the test horizon)")
        _register_user_case(args, ap)
    args.cases = ["user"] if args.rhs else (args.systems or list(DEFAULT_CASES))
    args.sizes = sorted(set(args.sizes or ([4, 16] if q else [4, 16, 64, 256])))
    args.noise = sorted(set(args.noise if args.noise is not None else ([0.0, 1e-2] if q else [0.0, 1e-3, 1e-2, 5e-2])))
    args.seed_list = list(range(args.seeds if args.seeds is not None else (2 if q else 5)))
    args.rounds = args.rounds or (2 if q else 3)
    args.row_rounds = 5
    args.out = Path(args.out or ("out/bench-ode-quick" if q else "benchmarks/results"))
    if args.out.exists() and not args.out.is_dir():
        ap.error(f"--out {args.out}: is a file; give a folder (it holds the tables, plots and progress log)")
    if any(s < 1 for s in args.sizes) or any(n < 0 for n in args.noise) or not args.seed_list or args.n_test < 2:
        ap.error("sizes must be >= 1, noise >= 0, --seeds >= 1, --n-test >= 2")
    base = Recipe()
    args.recipe = Recipe(
        train_steps=args.train_steps or (300 if q else base.train_steps),
        lr=args.lr if args.lr is not None else base.lr,
        rollout_steps=args.rollout_steps if args.rollout_steps is not None else base.rollout_steps,
        weight_decay=args.weight_decay if args.weight_decay is not None else base.weight_decay,
        patience_frac=0.0 if args.no_early_stopping else base.patience_frac,
        restore_best=not args.no_early_stopping,
    )
    return args


def _register_user_case(args, ap) -> None:
    """``--rhs``: the user's system as the case ``"user"``."""
    try:
        f = load_rhs(args.rhs)
        sampler = load_sampler(args.init) if args.init else None
        if sampler is None and not hasattr(f, "sample_initial"):
            raise ValueError("--rhs without sample_initial needs --init file.py:sample")
        y0 = sample_states(sampler, 2, 0) if sampler is not None else f.sample_initial(2)
        check_rhs(f, y0)
    except ValueError as e:
        ap.error(str(e))
    key = f"rhs:{args.rhs}"
    USER_SYSTEMS[key] = (f, sampler, args.lyapunov)
    ks = (1, 2, 4, 8, 16, 32) if args.method == "rk4" else (1, 2, 4, 8, 16, 32, 64, 128)
    CASES["user"] = Case("user", key, args.method, args.step, t_test=args.t_test,
                         t_train=args.t_train or args.t_test, spin_up=args.spin_up, fine_ks=ks,
                         rk4_ks=(1, 2, 4, 8, 16) if args.method != "rk4" else (), match=args.match,
                         why=f"your system {args.rhs}, {args.method} at h={args.step:g}")


#: fields the report reads from each kind of progress record
_RECORD_FIELDS = {
    "sweep": ("case", "entries", "coarse_time_s", "rounds"),
    "row": ("case", "corrector", "n_train", "noise", "seed", "err_match", "blowup_rate", "speedup_same",
            "speedup_same_kind", "speedup_best", "train_time_s"),
}


def _record_complete(rec: dict) -> bool:
    need = _RECORD_FIELDS.get(rec.get("kind"))
    return need is not None and all(k in rec for k in need)


def run_case(case_name: str, args, progress: Progress, run: Run, rows: list, counts: dict) -> dict[str, Any]:
    """The test set, the classical sweep and every (seed, size, noise, corrector) row of one case,
    each finished record taken from ``progress`` when it is there."""
    case = CASES[case_name]
    case_fp = _fingerprint([SCHEMA, asdict(case), args.n_test, TEST_SEED, REFERENCE_REFINE])
    recipe_fp = recipe_fingerprint(args.recipe)
    t0 = time.perf_counter()
    test = make_test_set(case, args.n_test)

    def sweep_record():
        rec = {"kind": "sweep", "case": case_name, **classical_sweep(case, test, args.rounds)}
        return {**rec, "sweep_wall_s": time.perf_counter() - t0}  # with the test set

    rec, _ = progress.run(f"sweep|{case_fp}", sweep_record)
    sweep = {k: rec.get(k) for k in ("entries", "coarse_time_s", "rounds", "sweep_wall_s")}
    run.log(f"{case_name}: test set and classical sweep ready ({time.perf_counter() - t0:.1f} s)")
    pools: dict[int, TrajectoryDataset] = {}
    for seed in args.seed_list:
        for size in args.sizes:
            for noise in args.noise:
                for corr in args.correctors:
                    if issubclass(CORRECTORS[corr][0], LocalCorrector) and make_system(case.system).lattice is None:
                        continue  # a local corrector needs a lattice (lorenz96, spring_chain)

                    def row_record():
                        if seed not in pools:
                            pools[seed] = make_training_pool(case, max(args.sizes), seed)
                        data = training_set(pools[seed], size, noise, seed)
                        t1 = time.perf_counter()
                        row = train_and_score(case, corr, data, test, sweep, args.recipe, seed, args.row_rounds)
                        return {"kind": "row", "case": case_name, "system": case.system, "method": case.method,
                                "step": case.step, "corrector": corr, "n_train": size, "noise": noise, "seed": seed,
                                "recipe": recipe_fp, **row, "row_wall_s": time.perf_counter() - t1}

                    rec, new = progress.run(f"row|{case_fp}|{recipe_fp}|{corr}|{size}|{noise!r}|{seed}", row_record)
                    rows.append(rec)
                    counts["computed" if new else "resumed"] += 1
                    if new:
                        run.log(f"{case_name} {corr:13s} n={size:<3d} noise={noise:<6g} seed={seed}: "
                                f"err={rec['err_match']:.3g} blow-up={rec['blowup_rate']:.2f} "
                                f"speed-up same={_f(rec['speedup_same'])} ({rec['speedup_same_kind']}) "
                                f"best={_f(rec['speedup_best'])} train {rec['train_time_s']:.1f}s")
    return {"definition": asdict(case), "n_test": args.n_test, "test_seed": TEST_SEED, "limit": test.limit,
            "sweep": sweep}


def main(argv=None) -> int:
    args = parse_args(argv)
    run = Run("ode", argv, quick=args.quick, schema=SCHEMA)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(out / PROGRESS, validate=_record_complete)  # a bad record is recomputed
    rows: list[dict[str, Any]] = []
    counts = {"computed": 0, "resumed": 0}
    case_reports = {name: run_case(name, args, progress, run, rows, counts) for name in args.cases}
    report = build_report(args, run, rows, case_reports, counts)
    probes = load_probes(out / "ode_probes")
    if probes:
        report["probes"] = probes
    write_report(out, "ode", run.stamp(report, complete=True), to_markdown, None if args.no_plots else make_plots)
    run.log(f"wrote {out / 'ode.json'}, {out / 'ode.md'} in {run.elapsed() / 60:.1f} min")
    return 0


def estimate_full_minutes(args, rows, case_reports) -> float:
    """Minutes the issue's full grid would take here: per (case, corrector), the mean row time of
    this run × 4 sizes × 4 noise levels × 5 seeds, plus each case's test set and sweep.

    Larger training sets do not train longer (a fixed budget of optimiser steps), so a row's
    cost hardly depends on its size; ``--quick`` rows are scaled to the default recipe.
    """
    total = 0.0
    scale = Recipe().train_steps / args.recipe.train_steps
    for case in DEFAULT_CASES:
        if case not in case_reports:  # a case not run here: the mean of the others
            continue
        total += case_reports[case]["sweep"].get("sweep_wall_s") or 60.0
        for corr in DEFAULT_CORRECTORS:
            rs = [r for r in rows if r["case"] == case and r["corrector"] == corr and "row_wall_s" in r]
            if rs:
                t_train = float(np.mean([r["train_time_s"] for r in rs]))
                t_rest = float(np.mean([r["row_wall_s"] for r in rs])) - t_train
                total += 4 * 4 * 5 * (t_train * scale + t_rest)
    ran = [c for c in DEFAULT_CASES if c in case_reports]
    if ran:
        total *= len(DEFAULT_CASES) / len(ran)
    return total / 60


def build_report(args, run: Run, rows, case_reports, counts) -> dict[str, Any]:
    report = run.report(
        grid={"cases": list(args.cases), "sizes": args.sizes, "noise": args.noise, "seeds": args.seed_list,
              "correctors": list(args.correctors), "n_test": args.n_test, "timing_rounds": args.rounds,
              "row_timing_rounds": args.row_rounds},
        recipe=asdict(args.recipe),
        constants={"test_seed": TEST_SEED, "train_seed_base": TRAIN_SEED, "reference_refine": REFERENCE_REFINE,
                   "train_refine": TRAIN_REFINE, "blow_up_factor": BLOW_UP_FACTOR, "vpt_threshold": VPT_THRESHOLD,
                   "mape_floor": MAPE_FLOOR, "horizons": dict(HORIZONS)},
        rows_computed=counts["computed"], rows_resumed=counts["resumed"],
        estimated_full_minutes=estimate_full_minutes(args, rows, case_reports),
        compute_minutes=(sum(r.get("row_wall_s", r["train_time_s"]) for r in rows)
                         + sum(c["sweep"].get("sweep_wall_s") or 0.0 for c in case_reports.values())) / 60,
        cases=case_reports, rows=rows)
    report["aggregates"] = aggregate(rows)
    report["verdicts"] = verdicts(report)
    noise_levels = sorted(set(args.noise) | {1e-3, 1e-2, 5e-2})
    report["target_snr"] = {case: target_snr(CASES[case], noise_levels) for case in args.cases}
    return report


if __name__ == "__main__":
    sys.exit(main())
