"""A stiff family: Kværnø's ESDIRK 5(4) pair, adaptive (``"kvaerno5"``) and fixed-step
(``"kvaerno5_fixed"``, the one a learned corrector attaches to).

The method (A. Kværnø, BIT 44, 2004): seven stages, the first explicit, the other six
implicit with one diagonal ``gamma = 0.26``; stiffly accurate (``y_{n+1}`` is the last stage),
L-stable, order 5 with an embedded order-4 solution for the error estimate.  Coefficients
as published (also in diffrax's ``Kvaerno5``), written out below as data.

Batched: the first dimension of a ``y0`` with two or more dimensions is the batch; each
sample's Jacobian ``J_b = d f_b / d y_b`` comes from autograd (``torch.func.jacrev``), so
``f`` must not couple the samples (``options={"coupled": True}`` treats the whole state as
one sample).  Every stage is a nonlinear system ``z = r + h gamma f(t, z)`` solved by
simplified Newton with one LU of ``I - h gamma J`` per step (all stages share ``gamma``).

Gradients go through the implicit function theorem, not through Newton's iterations: the
stage value ``z*`` found without a graph is re-attached as
``z = P(z* + [r + h gamma f(t, z*)] - stop_grad[...])``, where ``P`` (:class:`_StageAdjoint`)
is the identity forward and solves ``(I - h gamma J(z*))^T w = g`` backward.  So
``dz = (I - h gamma J)^{-1} (dr + h gamma df/dtheta)``, the IFT derivative, with the values
exactly Newton's.

Adaptive steps: an error estimate filtered by the step's LU (Shampine's filter, as in
Radau5), a PI controller (Gustafsson/Söderlind ``beta = (0.7, 0.4) / 5``), all samples in
lock-step (the largest error in the batch decides).  A step whose Newton iteration fails
(diverges or does not converge in ``newton_iters``) is rejected and retried at a quarter of
its size; after ``max_rejects`` such failures in a row the solve stops with an error that
names the time and the sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._validate import boolean, positive_int, positive_number
from ._errors import StepSizeUnderflow
from .base import Stepper
from .embedded import HERMITE, StepData, hold_after_stop
from .registry import FIXED_OPTIONS, MethodSpec, register_method

__all__ = ["KVAERNO5", "NewtonFailure", "NotDifferentiableError", "ESDIRKStepper", "esdirk_solve"]

_G = 0.26
#: Kværnø 5(4): lower-triangular stage matrix (diagonal gamma from stage 2 on), weights,
#: embedded weights (the sixth stage's row), nodes; and the predictors of each stage's
#: slope from the previous ones (affine combinations, rows sum to 1).
KVAERNO5 = {
    "a": (
        (),
        (_G,),
        (0.13, 0.84033320996790809),
        (0.22371961478320505, 0.47675532319799699, -0.06470895363112615),
        (0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998),
        (0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676),
        (0.13659751177640291, 0.0, -0.05496908796538376, -0.04118626728321046, 0.62993304899016403,
         0.06962479448202728),
    ),
    "gamma": _G,
    "c": (0.0, 0.52, 1.230333209967908, 0.8957659843500759, 0.43639360985864756, 1.0, 1.0),
    "predict": (
        (),
        (1.0,),
        (-1.366025403784441, 2.3660254037844357),
        (-0.19650552613122207, 0.8113579546496623, 0.38514757148155954),
        (0.10375304369958693, 0.937994698066431, -0.04174774176601781, 0.0),
        (-0.17281112873898072, 0.6235784481025847, 0.5492326806363959, 0.0, 0.0),
        (0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676, _G),
    ),
    "order": 5,
    "embedded_order": 4,
}
# b = last row with gamma; bhat = sixth row with gamma; stiffly accurate: y_{n+1} = z_7
_B = KVAERNO5["a"][6] + (_G,)
_BHAT = KVAERNO5["a"][5] + (_G, 0.0)
_B_ERR = tuple(b - bh for b, bh in zip(_B, _BHAT))

#: Newton: stop when the (tolerance-scaled) update, times theta / (1 - theta), is below this
NEWTON_KAPPA = 1e-2
DEFAULT_NEWTON_ITERS = 10
DEFAULT_MAX_REJECTS = 20


class NewtonFailure(ArithmeticError):
    """Newton's iteration for an implicit stage did not converge, step after step.
    ``time``: the time of the step's start; ``sample``: the batch index that failed."""

    def __init__(self, message: str, *, time: float, sample: int):
        super().__init__(message)
        self.time = time
        self.sample = sample


class NotDifferentiableError(TypeError):
    """``f`` cannot be differentiated by autograd, which an implicit method needs."""


# --------------------------------------------------------------------------- batched views


class _Batched:
    """``f`` on a ``[B, d]`` view of the state, with its per-sample Jacobian ``[B, d, d]``."""

    def __init__(self, f: Callable, y0: Tensor, coupled: bool):
        if y0.is_complex():
            raise TypeError("the implicit methods need a real state; solve the real system [Re y, Im y] instead")
        self.f, self.shape = f, y0.shape
        self.B = 1 if coupled or y0.dim() < 2 else y0.shape[0]
        self.d = y0.numel() // self.B
        self._loop_jac = False

    def view(self, y: Tensor) -> Tensor:
        return y.reshape(self.B, self.d)

    def __call__(self, t, Y: Tensor) -> Tensor:
        return self.f(t, Y.reshape(self.shape)).reshape(self.B, self.d)

    def jacobian(self, t, Y: Tensor) -> Tensor:
        """``J[b] = d f(t, Y)[b] / d Y[b]`` without a graph (the samples do not couple)."""
        Y = Y.detach()
        if not self._loop_jac:
            try:
                J = torch.func.jacrev(lambda v: self(t, v).sum(0))(Y)  # [d, B, d]
                return J.permute(1, 0, 2)
            except Exception:  # noqa: BLE001 — f not vmap-able (e.g. in-place ops): plain autograd
                self._loop_jac = True
        try:
            with torch.enable_grad():
                v = Y.clone().requires_grad_(True)
                out = self(t, v)
                rows = [torch.autograd.grad(out[:, i].sum(), v, retain_graph=i + 1 < self.d, allow_unused=True)[0]
                        for i in range(self.d)]
        except RuntimeError as e:
            raise NotDifferentiableError(
                f"the implicit methods need f's Jacobian from autograd, and differentiating f failed ({e}); "
                "write f with torch operations only (no NumPy, no .item(), no detach), or use an explicit or "
                "SciPy method (e.g. method='scipy_radau')") from None
        rows = [torch.zeros_like(Y) if r is None else r for r in rows]
        return torch.stack(rows, dim=1)


def _check_differentiable(F: _Batched, t, Y: Tensor) -> None:
    """A clear error when ``f`` cannot give its Jacobian (NumPy inside, a detached output)."""
    J = F.jacobian(t, Y)
    if not bool(torch.isfinite(J).all()):
        raise ValueError("f's Jacobian at the initial state is not finite; check f near y0")


class _StageAdjoint(torch.autograd.Function):
    """Identity forward; backward ``w = (I - hg J(z*))^{-T} g`` with ``J`` taken at the stage
    value ``z*`` (the implicit function theorem's derivative of a stage)."""

    @staticmethod
    def forward(ctx, x, z_star, t, hg, F):
        ctx.save_for_backward(z_star)
        ctx.t, ctx.hg, ctx.F = t, hg, F
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        (z_star,) = ctx.saved_tensors
        F = ctx.F
        J = F.jacobian(ctx.t, z_star)
        hg = ctx.hg.unsqueeze(-1) if isinstance(ctx.hg, Tensor) else ctx.hg
        M = torch.eye(F.d, dtype=J.dtype, device=J.device) - hg * J
        w = torch.linalg.solve(M.transpose(-1, -2), g.unsqueeze(-1)).squeeze(-1)
        return w, None, None, None, None


def _attach(F: _Batched, t, z: Tensor, r: Tensor, hg: float) -> Tensor:
    """``z`` (Newton's value, no graph) with the IFT derivative with respect to ``r`` and ``f``'s parameters."""
    g = r + hg * F(t, z)
    if not g.requires_grad:
        return z
    return _StageAdjoint.apply(z + (g - g.detach()), z, t, hg, F)


# --------------------------------------------------------------------------- one step


def _rms(x: Tensor) -> Tensor:
    return x.square().mean(-1).sqrt()


def _newton(F: _Batched, t, r: Tensor, z: Tensor, hg, lu, scale: Tensor, iters: int):
    """Simplified Newton for ``z = r + hg F(t, z)``, per sample: ``(z, failed [B] bool)``.
    A sample stops when converged or failed; the others go on."""
    prev = None
    done = torch.zeros(F.B, dtype=torch.bool, device=z.device)
    failed = done.clone()
    for _ in range(iters):
        res = r + hg * F(t, z) - z
        dz = torch.linalg.lu_solve(lu[0], lu[1], res.unsqueeze(-1)).squeeze(-1)
        stop = done | failed
        dz = torch.where(stop.unsqueeze(-1), torch.zeros_like(dz), dz)
        z = z + dz
        nrm = _rms(dz / scale)
        bad = ~torch.isfinite(nrm)
        nrm = torch.where(bad, torch.full_like(nrm, math.inf), nrm)
        if prev is None:
            conv = nrm <= NEWTON_KAPPA
        else:
            theta = nrm / prev.clamp_min(1e-300)
            bad = bad | ((theta >= 1.0) & (nrm > NEWTON_KAPPA))
            conv = ((theta < 1.0) & (nrm * theta / (1.0 - theta).clamp_min(1e-300) <= NEWTON_KAPPA)) | (nrm <= 1e-12)
        failed = failed | (bad & ~stop)
        done = done | (conv & ~failed)
        if bool((done | failed).all()):
            return z, failed
        prev = nrm
    return z, failed | ~done


def esdirk_step(F: _Batched, times: Callable, Y: Tensor, K1: Tensor, h: Tensor, J: Tensor, rtol, atol,
                iters: int, track: bool):
    """One Kværnø 5(4) step from ``Y`` (``[B, d]``; ``K1 = f(t0, Y)``; ``h``: ``[B, 1]``,
    each sample's step; ``times(c)``: the time ``t0 + c h`` as ``f`` takes it).

    Returns ``(Y_new, K_last, err [B, d] (filtered), failed [B] bool)``; ``track``: attach
    the IFT derivatives (gradients enabled and something requires grad)."""
    tab = KVAERNO5
    hg = h * tab["gamma"]
    eye = torch.eye(F.d, dtype=Y.dtype, device=Y.device)
    lu = torch.linalg.lu_factor(eye - hg.unsqueeze(-1) * J)
    scale = atol + rtol * Y.detach().abs()
    Ks = [K1]
    z = Y
    failed = torch.zeros(F.B, dtype=torch.bool, device=Y.device)
    for i in range(1, 7):
        ti = times(tab["c"][i])
        r = Y
        for a, k in zip(tab["a"][i], Ks):
            if a != 0.0:
                r = r + (h * a) * k
        guess = sum(p * k.detach() for p, k in zip(tab["predict"][i], Ks) if p != 0.0)
        r0 = r.detach()
        with torch.no_grad():
            z, bad = _newton(F, ti, r0, r0 + hg * guess, hg, lu, scale, iters)
        failed = failed | bad
        if track:
            z = _attach(F, ti, z, r, hg)
        Ks.append((z - r) / hg)
    err = sum((h * e) * k.detach() for e, k in zip(_B_ERR, Ks) if e != 0.0)
    err = torch.linalg.lu_solve(lu[0], lu[1], err.unsqueeze(-1)).squeeze(-1)
    return z, Ks[-1], err, failed


# --------------------------------------------------------------------------- adaptive solve


def _options(options: dict):
    opts = dict(options)
    rtol = float(opts.pop("rtol", 1e-6))
    atol = float(opts.pop("atol", 1e-9))
    opts.pop("check_finite", None)
    out = {
        "rtol": rtol, "atol": atol,
        "iters": positive_int("options['newton_iters']", opts.pop("newton_iters", DEFAULT_NEWTON_ITERS)),
        "rejects": positive_int("options['max_rejects']", opts.pop("max_rejects", DEFAULT_MAX_REJECTS)),
        "max_steps": positive_int("options['max_num_steps']", opts.pop("max_num_steps", 100_000)),
        "coupled": boolean("options['coupled']", opts.pop("coupled", False)),
        "per_sample": boolean("options['per_sample']", opts.pop("per_sample", False)),
        "first": opts.pop("first_step", None),
        "max_step": positive_number("options['max_step']", opts.pop("max_step", math.inf), allow_inf=True),
    }
    if out["first"] is not None:
        out["first"] = positive_number("options['first_step']", out["first"])
    return out


def _first_step(Y: Tensor, K: Tensor, rtol: float, atol: float) -> Tensor:
    """Per sample: ``0.01 |y| / |f|`` in the tolerance's scale (Hairer's first guess)."""
    scale = atol + rtol * Y.abs()
    d0, d1 = _rms(Y / scale), _rms(K / scale)
    h = 0.01 * d0 / d1.clamp_min(1e-300)
    return torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(h, 1e-6), h)


def _newton_error(t, h, failed, rejects):
    sample = int(torch.nonzero(failed)[0, 0])
    return NewtonFailure(
        f"Newton's iteration for the implicit stages did not converge for sample {sample} at t={t:.6g} "
        f"after {rejects} step reductions (last step {h:.3g}): f may be non-smooth or blow up there; "
        "check f near that time, or raise options['max_rejects'] / options['newton_iters']",
        time=t, sample=sample)


def _controller(err: Tensor, err_prev: Tensor, k: int) -> Tensor:
    """The PI step-size factor (Gustafsson/Söderlind), per sample, in [0.2, 10]."""
    fac = 0.9 * err.clamp_min(1e-10) ** (-0.7 / k) * err_prev ** (0.4 / k)
    return fac.clamp(0.2, 10.0)


def _time_grid(t: Tensor, B: int) -> Tensor:
    """The output times per sample, float64 ``[B, n_t]``; each row strictly monotone."""
    tt = t.detach().cpu().double()
    tt = tt.expand(B, -1) if tt.dim() == 1 else tt
    if tt.shape[0] != B:
        raise ValueError(f"t has {tt.shape[0]} rows but the batch has {B} samples; give t of shape [n_t] or [batch, n_t]")
    if tt.shape[1] > 1:
        step = tt[:, 1:] - tt[:, :-1]
        sign = torch.sign(tt[:, -1:] - tt[:, :1])
        bad = ((step * sign) <= 0).any(1) | (sign[:, 0] == 0)
        if bool(bad.any()):
            b = int(torch.nonzero(bad)[0, 0])
            raise ValueError(f"t[{b}] (the output times of sample {b}) is not strictly monotone; sort that row")
    return tt.contiguous()


class _Control:
    """The per-sample step-size state of an adaptive solve (float64, ``[B]`` each)."""

    def __init__(self, grid: Tensor, h0: Tensor, o: dict):
        self.grid, self.o = grid, o
        self.B, self.n_t = grid.shape
        self.cur = grid[:, 0].clone()
        self.dir = torch.sign(grid[:, -1] - grid[:, 0])
        self.dir[self.dir == 0] = 1.0
        self.h_abs = h0.clamp(max=o["max_step"])
        self.err_prev = torch.ones(self.B, dtype=torch.float64)
        self.fails = torch.zeros(self.B, dtype=torch.int64)
        self.idx = torch.ones(self.B, dtype=torch.int64)  # the next output of each sample
        self.steps = 0

    def proposal(self):
        """Each sample's signed step and whether it lands on its next output time."""
        active = self.idx < self.n_t
        target = self.grid.gather(1, self.idx.clamp(max=self.n_t - 1).unsqueeze(1)).squeeze(1)
        left = (target - self.cur).abs()
        lands = self.h_abs >= left * (1 - 1e-12)
        h = torch.where(lands, left, torch.where(self.h_abs > 0.5 * left, 0.5 * left, self.h_abs))
        h = torch.where(active, h, torch.ones_like(h) * 1e-3)  # finished samples idle on a harmless step
        return self.dir * h, lands & active, target, active

    def update(self, h, lands, target, active, e, failed) -> Tensor:
        """Accept/reject per sample (all at once in lock-step); returns the accepted mask."""
        o, k = self.o, KVAERNO5["embedded_order"] + 1
        e = torch.where(failed | ~torch.isfinite(e), torch.full_like(e, math.inf), e)
        if not o["per_sample"]:  # lock-step: the largest error and any failure decide for all
            e = torch.where(active, e, torch.zeros_like(e)).max().expand(self.B)
            failed = failed.any().expand(self.B)
        acc = active & (e <= 1.0)
        fac = torch.where(failed, torch.full_like(e, 0.25), _controller(e, self.err_prev, k))
        fac = torch.where(acc, fac, fac.clamp(max=1.0))
        self.fails = torch.where(failed & active, self.fails + 1, torch.zeros_like(self.fails))
        self.h_abs = torch.where(active, (h.abs() * fac).clamp(max=o["max_step"]), self.h_abs)
        self.err_prev = torch.where(acc, e.clamp_min(1e-4), self.err_prev)
        self.cur = torch.where(acc, torch.where(lands, target, self.cur + h), self.cur)
        if not o["per_sample"]:
            self.h_abs = self.h_abs[active].min().expand(self.B).clone() if bool(active.any()) else self.h_abs
        return acc

    def check(self, h, failed):
        o = self.o
        self.steps += 1
        if self.steps > o["max_steps"]:
            raise RuntimeError(
                f"kvaerno5 took {o['max_steps']} steps (accepted and rejected) and reached only "
                f"t={float(self.cur.min()):.6g} in its slowest sample; loosen rtol/atol or raise "
                "options['max_num_steps']")
        over = self.fails > o["rejects"]
        if bool(over.any()):
            b = int(torch.nonzero(over)[0, 0])
            raise _newton_error(float(self.cur[b]), float(h[b]), over, o["rejects"])
        tiny = self.h_abs < 1e-14 * self.cur.abs().clamp_min(1.0)
        if bool((tiny & (self.idx < self.n_t)).any()):
            b = int(torch.nonzero(tiny)[0, 0])
            when = float(self.cur[b])
            raise StepSizeUnderflow(f"kvaerno5's step size underflowed near t={when:.6g} in sample {b}: its solution "
                                    "most likely leaves f's domain or blows up there", time=when)


def esdirk_solve(f: Callable, y0: Tensor, t: Tensor, options: dict, watch: Callable | None = None) -> Tensor:
    """The adaptive Kværnø 5(4) solve: ``[n_t, *y0.shape]`` at the output times (each
    reached by a step that ends on it).  ``options["per_sample"]``: each sample its own step
    size (``f`` then gets ``t`` shaped ``[B, 1, ...]``, broadcastable against ``y``).
    ``watch``: an event watcher, as :func:`attsolver.steppers.embedded.erk_solve` takes one
    (its steps carry the cubic Hermite dense output and ``restep``)."""
    o = _options(options)
    F = _Batched(f, y0, o["coupled"])
    grid = _time_grid(t, F.B)
    per = o["per_sample"] or grid.dim() == 2 and t.dim() == 2
    o["per_sample"] = per
    tshape = (F.B,) + (1,) * (y0.dim() - 1)
    ref = [0]  # lock-step: a live sample, whose time is the batch's
    as_t = ((lambda v: v.to(y0.dtype).reshape(tshape)) if per else (lambda v: v[ref[0]].to(y0.dtype)))
    Y = F.view(y0)
    ctl = _Control(grid, torch.zeros(F.B, dtype=torch.float64), o)
    _check_differentiable(F, as_t(ctl.cur), Y)
    K = F(as_t(ctl.cur), Y)
    track = torch.is_grad_enabled() and (K.requires_grad or Y.requires_grad)
    h0 = _first_step(Y.detach(), K.detach(), o["rtol"], o["atol"]).double() if o["first"] is None else \
        torch.full((F.B,), o["first"], dtype=torch.float64)
    ctl.h_abs = (h0 if per else h0.min().expand(F.B).clone()).clamp(max=o["max_step"])
    rows = [Y] + [Y] * (ctl.n_t - 1)
    while bool((ctl.idx < ctl.n_t).any()):
        h, lands, target, active = ctl.proposal()
        h_col = h.to(y0.dtype).unsqueeze(1)
        cur = ctl.cur
        J = F.jacobian(as_t(cur), Y)
        Yn, Kn, err, failed = esdirk_step(F, lambda c: as_t(cur + c * h), Y, K, h_col, J, o["rtol"], o["atol"],
                                          o["iters"], track)
        scale = o["atol"] + o["rtol"] * torch.maximum(Y.detach().abs(), Yn.detach().abs())
        acc = ctl.update(h, lands, target, active, _rms(err / scale).double(), failed & active)
        ctl.check(h, failed & active)
        stop = None if watch is None else watch(StepData(
            HERMITE, cur, h, Y, Yn, [K], acc, Kn, _restepper(F, cur, Y, K, J, o, track, per, as_t)))
        a = acc.unsqueeze(1)
        Y, K = torch.where(a, Yn, Y), torch.where(a, Kn, K)
        landed = acc & lands if stop is None else acc & lands & ~stop[0]
        for j in torch.unique(ctl.idx[landed]).tolist():
            m = (landed & (ctl.idx == j)).unsqueeze(1)
            rows[j] = torch.where(m, Y, rows[j])
        ctl.idx = ctl.idx + landed.long()
        if stop is not None and bool(stop[0].any()):
            ctl.idx = hold_after_stop(rows, ctl.idx, ctl.n_t, stop[0], stop[2])
            ref[0] = int(torch.nonzero(ctl.idx < ctl.n_t)[0, 0]) if bool((ctl.idx < ctl.n_t).any()) else 0
    return torch.stack([r.reshape(y0.shape) for r in rows])


def _restepper(F: _Batched, cur: Tensor, Y: Tensor, K: Tensor, J: Tensor, o: dict, track: bool, per: bool, as_t):
    """``restep(h, rows)`` for an event watcher: the step again from ``(cur, Y)`` with the
    signed steps ``h`` (lock-step: one row at a time, the batch having one time)."""

    def restep(h: Tensor, rows: Tensor):
        on = track and torch.is_grad_enabled()
        hc = h.to(Y.dtype).unsqueeze(1)
        if per:
            Yn, Kn, _, _ = esdirk_step(F, lambda c: as_t(cur + c * h), Y, K, hc, J, o["rtol"], o["atol"], o["iters"],
                                       on)
            return Yn, Kn
        y_end, f_end = torch.zeros_like(Y), torch.zeros_like(Y)
        for b in torch.nonzero(rows).flatten().tolist():
            Yn, Kn, _, _ = esdirk_step(F, lambda c: (cur[b] + c * h[b]).to(Y.dtype), Y, K, hc[b].expand_as(hc), J,
                                       o["rtol"], o["atol"], o["iters"], on)
            m = (torch.arange(F.B, device=Y.device) == b).unsqueeze(1)
            y_end, f_end = torch.where(m, Yn, y_end), torch.where(m, Kn, f_end)
        return y_end, f_end

    return restep


# --------------------------------------------------------------------------- fixed steps


class ESDIRKStepper(Stepper):
    """Kværnø 5(4) at fixed steps (its embedded estimate unused): the stepper a learned
    corrector attaches to.  A stage whose Newton iteration fails is an error naming the
    time and the sample (a fixed step cannot be reduced).

    Args:
        f: the right-hand side ``f(t, y)``, differentiable by autograd.
        y0: the initial state (its shape fixes the batch view).
        newton_iters, rtol, atol: Newton's iteration cap and the scale of its stopping test.
        coupled: treat the whole state as one sample (``f`` couples the batch).
    """

    order = 5
    nodes = KVAERNO5["c"]
    time_differentiable = False
    compile_helps = False

    def __init__(self, f, y0: Tensor, *, fast_path: bool = True, newton_iters: int = DEFAULT_NEWTON_ITERS,
                 rtol: float = 1e-10, atol: float = 1e-12, coupled: bool = False):
        super().__init__(f, fast_path=fast_path)
        self.F = _Batched(f, y0, coupled)
        self.iters, self.rtol, self.atol = newton_iters, rtol, atol
        self._checked = False

    def step(self, ts, state, h):
        F = self.F
        Y = F.view(state)
        if not self._checked:
            _check_differentiable(F, ts[0], Y)
            self._checked = True
        K = F(ts[0], Y)
        track = torch.is_grad_enabled() and (K.requires_grad or Y.requires_grad)
        J = F.jacobian(ts[0], Y)
        t0 = ts[0]
        h_col = torch.full((F.B, 1), float(h), dtype=Y.dtype, device=Y.device)
        Yn, _, _, failed = esdirk_step(F, lambda c: t0 + c * h, Y, K, h_col, J, self.rtol, self.atol, self.iters,
                                       track)
        if bool(failed.any()):
            raise _newton_error(float(t0), float(h), failed, 0)
        return Yn.reshape(state.shape)


register_method(MethodSpec(
    name="kvaerno5", kind="adaptive", order=5,
    description="Kværnø ESDIRK 5(4), L-stable, adaptive, batched Newton (stiff problems; autograd)",
    run=esdirk_solve,
    options=frozenset({"rtol", "atol", "check_finite", "first_step", "max_step", "max_num_steps",
                       "newton_iters", "max_rejects", "coupled", "per_sample"}),
    needs="f differentiable by autograd (its Jacobian comes from torch.func)",
    ladders=("stiff",),  # compare's implicit ladder, on problems detected or declared stiff
))
register_method(MethodSpec(
    name="kvaerno5_fixed", kind="fixed", order=5,
    description="Kværnø ESDIRK 5(4) at fixed steps, L-stable (stiff problems; takes a corrector)",
    build=lambda f, y0, **kw: ESDIRKStepper(f, y0, **kw), options=FIXED_OPTIONS,
    needs="f differentiable by autograd (its Jacobian comes from torch.func)",
))
