"""``solve(..., options={"compile": True})``: the step loop under ``torch.compile``.

One compiled call advances ``chunk`` steps at once (the steps are unrolled into one
graph), so inductor fuses the stage arithmetic, ``f`` and the corrector of several steps
into one kernel, and the fixed cost of entering a compiled function is shared by the
chunk.  Steps that do not fill a whole chunk run in the eager loop.

Compiled functions are cached per (f, corrector, method, step, chunk, shape, dtype), so
repeated solves of the same problem compile once; :func:`compile_stats` reports how many
compilations happened and how long they took, which the speed benchmark reports apart from
the run time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["compiled_loop", "compile_stats", "clear_compile_cache"]

_CACHE_SIZE = 16


@dataclass
class _Stats:
    compilations: int = 0
    compile_seconds: float = 0.0


_STATS = _Stats()
_CACHE: OrderedDict[tuple, tuple] = OrderedDict()


def compile_stats() -> dict:
    """``{"compilations": n, "compile_seconds": s}`` since import (or the last clear)."""
    return {"compilations": _STATS.compilations, "compile_seconds": _STATS.compile_seconds}


def clear_compile_cache() -> None:
    _CACHE.clear()
    _STATS.compilations = 0
    _STATS.compile_seconds = 0.0


def _chunk_function(stepper, corrector, h: float, chunk: int):
    nodes = tuple(float(c) for c in stepper.nodes)
    step = getattr(stepper, "step_for_compile", stepper.step)
    to_state, from_state = stepper.to_state, stepper.from_state

    def advance(y, t0s):
        states = []
        for i in range(chunk):
            t0 = t0s[i]
            ts = [t0 if c == 0.0 else t0 + c * h for c in nodes]
            if corrector is None:
                y = step(ts, y, h)
                states.append(from_state(y))
            else:
                y_next = from_state(step(ts, to_state(y), h))
                y = y_next + corrector(t0, y, y_next - y, h)
                states.append(y)
        return torch.stack(states), y

    return advance


def _get_compiled(stepper, f, corrector, method_key, h, chunk, y0):
    key = (id(f), id(corrector), method_key, h, chunk, tuple(y0.shape), y0.dtype, y0.device.type)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is f and hit[1] is corrector:
        _CACHE.move_to_end(key)
        return hit[2], False
    fn = torch.compile(_chunk_function(stepper, corrector, h, chunk), dynamic=False)
    _CACHE[key] = (f, corrector, fn)  # strong refs keep the ids in the key valid
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return fn, True


def compiled_loop(stepper, f, corrector, y0, t, t_np, n_sub, h_int, *, chunk: int = 8):
    """Drop-in replacement for ``solve``'s eager loop (same arguments, same result shape)."""
    from .solve import _fixed_loop

    steps_h = np.repeat(h_int, n_sub)
    h = float(np.mean(steps_h))
    # A grid from linspace has steps equal up to rounding; those compile once.  A truly
    # non-uniform grid would recompile for every distinct step: run it eagerly instead.
    if np.max(np.abs(steps_h - h)) > 1e-12 * abs(h):
        import warnings

        warnings.warn("options['compile'] needs a uniform step; this grid is not uniform, "
                      "so the eager loop is used", RuntimeWarning, stacklevel=3)
        return _fixed_loop(stepper, corrector, y0, t, t_np, n_sub, h_int)

    total = int(n_sub.sum())
    n_full = total // chunk
    if n_full == 0:
        return _fixed_loop(stepper, corrector, y0, t, t_np, n_sub, h_int)
    starts_np = np.repeat(t_np[:-1], n_sub) + steps_h * (
        np.arange(total) - np.repeat(np.cumsum(n_sub) - n_sub, n_sub))
    method_key = getattr(getattr(stepper, "tableau", None), "name", type(stepper).__name__)
    fn, fresh = _get_compiled(stepper, f, corrector, method_key, h, chunk, y0)

    # output rows: the state after the last step of every interval
    is_output = np.zeros(total, dtype=bool)
    is_output[np.cumsum(n_sub) - 1] = True
    starts = torch.as_tensor(starts_np[: n_full * chunk], device=t.device).to(t.dtype)
    outputs = [y0.unsqueeze(0)]
    state = y0 if corrector is not None else stepper.to_state(y0)
    all_outputs = bool(is_output.all())
    for c, t0s in enumerate(starts.split(chunk)):
        if c == 0 and fresh:
            t_begin = time.perf_counter()
            states, state = fn(state, t0s)
            _STATS.compilations += 1
            _STATS.compile_seconds += time.perf_counter() - t_begin
        else:
            states, state = fn(state, t0s)
        if all_outputs:
            outputs.append(states)
        else:
            rows = np.flatnonzero(is_output[c * chunk:(c + 1) * chunk])
            if len(rows):
                outputs.append(states[torch.as_tensor(rows, device=states.device)])
    done = n_full * chunk
    if done < total:  # the tail that does not fill a chunk runs eagerly
        y_done = state if corrector is not None else stepper.from_state(state)
        interval = int(np.searchsorted(np.cumsum(n_sub), done, side="right"))
        first_sub = done - (int(np.cumsum(n_sub)[interval - 1]) if interval else 0)
        t_rest = np.concatenate(([starts_np[done]], t_np[interval + 1:]))
        n_rest = np.concatenate(([n_sub[interval] - first_sub], n_sub[interval + 1:]))
        h_rest = np.concatenate(([h_int[interval]], h_int[interval + 1:]))
        tail = _fixed_loop(stepper, corrector, y_done, torch.as_tensor(t_rest, device=t.device).to(t.dtype),
                           t_rest, n_rest, h_rest)
        # the tail's first row is y_done itself; its others are the remaining outputs
        outputs.append(tail[1:])
    return torch.cat(outputs)
