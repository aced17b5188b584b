"""The fixed-step loops that every fixed-step solve runs, and the plan they follow.

:class:`StepPlan` is what the boundary decides once (stepper, corrector, start, times, steps
per output interval); :func:`fixed_loop` is the eager loop, :func:`time_differentiable_loop`
the one whose times carry gradients; the compiled loop (:mod:`.compiled`) reuses
:class:`Outputs` and :func:`step_windows`.  The per-step work is the stepper's arithmetic
and nothing else: everything a step needs is bound to a local before the loop starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..steppers.base import Stepper

__all__ = ["StepPlan", "fixed_loop", "time_differentiable_loop", "corrected_step", "stage_times",
           "step_windows", "Outputs", "STAGE_CHUNK"]

#: Stage times are materialised as 0-d tensors this many steps at a time: cheap per step,
#: bounded memory for very long solves.
STAGE_CHUNK = 1024
#: a result of at most this many outputs is stacked at the end, not written row by row into a
#: preallocated tensor (:class:`Outputs`): cheaper for the short solves that are mostly set-up
STACKED_OUTPUTS = 16
#: the stage times of a solve of at most this many steps are kept for later solves on the
#: same grid (:attr:`StepPlan.stage_cache`)
CACHED_STAGE_STEPS = 1024


@dataclass(frozen=True, eq=False, slots=True)
class StepPlan:
    """Everything a fixed-step loop needs, decided once by ``solve``'s boundary.

    Attributes:
        method: the registry name (for messages and the compiled-loop cache).
        stepper: the stepper, configured at construction for this solve.
        corrector: ``corrector(t, y, dy, h) -> Tensor`` added after every step, or ``None``.
        y0: the initial state, any shape.
        t: the output times ``[n_out]`` in the dtype ``f`` sees (``y0``'s real dtype).
        t_np: the same times as float64 NumPy (the step arithmetic is done in float64).
        n_sub: steps per output interval, int64 ``[n_out - 1]``, each >= 1.
        h_int: the signed step in each interval, float64 ``[n_out - 1]``.
        guard: ``None`` (the plain loops) or ``"warn"`` / ``"fallback"``: the corrected steps
            are scored against the corrector's training domain (:mod:`.guard`).
    """

    method: str
    stepper: Stepper
    corrector: Callable[..., Tensor] | None
    y0: Tensor
    t: Tensor
    t_np: np.ndarray
    n_sub: np.ndarray
    h_int: np.ndarray
    guard: str | None = None
    #: the stage times of earlier solves on the same steps (``call_cache.Grid.stages``), or ``None``
    stage_cache: dict | None = None

    @property
    def n_steps(self) -> int:
        return int(self.n_sub.sum())

    def after(self, done: int, y: Tensor) -> StepPlan:
        """The plan of the steps after the first ``done``, starting from state ``y``: its
        first output time is the time reached (``y``'s), its first interval what is left
        of the interval that step ``done`` lies in."""
        ends = np.cumsum(self.n_sub)
        interval = int(np.searchsorted(ends, done, side="right"))
        first_sub = done - (int(ends[interval - 1]) if interval else 0)
        t_start = self.t_np[interval] + self.h_int[interval] * first_sub
        t_np = np.concatenate(([t_start], self.t_np[interval + 1:]))
        n_sub = np.concatenate(([self.n_sub[interval] - first_sub], self.n_sub[interval + 1:]))
        h_int = np.concatenate(([self.h_int[interval]], self.h_int[interval + 1:]))
        t = torch.as_tensor(t_np, device=self.t.device).to(self.t.dtype)
        return StepPlan(self.method, self.stepper, self.corrector, y, t, t_np, n_sub, h_int, self.guard)


def step_windows(n_sub: np.ndarray, first_step: int = 0, window: int = STAGE_CHUNK
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Walk the steps ``first_step, ...`` in windows of at most ``window`` steps.

    Yields ``(interval, k)``: for each step of the window the output interval it lies in and
    its index inside that interval.  Memory is ``O(window + len(n_sub))`` whatever the number
    of steps (a full-length ``np.repeat`` would take 8 bytes per step per array, 1.5 GB of
    bookkeeping for 10^8 steps).
    """
    ends = np.cumsum(n_sub)
    total = int(ends[-1]) if len(ends) else 0
    for s0 in range(first_step, total, window):
        steps = np.arange(s0, min(s0 + window, total), dtype=np.int64)
        interval = np.searchsorted(ends, steps, side="right")
        yield interval, steps - (ends[interval] - n_sub[interval])


def stage_times(plan: StepPlan, first_interval: int = 0) -> Iterator[list[Tensor]]:
    """Step by step, the stage times ``t_n + c_i h`` as 0-d tensors in ``plan.t``'s dtype
    (see :func:`_stage_times`); for a plan with a ``stage_cache`` and at most
    :data:`CACHED_STAGE_STEPS` steps, made once and kept there for later solves."""
    cache = plan.stage_cache
    if cache is None or first_interval:
        return _stage_times(plan, first_interval)
    key = (tuple(plan.stepper.nodes), plan.t.dtype, plan.t.device)
    rows = cache.get(key)
    if rows is None:
        if plan.n_steps > CACHED_STAGE_STEPS:
            return _stage_times(plan)
        rows = cache[key] = list(_stage_times(plan))
    return iter(rows)


def _stage_times(plan: StepPlan, first_interval: int = 0) -> Iterator[list[Tensor]]:
    """Yield, step by step, the stage times ``t_n + c_i h`` as 0-d tensors in ``plan.t``'s dtype.

    Each distinct time is one tensor: stages with equal nodes share it, and inside an
    output interval the ``c = 1`` time of a step is the ``c = 0`` time of the next (classic
    RK4 makes two tensors per step, not four).  The times are computed in float64 with NumPy
    for :data:`STAGE_CHUNK` steps at once (see :func:`step_windows`), so memory stays
    bounded for very long solves.  ``first_interval`` starts at that output interval.
    """
    t, t_np, n_sub, h_int = plan.t, plan.t_np, plan.n_sub, plan.h_int
    nodes = np.asarray(plan.stepper.nodes, dtype=np.float64)
    inner = np.unique(nodes[nodes != 1.0])  # nodes may lie outside [0, 1] (e.g. c = 2)
    if 0.0 not in inner:
        raise ValueError(f"{type(plan.stepper).__name__}: the nodes must include 0 (the step's start)")
    width = len(inner)
    zero = int(np.searchsorted(inner, 0.0))  # column of the c = 0 time in each row
    pos = [None if c == 1.0 else int(np.searchsorted(inner, c)) for c in nodes]
    first_step = int(n_sub[:first_interval].sum())
    for idx, k in step_windows(n_sub, first_step):
        m = len(idx)
        h = h_int[idx]
        starts = t_np[idx] + h * k
        # a step's c = 1 time is the next row's c = 0, except at the end of an interval or window
        own_end = k == n_sub[idx] - 1
        own_end[-1] = True
        extra = np.flatnonzero(own_end)
        one_index = np.arange(1, m + 1) * width + zero
        one_index[extra] = m * width + np.arange(len(extra))
        values = np.concatenate(((starts[:, None] + h[:, None] * inner).ravel(), starts[extra] + h[extra]))
        grid = torch.as_tensor(values, device=t.device).to(t.dtype).unbind(0)
        for r in range(m):
            b = r * width
            yield [grid[b + p] if p is not None else grid[one_index[r]] for p in pos]


def corrected_step(stepper: Stepper, corrector: Callable[..., Tensor], ts: list[Tensor], y: Tensor,
                   h: float) -> Tensor:
    """``y* + C(t, y, y* - y, h)`` with ``y*`` the classical step (exact when ``C = 0``)."""
    y_next = stepper.from_state(stepper.step(ts, stepper.to_state(y), h))
    return y_next + corrector(ts[0], y, y_next - y, h)


class Outputs:
    """The result ``[len(t), *y0.shape]``, each output written once.

    Without autograd the outputs go straight into one preallocated tensor (no list of
    ``len(t)`` tensors kept alive, no final ``torch.stack`` copy: peak memory is the result
    plus a few states).  When the outputs carry a graph (``y0`` or ``f``'s parameters require
    grad) they are stacked at the end instead: in-place writes into one buffer would make
    backward copy the whole buffer's gradient once per output.  The mode is decided on the
    first output, which shows whether a graph is being built.  At most
    :data:`STACKED_OUTPUTS` outputs are stacked at the end too (a row write costs more than
    its share of one ``stack``).
    """

    __slots__ = ("buf", "rows", "n")

    def __init__(self, y0: Tensor, n: int):
        self.buf: Tensor | None = None
        self.rows: list[Tensor] | None = [y0]
        self.n = n

    def put(self, i: int, y: Tensor) -> None:
        """Store output ``i`` (``i >= 1``, in order)."""
        buf = self.buf
        if buf is not None:
            buf[i] = y
            return
        rows = self.rows
        if i == 1 and self.n > STACKED_OUTPUTS and not (y.requires_grad or rows[0].requires_grad):
            buf = self.buf = torch.empty((self.n, *y.shape), dtype=y.dtype, device=y.device)
            buf[0] = rows[0]
            buf[1] = y
            self.rows = None
            return
        rows.append(y)

    def replace_rows(self, i: int, rows: Tensor, values: Tensor) -> None:
        """Overwrite the samples ``rows`` (indices into the flattened batch) of output ``i``,
        already stored, with ``values [len(rows), D]`` (``D`` entries per sample)."""
        if self.buf is not None:
            out = self.buf[i]
            out.reshape(-1, values.shape[-1])[rows] = values.to(out.dtype)
            return
        old = self.rows[i]
        flat = old.reshape(-1, values.shape[-1]).clone()
        flat[rows] = values.to(flat.dtype)
        self.rows[i] = flat.reshape(old.shape)

    def put_block(self, i: int, ys: Tensor) -> None:
        """Store outputs ``i, i+1, ...`` from a stacked block ``ys``."""
        if self.buf is None and not (ys.requires_grad or self.rows[0].requires_grad):
            self.put(i, ys[0])
            ys, i = ys[1:], i + 1
        if self.buf is not None:
            self.buf[i:i + len(ys)] = ys
        else:
            self.rows.extend(ys.unbind(0))

    def result(self) -> Tensor:
        return self.buf if self.buf is not None else torch.stack(self.rows)


def fixed_loop(plan: StepPlan) -> Tensor:
    """The eager loop: ``[len(t), *y0.shape]``, every output an actual solver state."""
    stepper, corrector, y0 = plan.stepper, plan.corrector, plan.y0
    if corrector is None:
        sol = stepper.fast_loop(y0, plan.n_sub, plan.h_int)  # e.g. the spectral steppers' NumPy path
        if sol is not None:
            return sol
    if corrector is None and not stepper.needs_times:
        # an autonomous step that never reads its stage times (e.g. ETDRK4 on Burgers):
        # making one 0-d tensor per stage cost about a quarter of such a step
        times = itertools.repeat([plan.t[0]] * len(stepper.nodes))
    else:
        times = stage_times(plan)
    out = Outputs(y0, len(plan.t_np))
    intervals = zip(plan.n_sub.tolist(), plan.h_int.tolist())
    if corrector is None:
        step, from_state = stepper.step, stepper.from_state
        state = stepper.to_state(y0)
        # once the result is one preallocated tensor (no autograd graph), a stepper that can
        # writes the last step of each interval straight into its row: outputs written once
        into = stepper.writes_into
        for i, (n, h) in enumerate(intervals, 1):
            if into and out.buf is not None:
                for _ in range(n - 1):
                    state = step(next(times), state, h)
                state = step(next(times), state, h, into=out.buf[i])
                continue
            for _ in range(n):
                state = step(next(times), state, h)
            out.put(i, from_state(state))
    else:
        y = y0
        for i, (n, h) in enumerate(intervals, 1):
            for _ in range(n):
                y = corrected_step(stepper, corrector, next(times), y, h)
            out.put(i, y)
    return out.result()


def time_differentiable_loop(plan: StepPlan) -> Tensor:
    """The eager loop with stage times and steps computed from ``t`` by autograd-tracked
    tensor arithmetic, so that ``d y / d t`` flows (as in torchdiffeq's fixed-grid solvers).
    Slower than :func:`fixed_loop` (a few tensor operations per step for the times)."""
    step = plan.stepper.step_for_compile  # takes a tensor h (no ``alpha=``)
    nodes = [float(c) for c in plan.stepper.nodes]
    t = plan.t
    outputs = [plan.y0]
    y = plan.y0
    for i, n in enumerate(plan.n_sub.tolist()):
        h = (t[i + 1] - t[i]) / n
        for k in range(n):
            t0 = t[i] + k * h if k else t[i]
            y = step([t0 + c * h if c else t0 for c in nodes], y, h)
        outputs.append(y)
    return torch.stack(outputs)
