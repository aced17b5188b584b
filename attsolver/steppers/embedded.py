"""Explicit embedded Runge–Kutta pairs run as one batch with per-sample step-size control.

torchdiffeq's ``dopri5``/``dopri8`` advance a batch in lock-step (one step size for the whole
state).  :func:`erk_solve` runs the same pairs with a step size, an accept/reject decision and
a time of its own for every sample (torchode's idea): finished samples are masked out, and a
sample that needs small steps no longer slows the others.  With ``shared=True`` the batch
keeps one time and one step (the largest error of the active samples decides), as a lock-step
solver does; that is the mode an event solve with a 1-D ``t`` uses.

Dense output, one step's interpolant ``y(t_n + θ h)``, ``θ ∈ [0, 1]``:

* ``dopri5``: Dormand and Prince's continuous extension of order 4 (Hairer, Nørsett and
  Wanner, *Solving ODEs I*, II.6; the coefficients of ``DOPRI5``'s ``CONTD5``): local error
  ``O(h^5)``, the order of the step's own embedded estimate.  Outputs are interpolated, so the
  steps are not shortened to land on them.
* ``dopri8``: the cubic Hermite interpolant through ``(y_n, f_n)``, ``(y_{n+1}, f_{n+1})``
  (local error ``O(h^4)``).  It is far less accurate than the 8th-order steps, so outputs are
  reached by steps that end on them, and an event located on it is polished on the step
  itself (see :mod:`attsolver.integrate.events_adaptive`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor

from ._errors import StepSizeUnderflow

__all__ = ["HERMITE", "EmbeddedPair", "StepData", "erk_solve", "get_pair", "hold_after_stop"]


@dataclass(frozen=True)
class EmbeddedPair:
    """An explicit RK pair: nodes ``c``, rows ``a``, weights ``b`` (the propagated solution),
    ``e = b - b̂`` (the error estimate), the exponent order ``q`` of the controller
    (``h_new = h · safety · err^(-1/q)``), and the dense output (``"dopri5"`` or ``"hermite"``)."""

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    q: int
    dense: str

    @property
    def fsal(self) -> bool:
        """The last stage is ``f(t + h, y_{n+1})``: reused as the next step's first."""
        return self.c[-1] == 1.0 and self.b[-1] == 0.0 and tuple(self.a[-1]) == tuple(self.b[:-1])


def _fr(*xs) -> tuple[float, ...]:
    return tuple(float(Fraction(x)) for x in xs)


_DOPRI5 = EmbeddedPair(
    "dopri5",
    c=_fr(0, "1/5", "3/10", "4/5", "8/9", 1, 1),
    a=((), _fr("1/5"), _fr("3/40", "9/40"), _fr("44/45", "-56/15", "32/9"),
       _fr("19372/6561", "-25360/2187", "64448/6561", "-212/729"),
       _fr("9017/3168", "-355/33", "46732/5247", "49/176", "-5103/18656"),
       _fr("35/384", 0, "500/1113", "125/192", "-2187/6784", "11/84")),
    b=_fr("35/384", 0, "500/1113", "125/192", "-2187/6784", "11/84", 0),
    e=tuple(float(Fraction(x) - Fraction(y)) for x, y in zip(
        ("35/384", 0, "500/1113", "125/192", "-2187/6784", "11/84", 0),
        ("5179/57600", 0, "7571/16695", "393/640", "-92097/339200", "187/2100", "1/40"))),
    q=5, dense="dopri5")

#: the order-4 continuous extension of DOPRI5: ``r5 = h Σ d_j k_j``
_DOPRI5_D = _fr("-12715105075/11282082432", 0, "87487479700/32700410799", "-10690763975/1880347072",
                "701980252875/199316789632", "-1453857185/822651844", "69997945/29380423")


def _dopri8() -> EmbeddedPair:
    """torchdiffeq's ``dopri8`` (Prince and Dormand's RK8(7)13M), its coefficients read from
    torchdiffeq itself so the two solvers step with the same method."""
    from torchdiffeq._impl.dopri8 import _DOPRI8_TABLEAU as tab  # lazy: torchdiffeq loads SciPy (~0.8 s)

    c = (0.0,) + tuple(float(x) for x in tab.alpha)
    a = ((),) + tuple(tuple(float(x) for x in row) for row in tab.beta)
    return EmbeddedPair("dopri8", c=c, a=a, b=tuple(float(x) for x in tab.c_sol),
                        e=tuple(float(x) for x in tab.c_error), q=8, dense="hermite")


_PAIRS: dict[str, EmbeddedPair] = {"dopri5": _DOPRI5}

#: the dense output of a method without one of its own (``kvaerno5``): only ``dense`` is read
HERMITE = EmbeddedPair("hermite", c=(0.0,), a=((),), b=(1.0,), e=(0.0,), q=1, dense="hermite")


def get_pair(name: str) -> EmbeddedPair:
    """The pair called ``name`` (``"dopri5"`` or ``"dopri8"``)."""
    if name not in _PAIRS:
        if name != "dopri8":
            raise ValueError(f"no batched embedded pair {name!r}; choose 'dopri5' or 'dopri8'")
        _PAIRS[name] = _dopri8()
    return _PAIRS[name]


def _rms(x: Tensor) -> Tensor:
    return x.square().mean(-1).sqrt()


def _combine(base: Tensor, h: Tensor, weights, ks) -> Tensor:
    """``base + h Σ w_j k_j`` (zero weights skipped; ``h`` a ``[B, 1]`` column)."""
    acc = None
    for w, k in zip(weights, ks):
        if w != 0.0:
            acc = w * k if acc is None else acc + w * k
    return base if acc is None else base + h * acc


@dataclass
class StepData:
    """One batched step, for the output interpolation and an event watcher.

    ``cur``/``h``: float64 ``[B]``, each sample's start time and signed step; ``Y``/``Yn``:
    ``[B, d]`` the states at both ends; ``K``: the stages (``K[0] = f(t_n, y_n)``); ``f1``:
    ``f(t_{n+1}, y_{n+1})``; ``accepted``: ``[B]`` bool; ``restep(h, rows)``:
    the step again from ``Y`` with the signed steps ``h`` (float64 ``[B]``), ``(y_end, f_end)``,
    valid in the ``rows`` (``[B]`` bool) asked for."""

    pair: EmbeddedPair
    cur: Tensor
    h: Tensor
    Y: Tensor
    Yn: Tensor
    K: list
    accepted: Tensor
    f1: Tensor | None = None
    restep: Callable | None = None
    err: Tensor | None = None  # each sample's error ratio (float64 ``[B]``; accepted where <= 1)

    def interpolate(self, theta: Tensor, detach: bool = False) -> Tensor:
        """The dense output at ``θ`` (``[B]``, in ``Y``'s dtype), ``[B, d]``."""
        h = self.h.to(self.Y.dtype).unsqueeze(1)
        Y, Yn, K, f1 = self.Y, self.Yn, self.K, self.f1
        if detach:
            Y, Yn, K, f1 = Y.detach(), Yn.detach(), [k.detach() for k in K], f1.detach()
        th = theta.to(Y.dtype).unsqueeze(1)
        if self.pair.dense == "dopri5":
            ydiff = Yn - Y
            bspl = h * K[0] - ydiff
            r4 = ydiff - h * f1 - bspl
            r5 = _combine(torch.zeros_like(Y), h, _DOPRI5_D, K)
            return Y + th * (ydiff + (1 - th) * (bspl + th * (r4 + (1 - th) * r5)))
        th2, th3 = th * th, th * th * th
        return ((2 * th3 - 3 * th2 + 1) * Y + (th3 - 2 * th2 + th) * h * K[0]
                + (3 * th2 - 2 * th3) * Yn + (th3 - th2) * h * f1)


    def slope(self, theta: Tensor) -> Tensor:
        """``dy/dt`` of the dense output at ``θ`` (``[B]``), ``[B, d]``, without a graph."""
        with torch.no_grad():
            h = torch.where(self.h == 0, 1.0, self.h).to(self.Y.dtype).unsqueeze(1)
            Y, Yn, K, f1 = self.Y, self.Yn, self.K, self.f1
            th = theta.to(Y.dtype).unsqueeze(1)
            if self.pair.dense == "dopri5":  # y = Y + θ R, R = A + (1-θ) Q, Q = B + θ P, P = C + (1-θ) D
                A = Yn - Y
                Bs = h * K[0] - A
                C = A - h * f1 - Bs
                D = _combine(torch.zeros_like(Y), h, _DOPRI5_D, K)
                P, dP = C + (1 - th) * D, -D
                Q, dQ = Bs + th * P, P + th * dP
                R, dR = A + (1 - th) * Q, -Q + (1 - th) * dQ
                return (R + th * dR) / h
            th2 = th * th
            return ((6 * th2 - 6 * th) * Y + (3 * th2 - 4 * th + 1) * h * K[0]
                    + (6 * th - 6 * th2) * Yn + (3 * th2 - 2 * th) * h * f1) / h


class _Clock:
    """The per-sample times, steps and output cursors of a solve (float64 ``[B]`` each)."""

    def __init__(self, grid: Tensor, B: int, shared: bool, o: dict):
        self.grid = grid if grid.shape[0] == B else grid.expand(B, -1)
        self.n_t = grid.shape[1]
        self.shared, self.o = shared, o
        self.cur = self.grid[:, 0].clone()
        self.end = self.grid[:, -1].clone()
        self.dir = torch.sign(self.end - self.cur)
        self.dir[self.dir == 0] = 1.0
        self.idx = torch.ones(B, dtype=torch.int64, device=grid.device)  # each sample's next output
        self.live = self.idx < self.n_t  # not finished and not stopped by an event
        self.h_abs = torch.zeros(B, dtype=torch.float64, device=grid.device)
        self.steps = 0
        self.ref = 0  # with ``shared``: a live sample, whose time is the batch's

    def proposal(self, land: bool) -> Tensor:
        """Each sample's signed step: its step size, cut to end on its last time (``land``:
        on its next output time); a step just short of it is split in two halves instead of
        leaving a sliver."""
        goal = self.grid.gather(1, self.idx.clamp(max=self.n_t - 1).unsqueeze(1)).squeeze(1) if land else self.end
        left = (goal - self.cur).abs()
        h = torch.where(self.h_abs >= left * (1 - 1e-12), left,
                        torch.where(self.h_abs > 0.5 * left, 0.5 * left, self.h_abs))
        h = torch.where(self.live, h, torch.zeros_like(h))
        if self.shared:
            h = h[self.live].min().expand_as(h) if bool(self.live.any()) else h
        self.goal = goal
        return self.dir * h

    def control(self, h: Tensor, err: Tensor, order: int) -> Tensor:
        """Accept/reject from each sample's error ratio; the next step sizes.  Returns the mask
        of accepted (live) samples."""
        o = self.o
        err = torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf))
        if self.shared:
            err = torch.where(self.live, err, torch.zeros_like(err)).max().expand_as(err)
        acc = self.live & (err <= 1.0)
        fac = (o["safety"] * err.clamp_min(1e-300) ** (-1.0 / order)).clamp(o["dfactor"], o["ifactor"])
        fac = torch.where(err <= 1.0, fac.clamp_min(1.0), fac.clamp_max(1.0))
        fac = torch.where(err == 0, torch.full_like(fac, o["ifactor"]), fac)
        self.h_abs = torch.where(self.live, (h.abs() * fac).clamp(max=o["max_step"]), self.h_abs)
        return acc

    def advance(self, h: Tensor, acc: Tensor) -> None:
        new = self.cur + h
        hit_goal = (h.abs() >= (self.goal - self.cur).abs() * (1 - 1e-12))
        self.cur = torch.where(acc, torch.where(hit_goal, self.goal, new), self.cur)

    def check(self) -> None:
        o = self.o
        self.steps += 1
        if self.steps > o["max_steps"]:
            b = int(torch.nonzero(self.live)[0, 0])
            raise RuntimeError(
                f"{o['name']} took {o['max_steps']} steps (accepted and rejected) and sample {b} reached only "
                f"t={float(self.cur[b]):.6g} of {float(self.end[b]):.6g}; the problem may be stiff (try "
                "'kvaerno5'), or loosen rtol/atol, or raise options['max_num_steps']")
        tiny = self.live & (self.h_abs < 1e-14 * self.cur.abs().clamp_min(1.0))
        if bool(tiny.any()):
            b = int(torch.nonzero(tiny)[0, 0])
            when = float(self.cur[b])
            raise StepSizeUnderflow(f"{o['name']}'s step size underflowed near t={when:.6g} in sample {b}: the "
                                    "solution most likely blows up in finite time there (or f is discontinuous)",
                                    time=when)


def solver_options(name: str, options: dict) -> dict:
    """The options :func:`erk_solve` reads, with torchdiffeq's defaults (safety 0.9, growth in
    [0.2, 10], rtol 1e-7, atol 1e-9 as :mod:`.adaptive`)."""
    o = dict(options)
    first = o.pop("first_step", None)
    return {"name": name, "rtol": float(o.pop("rtol", 1e-7)), "atol": float(o.pop("atol", 1e-9)),
            "safety": float(o.pop("safety", 0.9)), "ifactor": float(o.pop("ifactor", 10.0)),
            "dfactor": float(o.pop("dfactor", 0.2)), "max_step": float(o.pop("max_step", math.inf)),
            "max_steps": int(o.pop("max_num_steps", 1_000_000)),
            "first_step": None if first is None else float(first)}


def _initial_step(f1, Y: Tensor, K0: Tensor, cur: Tensor, direction: Tensor, o: dict, order: int) -> Tensor:
    """Hairer's starting step, per sample (II.4): from ``|y|/|f|`` and a second slope."""
    with torch.no_grad():
        Y, K0 = Y.detach(), K0.detach()
        scale = o["atol"] + o["rtol"] * Y.abs()
        d0, d1 = _rms(Y / scale).double(), _rms(K0 / scale).double()
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300))
        K1 = f1(cur + direction * h0, Y + (direction * h0).to(Y.dtype).unsqueeze(1) * K0)
        d2 = _rms((K1 - K0) / scale).double() / h0
        big = torch.maximum(d1, d2)
        h1 = torch.where(big <= 1e-15, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
                         (0.01 / big.clamp_min(1e-300)) ** (1.0 / (order + 1)))
        return torch.minimum(100 * h0, h1)


def erk_solve(pair: EmbeddedPair, f: Callable, y0: Tensor, grid: Tensor, options: dict, *, sample_dims: int = 1,
              shared: bool = False, watch: Callable | None = None) -> Tensor:
    """Solve ``dy/dt = f(t, y)`` with ``pair``, every sample its own step control.

    Args:
        pair: the method (:func:`get_pair`).
        f: the right-hand side.  It gets ``t`` as a 0-d tensor with ``shared``, else shaped
            ``y0.shape[:sample_dims] + (1, ...)`` (each sample's own time, broadcastable).
        y0: the initial state; its first ``sample_dims`` dimensions are the samples.
        grid: float64 output times, ``[n_t]`` (one grid for every sample) or ``[B, n_t]``.
        options: :func:`solver_options`' output.
        shared: one time and step for the batch (lock-step).
        watch: called after every step with a :class:`StepData`; returns ``None`` or
            ``(stop [B] bool, t_stop [B] float64, y_stop [B, d])``: those samples end there
            (their later outputs hold ``y_stop``).

    Returns:
        ``[n_t, *y0.shape]``: each sample's state at its output times.
    """
    B = math.prod(y0.shape[:sample_dims])
    Y = y0.reshape(B, -1)
    grid = (grid.reshape(1, -1) if grid.dim() == 1 else grid).to(device=y0.device, dtype=torch.float64)
    clock = _Clock(grid, B, shared, options)  # times and steps in float64 on y0's device
    tshape = tuple(y0.shape[:sample_dims]) + (1,) * (y0.dim() - sample_dims)

    def f1(times: Tensor, state: Tensor) -> Tensor:
        tt = times[clock.ref].to(y0.dtype) if shared else times.to(y0.dtype).reshape(tshape)
        return f(tt, state.reshape(y0.shape)).reshape(B, -1)

    rows = [Y] * clock.n_t
    if clock.n_t == 1:
        return y0.unsqueeze(0)
    K0 = f1(clock.cur, Y)
    h0 = _initial_step(f1, Y, K0, clock.cur, clock.dir, options, pair.q - 1) if options["first_step"] is None \
        else torch.full((B,), options["first_step"], dtype=torch.float64, device=y0.device)
    clock.h_abs = (h0.min().expand(B).clone() if shared else h0).clamp(max=options["max_step"])
    land = pair.dense == "hermite"
    while bool(clock.live.any()):
        h = clock.proposal(land)
        step = _step(pair, f1, clock, Y, K0, h, options)
        acc = clock.control(h, step.err, pair.q)
        step.accepted = acc
        step.restep = _restepper(pair, f1, clock, Y, K0, options, shared)
        clock.check()
        stop = watch(step) if watch is not None else None
        _emit(rows, clock, step, stop, land)
        clock.advance(h, acc)
        a = acc.unsqueeze(1)
        Y, K0 = torch.where(a, step.Yn, Y), torch.where(a, step.f1, K0)
        clock.live = clock.live & (clock.idx < clock.n_t)
        if shared and bool(clock.live.any()):
            clock.ref = int(torch.nonzero(clock.live)[0, 0])
    return torch.stack([r.reshape(y0.shape) for r in rows])


def _step(pair: EmbeddedPair, f1, clock: _Clock, Y: Tensor, K0: Tensor, h: Tensor, o: dict) -> StepData:
    """The stages, the new states, the error ratio (``step.err``) and the end slope."""
    hc = h.to(Y.dtype).unsqueeze(1)
    K = [K0]
    for i in range(1, len(pair.c)):
        K.append(f1(clock.cur + pair.c[i] * h, _combine(Y, hc, pair.a[i], K)))
    Yn = _combine(Y, hc, pair.b, K)
    err = _combine(torch.zeros_like(Y), hc, pair.e, [k.detach() for k in K])
    scale = o["atol"] + o["rtol"] * torch.maximum(Y.detach().abs(), Yn.detach().abs())
    step = StepData(pair, clock.cur, h, Y, Yn, K, clock.live)
    step.err = _rms(err / scale).double()
    step.f1 = K[-1] if pair.fsal else f1(clock.cur + h, Yn)
    return step


def _restepper(pair: EmbeddedPair, f1, clock: _Clock, Y: Tensor, K0: Tensor, o: dict, shared: bool):
    """``restep(h, rows)`` of :class:`StepData`, called before the clock moves on (with
    ``shared`` one row at a time: the batch has one time, so the whole batch takes a row's
    step at that row's time and that row is kept)."""

    def restep(h: Tensor, rows: Tensor):
        if not shared:
            s = _step(pair, f1, clock, Y, K0, h, o)
            return s.Yn, s.f1
        y_end, f_end = torch.zeros_like(Y), torch.zeros_like(Y)
        ref = clock.ref
        try:
            for b in torch.nonzero(rows).flatten().tolist():
                clock.ref = b
                s = _step(pair, f1, clock, Y, K0, h[b].expand_as(h), o)
                m = (torch.arange(len(h), device=Y.device) == b).unsqueeze(1)
                y_end, f_end = torch.where(m, s.Yn, y_end), torch.where(m, s.f1, f_end)
        finally:
            clock.ref = ref
        return y_end, f_end

    return restep


def _emit(rows: list, clock: _Clock, step: StepData, stop, land: bool) -> None:
    """Write the outputs each accepted sample passed in this step (interpolated, or the step's
    end where steps land on outputs); a stopped sample's remaining outputs hold its stop state."""
    acc, n_t = step.accepted, clock.n_t
    h_end = step.h.clone()
    if stop is not None:
        stopped, t_stop, y_stop = stop
        h_end = torch.where(stopped, t_stop - step.cur, h_end)
    while True:
        target = clock.grid.gather(1, clock.idx.clamp(max=n_t - 1).unsqueeze(1)).squeeze(1)
        inside = acc & (clock.idx < n_t) & ((target - step.cur) * clock.dir <= h_end.abs() * (1 + 1e-13))
        if land:
            inside = inside & ((target - step.cur).abs() >= step.h.abs() * (1 - 1e-12))
        if not bool(inside.any()):
            break
        # a finished sample's step is 0: keep its θ finite (a NaN off the chosen branch of a
        # torch.where still poisons the gradient)
        theta = ((target - step.cur) / torch.where(step.h == 0, 1.0, step.h)).clamp(0.0, 1.0)
        value = step.Yn if land else torch.where((theta >= 1.0).unsqueeze(1), step.Yn, step.interpolate(theta))
        for j in torch.unique(clock.idx[inside]).tolist():
            m = (inside & (clock.idx == j)).unsqueeze(1)
            rows[j] = torch.where(m, value, rows[j])
        clock.idx = clock.idx + inside.long()
    if stop is not None and bool(stopped.any()):
        clock.idx = hold_after_stop(rows, clock.idx, n_t, stopped, y_stop)


def hold_after_stop(rows: list, idx: Tensor, n_t: int, stopped: Tensor, y_stop: Tensor) -> Tensor:
    """Write ``y_stop`` into every output a ``stopped`` sample has not reached (``idx``: each
    sample's next output); returns the cursors with the stopped samples finished."""
    first = int(idx[stopped].min())
    for j in range(first, n_t):
        m = (stopped & (idx <= j)).unsqueeze(1)
        rows[j] = torch.where(m, y_stop, rows[j])
    return torch.where(stopped, torch.full_like(idx, n_t), idx)
