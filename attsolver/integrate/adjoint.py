"""Gradients whose memory does not grow with the number of steps.

Two ways, chosen by an option of :func:`attsolver.solve`:

* ``options={"adjoint": True}`` — the **continuous adjoint** of an adaptive solve (``dopri5``,
  ``dopri8``): torchdiffeq's ``odeint_adjoint`` integrates the adjoint equation backwards in
  time, so nothing of the forward steps is kept.  The gradient is that of the exact solution,
  computed to the solver's tolerance (not the derivative of the discrete steps), and reaches
  ``y0``, ``t`` and the parameters of ``f``: those of ``f`` itself when ``f`` is an
  :class:`torch.nn.Module`, otherwise the tensors named by ``options["adjoint_params"]``
  (torchdiffeq's ``adjoint_params``).
* ``options={"checkpoint_steps": k}`` — **checkpointed discrete back-propagation** of a
  fixed-step solve, with or without a corrector: the steps run in segments of ``k`` steps;
  only each segment's starting state is kept, and the backward pass recomputes one segment's
  graph at a time (:func:`torch.utils.checkpoint.checkpoint`).  The gradient is that of the
  discrete solution (equal to direct back-propagation to round-off), with respect to ``y0``,
  ``t`` and every parameter ``f`` and the corrector use.  Memory: one segment's graph plus one
  state per segment, against one graph per step without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..steppers.adaptive import DEFAULT_ATOL, DEFAULT_MAX_NUM_STEPS, DEFAULT_RTOL
from ..steppers.registry import MethodSpec
from .loop import StepPlan, corrected_step, stage_times

__all__ = ["MEMORY_OPTIONS", "ADJOINT_METHODS", "split_memory_options", "adjoint_params_of", "adjoint_run",
           "checkpointed_loop"]

#: the options this module handles (removed from ``options`` before the method sees them)
MEMORY_OPTIONS = frozenset({"adjoint", "adjoint_params", "checkpoint_steps"})
#: the methods the continuous adjoint is offered for (torchdiffeq's own solvers)
ADJOINT_METHODS = frozenset({"dopri5", "dopri8"})


def split_memory_options(options: dict[str, Any] | None, spec: MethodSpec) -> tuple[dict | None, dict[str, Any]]:
    """``(other options, memory options)``: the memory options checked against the method."""
    if not isinstance(options, dict) or not (MEMORY_OPTIONS & set(options)):
        return options, {}
    rest = {k: v for k, v in options.items() if k not in MEMORY_OPTIONS}
    mem = {k: options[k] for k in MEMORY_OPTIONS if k in options}
    adjoint = mem.get("adjoint", False)
    if not isinstance(adjoint, bool):
        raise TypeError(f"options['adjoint'] must be True or False, got {adjoint!r}")
    if adjoint and spec.name not in ADJOINT_METHODS:
        raise ValueError(
            f"options['adjoint']: the continuous adjoint is for the adaptive methods {sorted(ADJOINT_METHODS)}, "
            f"not {spec.name!r}; for a fixed-step method use options={{'checkpoint_steps': k}} "
            "(checkpointed back-propagation, the exact gradient of the discrete steps)"
        )
    if "adjoint_params" in mem:
        if not adjoint:
            raise ValueError("options['adjoint_params'] is only read with options['adjoint'] = True")
        params = mem["adjoint_params"]
        if not isinstance(params, (list, tuple)) or not all(isinstance(p, Tensor) for p in params):
            raise TypeError("options['adjoint_params'] must be a list or tuple of tensors (f's parameters)")
        mem["adjoint_params"] = tuple(params)
    k = mem.get("checkpoint_steps")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"options['checkpoint_steps'] must be an integer >= 1 (steps per segment), got {k!r}")
        if spec.kind != "fixed":
            raise ValueError(
                f"options['checkpoint_steps'] is for fixed-step methods, not the adaptive {spec.name!r}; "
                "use options={'adjoint': True} for an adaptive solve"
            )
        mem["checkpoint_steps"] = int(k)
    return rest, mem


def adjoint_params_of(f: Callable, mem: dict[str, Any]) -> tuple[Tensor, ...]:
    """The tensors the adjoint differentiates: ``adjoint_params`` if given, else ``f``'s
    parameters (an ``nn.Module``); an ``f`` of neither kind is an error, not a silent zero."""
    if "adjoint_params" in mem:
        return mem["adjoint_params"]
    if isinstance(f, nn.Module):
        return tuple(p for p in f.parameters() if p.requires_grad)
    raise TypeError(
        "options['adjoint']: f is not an nn.Module, so its parameters are unknown; pass them as "
        "options={'adjoint': True, 'adjoint_params': (w, b, ...)} (an empty tuple if f has none)"
    )


class _AdjointRHS(nn.Module):
    """``f`` as the module torchdiffeq's adjoint expects (it reads the parameters itself)."""

    def __init__(self, f: Callable):
        super().__init__()
        self.f = f  # a Module f is registered (its parameters show up); a plain function is kept

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        out = self.f(t, y)
        if torch.is_grad_enabled() and not out.requires_grad:
            # an f that does not depend on y, t or a parameter (y' = const): the adjoint's
            # vector-Jacobian product is zero, but autograd needs a graph to say so
            out = out.detach().requires_grad_(True)
        return out


def adjoint_run(name: str, f: Callable, y0: Tensor, t: Tensor, options: dict[str, Any],
                params: tuple[Tensor, ...]) -> Tensor:
    """An adaptive solve by torchdiffeq's ``odeint_adjoint`` (the adjoint solve uses the
    forward's ``rtol`` / ``atol``)."""
    import torchdiffeq  # lazy: heavy (~0.8 s, it loads SciPy); only an adaptive solve pays for it

    opts = dict(options)
    rtol = opts.pop("rtol", DEFAULT_RTOL)
    atol = opts.pop("atol", DEFAULT_ATOL)
    opts.pop("check_finite", None)
    opts.setdefault("max_num_steps", DEFAULT_MAX_NUM_STEPS)
    if name == "dopri8":  # as in the forward runner: step onto every output time
        opts["step_t"] = t
    back = {k: v for k, v in opts.items() if k != "step_t"}
    return torchdiffeq.odeint_adjoint(_AdjointRHS(f), y0, t, rtol=rtol, atol=atol, method=name,
                                      options=opts or None, adjoint_options=back or None,
                                      adjoint_params=params)


def _segments(plan: StepPlan, k: int):
    """Yield, per segment of ``k`` steps: the step sizes, the output flags (last step of an
    interval), the interval of each step and its index inside it — small NumPy arrays made one
    segment at a time (memory ``O(k + len(t))`` whatever the number of steps)."""
    n_sub = plan.n_sub
    ends = np.cumsum(n_sub)
    for s0 in range(0, int(ends[-1]), k):
        steps = np.arange(s0, min(s0 + k, int(ends[-1])), dtype=np.int64)
        interval = np.searchsorted(ends, steps, side="right")
        inside = steps - (ends[interval] - n_sub[interval])
        yield plan.h_int[interval], inside == n_sub[interval] - 1, interval, inside


def checkpointed_loop(plan: StepPlan, k: int, f: Callable) -> Tensor:
    """:func:`~attsolver.integrate.loop.fixed_loop`'s result (the same step arithmetic, so the
    same values), computed in checkpointed segments of ``k`` steps."""
    stepper, corrector, t = plan.stepper, plan.corrector, plan.t
    t_grad = t.requires_grad and torch.is_grad_enabled()
    plain = corrector is None and not t_grad
    times = None if t_grad else stage_times(plan)
    nodes = [float(c) for c in stepper.nodes]
    outputs, x = [plan.y0], stepper.to_state(plan.y0) if plain else plan.y0
    leaves = _leaves(plan, f) if torch.is_grad_enabled() else None
    for hs, last, interval, starts in _segments(plan, k):
        stamps = None
        if not t_grad:  # the exact stage times of the eager loop, as float64 numbers
            stamps = np.array([[float(s) for s in next(times)] for _ in range(len(hs))])

        def run(x0: Tensor, hs=hs, last=last, interval=interval, stamps=stamps, starts=starts) -> tuple[Tensor, ...]:
            outs, x = [], x0
            ts_all = None if stamps is None else torch.as_tensor(stamps, device=t.device).to(t.dtype)
            for j, h in enumerate(hs.tolist()):
                if ts_all is None:  # times from t by tracked arithmetic, as time_differentiable_loop
                    i, n = int(interval[j]), int(plan.n_sub[interval[j]])
                    ht = (t[i + 1] - t[i]) / n
                    kk = int(starts[j])
                    t0 = t[i] + kk * ht if kk else t[i]
                    ts = [t0 + c * ht if c else t0 for c in nodes]
                    x = stepper.step_for_compile(ts, x, ht)  # no corrector: solve refuses one with t's grad
                else:
                    ts = list(ts_all[j].unbind(0))
                    x = stepper.step(ts, x, h) if corrector is None else corrected_step(stepper, corrector, ts, x, h)
                if last[j]:
                    outs.append(stepper.from_state(x) if plain else x)
            return (x, *outs)

        res = _Segment.apply(run, x, *leaves) if leaves is not None else run(x)
        x = res[0]
        outputs.extend(res[1:])
    return torch.stack(outputs)


class _Segment(torch.autograd.Function):
    """``run(x)`` without a graph in the forward pass; recomputed with one in the backward pass.

    ``leaves`` are the tensors the gradient reaches besides ``x`` (inputs of this function so
    that autograd routes their gradients here; ``run`` uses them through its closure)."""

    @staticmethod
    def forward(ctx, run, x, *leaves):
        ctx.run = run
        ctx.save_for_backward(x, *leaves)
        return run(x)  # autograd.Function.forward runs without grad

    @staticmethod
    def backward(ctx, *grads):
        x, *leaves = ctx.saved_tensors
        want_x = ctx.needs_input_grad[1]
        with torch.enable_grad():
            xd = x.detach().requires_grad_(want_x)
            outs = ctx.run(xd)
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        inputs = ([xd] if want_x else []) + [p for p, need in zip(leaves, ctx.needs_input_grad[2:]) if need]
        if not pairs or not inputs:
            return (None, None, *[None] * len(leaves))
        got = list(torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True,
                                       retain_graph=True))  # the recompute graph may share nodes with the caller's
        gx = got.pop(0) if want_x else None
        rest = [got.pop(0) if need else None for need in ctx.needs_input_grad[2:]]
        return (None, gx, *rest)


def _leaves(plan: StepPlan, f: Callable) -> list[Tensor]:
    """The tensors requiring grad that one call of ``f`` and of the corrector depend on (leaves
    of their graphs: parameters, captured tensors), and ``t`` if it requires grad."""
    t0 = plan.t[0].detach()
    y = plan.y0.detach()
    found: dict[int, Tensor] = {}
    with torch.enable_grad():
        outs = [f(t0, y)]
        if plan.corrector is not None:
            outs.append(plan.corrector(t0, y, outs[0].detach(), float(plan.h_int[0])))
    seen, stack = set(), [o.grad_fn for o in outs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)  # an AccumulateGrad node: a leaf
        if isinstance(var, Tensor):
            found[id(var)] = var
        stack.extend(n for n, _ in node.next_functions)
    leaves = list(found.values())
    if plan.t.requires_grad:
        leaves.append(plan.t)
    return leaves
