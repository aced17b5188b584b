"""The end-of-fit check: the validation rollout of the corrected solver against the
uncorrected one, the zero correction's loss, the residual-to-noise ratio of the targets, and
warnings in plain words (:class:`~.history.FitCheckWarning`)."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..correctors import Corrector
from ..integrate import solve
from .arguments import check_data
from .history import FitCheckWarning, FitHistory, format_ratio
from .loss import correlation_error
from .targets import classical_steps

__all__ = ["check_result", "residual_to_noise"]

#: trajectories used by the end-of-fit check (enough for a stable mean, cheap to roll out)
_CHECK_MAX_TRAJ = 64
#: corrected / classical rollout error above this counts as worse (noise in the ratio below it)
_WORSE_RATIO = 1.05
#: best loss above this fraction of the zero correction's: nothing meaningful learned
_NOTHING_LEARNED = 0.9


def check_result(corrector: Corrector, data, f, args: dict[str, Any], history: FitHistory,
                 speak: bool, autonomous: bool) -> dict[str, Any]:
    """Validation rollout of the corrected vs the uncorrected solver, the zero-correction loss
    and the residual-to-noise ratio of the targets; warnings in plain words (issued as
    :class:`FitCheckWarning` when ``speak``)."""
    args = _as_monitored(args, history)
    dt, m = check_data(data, corrector, args)
    n = len(data)
    if args["val_fraction"] > 0 and n >= 2:
        n_val = max(1, round(args["val_fraction"] * n))
        train_data, part = data.split([n - n_val, n_val], seed=args["seed"])
        which = "validation"
    else:
        train_data = part = data
        which = "training"
    if len(part) > _CHECK_MAX_TRAJ:
        part = part.subset(list(range(_CHECK_MAX_TRAJ)))
    model = copy.deepcopy(corrector).double().eval()
    out: dict[str, Any] = {"rollout": _rollout(model, part, data, f, args, m, which)}
    # residuals of the classical step on (up to _CHECK_MAX_TRAJ) training trajectories
    sub = train_data if len(train_data) <= _CHECK_MAX_TRAJ else train_data.subset(list(range(_CHECK_MAX_TRAJ)))
    y = sub.y.to(torch.float64)
    method, h = args["method"], args["step_size"]
    is_auto = autonomous  # the same rule training used (a forced System subclass is not autonomous)
    t_sub = sub.t.double().numpy()[:-1]

    def step(x: Tensor) -> Tensor:  # the classical step(s) of one data interval from y[:, :-1]
        return classical_steps(method, f, x, t_sub, h, m, is_auto)

    r = y[:, 1:] - step(y[:, :-1])
    r = r.reshape(r.shape[0], r.shape[1], -1)
    if history.loss == "relative":  # the training loop measured it on the relative scale
        out["zero_loss"] = history.check.get("zero_loss")
    else:
        out["zero_loss"] = _zero_loss(model, part if which == "validation" else sub, f, args, m, is_auto)
    out["residual_to_noise"] = residual_to_noise(r, y, data, step)
    out["warnings"] = _warnings(out, history, method, h, which, m)
    if speak:
        for w in out["warnings"]:
            warnings.warn(w, FitCheckWarning, stacklevel=3)
    return out


def _as_monitored(args: dict[str, Any], history: FitHistory) -> dict[str, Any]:
    """``args`` with ``rollout_steps`` the window length of the best epoch (under a schedule the
    monitored loss, and so the zero correction's to compare with, is that epoch's)."""
    if not args["schedule"].scheduled or not history.best_epoch:
        return args
    return {**args, "rollout_steps": history.rollout_steps[history.best_epoch - 1]}


def _rollout(model, part, data, f, args: dict[str, Any], m: int, which: str) -> dict[str, Any]:
    """Relative L2 error of the corrected and the uncorrected solve from each trajectory's first
    observed state, up to a few horizons (in data intervals)."""
    h, method = args["step_size"], args["method"]
    obs = part.y.to(torch.float64)
    t = data.t.to(torch.float64)
    y0 = obs[:, 0].to(model.out_scale.device)
    opts = {"check_finite": False}
    with torch.no_grad():
        pred_c = solve(f, y0, t.to(y0.device), method=method, step_size=h, corrector=model,
                       options=opts).transpose(0, 1).cpu()
        pred_0 = solve(f, y0, t.to(y0.device), method=method, step_size=h, options=opts).transpose(0, 1).cpu()
    n_int = obs.shape[1] - 1
    horizons = sorted({1, max(1, n_int // 4), max(1, n_int // 2), n_int})

    def err(pred: Tensor, k: int) -> float:
        d = (pred[:, 1:k + 1] - obs[:, 1:k + 1]).reshape(len(obs), -1)
        ref = obs[:, 1:k + 1].reshape(len(obs), -1).norm(dim=1)
        e = d.norm(dim=1) / ref
        e = torch.where(torch.isfinite(e), e, torch.full_like(e, math.inf))
        return float(e.mean())

    ec = [err(pred_c, k) for k in horizons]
    e0 = [err(pred_0, k) for k in horizons]
    ratio = [c / z if z > 0 and math.isfinite(c) else (math.inf if c > 0 else 1.0) for c, z in zip(ec, e0)]
    def blown(pred: Tensor) -> int:  # trajectories whose rollout became non-finite
        return int((~torch.isfinite(pred.reshape(len(pred), -1))).any(dim=1).sum())

    return {"data": which, "n_trajectories": len(obs), "method": method, "step_size": h,
            "horizons": [k * m for k in horizons], "err_corrected": ec, "err_classical": e0,
            "blowups_corrected": blown(pred_c), "blowups_classical": blown(pred_0),
            "ratio": ratio, "against": "the observations" + (" (noisy)" if data.noise_level > 0 else "")}


def _zero_loss(model, zero_part, f, args: dict[str, Any], m: int, is_auto: bool) -> float:
    """The loss of the zero correction on ``zero_part``: the uncorrected one-step residuals or
    the uncorrected rollout over k data intervals from every observed state (the mean squared
    error, or with ``loss="correlation"`` the mean of ``1 - rho`` over the same frames)."""
    method, h = args["method"], args["step_size"]
    scale = model.output_scale(h).detach().cpu().to(torch.float64)
    yz = zero_part.y.to(torch.float64)
    if args["rollout_steps"] == 0 and m == 1:
        rz = yz[:, 1:] - classical_steps(method, f, yz[:, :-1], zero_part.t.double().numpy()[:-1], h, 1, is_auto)
        return float((rz.reshape(-1, model.state_dim) / scale).square().mean())
    tz = zero_part.t.double().numpy()
    k = max(args["rollout_steps"], 1)
    n_w = yz.shape[1] - k
    x, terms = yz[:, :n_w], []
    for j in range(1, k + 1):
        x = classical_steps(method, f, x, tz[j - 1:j - 1 + n_w], h, m, is_auto)
        d, o = (a.reshape(yz.shape[0] * n_w, 1, -1) / (m * scale) for a in (x, yz[:, j:j + n_w]))
        terms.append(correlation_error(d, o) if args.get("loss") == "correlation" else (d - o).square().mean(dim=(1, 2)))
    return float(torch.stack(terms).mean())


def _warnings(out: dict[str, Any], history: FitHistory, method: str, h: float, which: str, m: int) -> list[str]:
    """The check's findings in plain words, each with what to change."""
    roll = out["rollout"]
    ratio, horizons = roll["ratio"], roll["horizons"]
    warn: list[str] = []
    worst = max(range(len(horizons)), key=lambda i: ratio[i])
    bc, b0, n = roll.get("blowups_corrected", 0), roll.get("blowups_classical", 0), roll["n_trajectories"]
    if bc or b0:
        warn.append(
            f"rollouts blow up (become infinite) on the {which} trajectories: the corrected one on {bc} of {n}, "
            f"the uncorrected {method} h={h:g} on {b0} of {n}"
            + (": the coarse step is outside the method's stability region on some states; use a smaller step "
               "or check the data's states" if b0 else ": the corrector destabilises the solve; train with a "
               "rollout loss (rollout_steps=4 or more) or a smaller step")
        )
    elif ratio[worst] > _WORSE_RATIO:
        warn.append(
            f"the corrected rollout is WORSE than the uncorrected {method} h={h:g} on the {which} trajectories "
            f"(error {format_ratio(ratio[worst])} the classical one up to {horizons[worst]} steps): this corrector "
            "makes the solve less accurate. Train with a rollout loss (rollout_steps=4 or more), more data or "
            "another step, and measure with attsolver.compare before using it"
        )
    zero = out["zero_loss"]
    if zero is not None and math.isfinite(history.best_loss) and history.best_loss > _NOTHING_LEARNED * zero:
        warn.append(
            f"the loss ({history.best_loss:.3g}) did not fall meaningfully below the zero correction's "
            f"({zero:.3g}): the corrector learned (almost) nothing. Check the noise (below), train longer or "
            "with another lr, or use a coarser step whose error is worth learning"
        )
    rn = out["residual_to_noise"]
    if rn.get("ratio") is not None and rn["ratio"] < 1.0:
        size = "less than 0.01x" if rn["ratio"] < 0.01 else f"about {rn['ratio']:.2g}x"
        warn.append(
            f"the one-step targets are noise-dominated: the classical step's residual is {size} the observation "
            f"noise it is fitted through ({rn['how']}), so the corrector mostly fits noise. Use a coarser step "
            "(the residual grows like h^(p+1)), a rollout loss (rollout_steps=k averages the noise over k steps), "
            "or more or cleaner data"
        )
    return warn


def residual_to_noise(r: Tensor, y: Tensor, data, step: Callable[[Tensor], Tensor]) -> dict[str, Any]:
    """RMS of the classical step's clean residual over the RMS that observation noise adds to a
    target, from the residuals ``r [n, nt-1, D]`` of the observed data ``y [n, nt, *state]``
    (``step`` applies the classical step(s) of one data interval to ``y[:, :-1]``).

    A target ``r_n = y_{n+1} - Phi(y_n)`` carries the clean residual ``c_n`` plus the noise
    ``e_{n+1} - (Phi(y_n + e_n) - Phi(y_n))``, independent of ``c_n``, so ``mean r^2 = C + N``.
    With a known relative noise level ``sigma`` (noise ``sigma`` times each component's spread,
    docs/guide/data.md) ``N`` is measured by pushing a fresh draw of such noise through ``Phi``.
    Unknown, it is estimated from the autocovariances ``g_k`` of successive residuals: the noise
    part ``e_{n+1} - e_n`` (``Phi ~ I``) has ``g_0 = 2 s^2``, ``g_1 = -s^2``, ``g_2 = 0``, while
    a smooth clean residual has ``g_k ~ C (1 - a k^2)``; ``3 g_0 - 4 g_1 + g_2 = 10 s^2``
    cancels the clean part to second order.
    """
    ms = float(r.square().mean())
    if data.noise_level > 0:
        spread = data.y.reshape(data.y.shape[0] * data.y.shape[1], -1).std(dim=0, correction=0).to(torch.float64)
        gen = torch.Generator().manual_seed(0)
        x = y[:, :-1]
        e = data.noise_level * spread.reshape(x.shape[2:]) * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        pushed = float((step(x + e) - step(x)).square().mean())
        noise_ms = data.noise_level ** 2 * float(spread.square().mean()) + pushed
        how = f"from the recorded noise level {data.noise_level:g}"
    elif bool(data.config.get("noise_level_known", True)):
        return {"ratio": None, "how": "clean data (noise_level 0)"}
    else:
        if r.shape[1] < 4:
            return {"ratio": None, "how": "too few times to estimate the noise"}
        g0 = ms
        g1 = float((r[:, :-1] * r[:, 1:]).mean())
        g2 = float((r[:, :-2] * r[:, 2:]).mean())
        s2 = max((3 * g0 - 4 * g1 + g2) / 10.0, 0.0)
        noise_ms = 2 * s2
        how = "noise estimated from the autocovariance of successive residuals (no noise level recorded)"
    clean_ms = max(ms - noise_ms, 0.0)
    ratio = math.inf if noise_ms == 0 else math.sqrt(clean_ms / noise_ms)
    return {"ratio": ratio if math.isfinite(ratio) else None, "how": how, "residual_rms": math.sqrt(ms),
            "noise_rms": math.sqrt(noise_ms)}

