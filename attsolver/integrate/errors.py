"""What ``solve`` raises when a solution goes wrong, and the diagnosis behind the message.

:class:`NonFiniteSolutionError` names the first non-finite step and its time (for a
fixed-step solve the failing output interval is replayed step by step to find it) and
whether ``f`` itself returned NaN; :class:`SolutionBoundError` reports a solution past the
caller's ``growth_bound``; :class:`CoarseStepWarning` is the step-doubling check's warning.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor

from .loop import StepPlan, corrected_step, stage_times

__all__ = ["NonFiniteSolutionError", "SolutionBoundError", "CoarseStepWarning", "all_finite", "bad_rows",
           "raise_nonfinite", "raise_if_nonfinite_adaptive", "over_whole_solve"]


class NonFiniteSolutionError(FloatingPointError):
    """The numerical solution became NaN or infinite.

    Attributes:
        step: index of the first solver step whose result is non-finite (0-based, counted
            over the whole solve), or ``None`` for adaptive methods.
        time: the time at the start of that step (adaptive methods: the first output time
            whose value is non-finite).
        partial: the solution up to the last finite output, shape ``[k, *y0.shape]``.
    """

    def __init__(self, message: str, *, step: int | None, time: float, partial: Tensor):
        super().__init__(message)
        self.step = step
        self.time = time
        self.partial = partial


class SolutionBoundError(NonFiniteSolutionError):
    """The solution grew past ``options["growth_bound"]`` (finite, but beyond what the caller
    declared plausible); same attributes as :class:`NonFiniteSolutionError`."""


class CoarseStepWarning(UserWarning):
    """A fixed-step solve without ``step_size`` stepped once per output interval, and a
    step-doubling check on the first interval found that step too coarse for the problem."""


#: dtypes whose finiteness :func:`all_finite` reads off one sum
_SUMMED = frozenset({torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex128, torch.complex64})


def all_finite(x: Tensor) -> bool:
    """Whether every element is finite, in one reduction pass.

    Any NaN/inf makes the sum non-finite; only then (or if the sum of finite values
    overflowed) is the elementwise check run.  ``torch.isfinite(x).all()`` makes several
    passes over ``x``, which on a batch of 1024 Lorenz-96 states cost more than the
    integration itself.
    """
    if x.requires_grad:  # detach() costs about a microsecond: only where a graph would be built
        x = x.detach()
    if x.dtype not in _SUMMED:  # e.g. complex32: no sum kernel on the CPU
        return bool(torch.isfinite(x).all())
    total = x.sum()
    if total.is_complex():
        if bool(torch.isfinite(total)):
            return True
    elif math.isfinite(total.item()):  # one host read: on a tiny state a third of isfinite(...).all()
        return True
    return bool(torch.isfinite(x).all())


def bad_rows(out: Tensor) -> str:
    """`` (batch elements i, j of n)`` naming the non-finite rows of a batched ``[n, ...]`` output."""
    if out.ndim < 2:
        return ""
    bad = (~torch.isfinite(out.reshape(out.shape[0], -1)).all(dim=1)).nonzero().flatten().tolist()
    shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
    return f" (batch element{'s' if len(bad) > 1 else ''} {shown} of {out.shape[0]})"


def _first_bad_step(sol: Tensor, plan: StepPlan, i: int) -> tuple[int, list[Tensor], Tensor, Tensor]:
    """Replay output interval ``i - 1`` step by step (no grad) from its finite start.

    Returns ``(k, ts, y_start, y)``: the index inside the interval of the first step whose
    result is non-finite (the interval's last step if the replay stays finite), its stage
    times, the state it started from and its result.
    """
    stepper, corrector = plan.stepper, plan.corrector
    times = stage_times(plan, first_interval=i - 1)
    h = float(plan.h_int[i - 1])
    n = int(plan.n_sub[i - 1])
    k_bad = n - 1
    with torch.no_grad():
        y = sol[i - 1].detach()
        state = y if corrector is not None else stepper.to_state(y)
        for k in range(n):
            ts = next(times)
            y_start = y
            if corrector is None:
                state = stepper.step(ts, state, h)
                y = stepper.from_state(state)
            else:
                y = corrected_step(stepper, corrector, ts, y, h)
            if not bool(torch.isfinite(y).all()):
                k_bad = k
                break
    return k_bad, ts, y_start, y


def raise_nonfinite(sol: Tensor, plan: StepPlan) -> None:
    """Raise :class:`NonFiniteSolutionError` for a fixed-step ``sol`` that is not all finite,
    naming the first non-finite step and whether ``f`` itself returned NaN there."""
    finite_rows = torch.isfinite(sol.reshape(len(sol), -1)).all(dim=1)
    i = int((~finite_rows).nonzero()[0, 0])  # first non-finite output, i >= 1
    k_bad, ts, y_start, _ = _first_bad_step(sol, plan, i)
    step = int(plan.n_sub[: i - 1].sum()) + k_bad
    h = float(plan.h_int[i - 1])
    t_step = float(plan.t_np[i - 1] + k_bad * h)
    cause = "reduce step_size, check f for overflow"
    f_start = None
    if plan.stepper.f is not None and all_finite(y_start):
        try:  # f itself non-finite at the finite state the step started from?
            with torch.no_grad():
                f_start = plan.stepper.f(ts[0], y_start)
        except Exception:  # noqa: BLE001 - only a diagnosis; the blow-up is reported either way
            f_start = None
    if isinstance(f_start, Tensor) and bool(torch.isnan(f_start).any()):
        # NaN from a finite input is f's own doing; inf alone is the overflow of a growing solution
        cause = (f"f itself returned NaN at the finite state the step started from{bad_rows(f_start)} — "
                 "not a step-size problem (a neural f: inputs outside the range it was trained on, or damaged "
                 "weights); check f")
    raise NonFiniteSolutionError(
        f"solution became non-finite at step {step} (t={t_step:.6g} -> {t_step + h:.6g}, "
        f"h={h:.3g}, method {plan.method!r}); {cause}, or pass "
        "options={'check_finite': False} to get the raw result",
        step=step, time=t_step, partial=sol[:i],
    )


def raise_if_nonfinite_adaptive(sol: Tensor, t: Tensor, method: str) -> None:
    """Raise :class:`NonFiniteSolutionError` naming the first non-finite output of an adaptive solve."""
    finite_rows = torch.isfinite(sol.reshape(len(sol), -1)).all(dim=1)
    if bool(finite_rows.all()):
        return
    i = int((~finite_rows).nonzero()[0, 0])
    time = float(t[i])
    raise NonFiniteSolutionError(
        f"solution became non-finite by output {i} (t={time:.6g}, method {method!r}); "
        "tighten rtol/atol or check f, or pass options={'check_finite': False}",
        step=None, time=time, partial=sol[:i],
    )


def over_whole_solve(e: NonFiniteSolutionError, outs: list[Tensor], steps_before: int,
                     outputs_before: int) -> NonFiniteSolutionError:
    """The error of one piece of a solve run in pieces (``progress=True``), restated for the
    whole solve: the step and output index counted from the start, the partial solution
    from ``t[0]``."""
    message, step = str(e), e.step
    if step is not None:
        message = re.sub(rf"\bstep {step}\b", f"step {step + steps_before}", message, count=1)
        step += steps_before
    message = re.sub(r"\boutput (\d+)\b", lambda m: f"output {int(m.group(1)) + outputs_before}", message,
                     count=1)
    partial = torch.cat([*outs, e.partial[1:]]) if len(e.partial) else torch.cat(outs)
    return type(e)(message, step=step, time=e.time, partial=partial)
