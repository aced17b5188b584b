"""``solve(..., options={"compile": True})``: the step loop under ``torch.compile``.

One compiled call advances ``chunk`` steps at once (the steps are unrolled into one
graph), so inductor fuses the stage arithmetic, ``f`` and the corrector of several steps
into few kernels, and the fixed cost of entering a compiled function is shared by the
chunk.  Steps that do not fill a whole chunk run in the eager loop.

**No silent fallback.**  torch's compiler keeps its compiled graphs per *code object* and
stops compiling a code object after ``recompile_limit`` (8) variants, running it eagerly
from then on.  A single shared loop function would therefore quietly run uncompiled from
the 9th configuration (shape, dtype, step, corrector, ...) of a process on.  Here every
configuration gets a code object of its own (generated source, compiled with a unique file
name), and each is compiled with ``fullgraph=True``, under which torch raises instead of
falling back (a graph break in ``f`` or an exceeded limit).  Such a failure is caught, the
solve is rerun by the eager loop, and a ``RuntimeWarning`` says why; :func:`compile_stats`
counts it under ``eager_fallbacks``.

:func:`compile_stats` counts what the compiler actually did: a call counts as a
compilation when dynamo captured a new graph during it (``torch._dynamo`` counters), so a
recompilation triggered by a changed attribute of ``f`` is counted too.
:func:`clear_compile_cache` drops the compiled functions (their code objects, with their
compiled graphs, go with them) and resets the counters.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["compiled_loop", "compile_stats", "clear_compile_cache"]

#: compiled configurations kept (oldest dropped first)
_CACHE_SIZE = 32
#: steps per window of precomputed start times (memory O(window), whatever the step count)
_WINDOW_CHUNKS = 128


@dataclass
class _Stats:
    compilations: int = 0
    compile_seconds: float = 0.0
    compiled_calls: int = 0
    eager_fallbacks: int = 0


_STATS = _Stats()
_CACHE: OrderedDict[tuple, tuple] = OrderedDict()
_SERIAL = itertools.count()


def compile_stats() -> dict:
    """What ``options={"compile": True}`` did since import (or the last clear).

    Returns:
        ``{"compilations": n, "compile_seconds": s, "compiled_calls": c, "eager_fallbacks": e,
        "cached_configurations": k}``: graphs compiled (recompilations included), the wall
        time of the calls that compiled, calls of a compiled chunk, solves that could not be
        compiled and ran eagerly (each with a ``RuntimeWarning``), and configurations held.
    """
    return {"compilations": _STATS.compilations, "compile_seconds": _STATS.compile_seconds,
            "compiled_calls": _STATS.compiled_calls, "eager_fallbacks": _STATS.eager_fallbacks,
            "cached_configurations": len(_CACHE)}


def clear_compile_cache() -> None:
    """Drop every compiled loop (and so its compiled graphs) and reset :func:`compile_stats`."""
    _CACHE.clear()
    _STATS.compilations = 0
    _STATS.compile_seconds = 0.0
    _STATS.compiled_calls = 0
    _STATS.eager_fallbacks = 0


def _graphs_captured() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def _chunk_function(stepper, corrector, h: float, chunk: int):
    """``advance(y, t0s) -> (states [chunk, ...], y)`` as a function with its own code object."""
    nodes = tuple(float(c) for c in stepper.nodes)
    namespace = {
        "torch": torch, "step": getattr(stepper, "step_for_compile", stepper.step),
        "to_state": stepper.to_state, "from_state": stepper.from_state, "corrector": corrector,
        "h": h, "chunk": chunk, "nodes": nodes,
    }
    body = ("y_next = from_state(step(ts, to_state(y), h))\n"
            "        y = y_next + corrector(t0, y, y_next - y, h)\n"
            "        states.append(y)") if corrector is not None else (
            "y = step(ts, y, h)\n"
            "        states.append(from_state(y))")
    source = (
        "def advance(y, t0s):\n"
        "    states = []\n"
        "    for i in range(chunk):\n"
        "        t0 = t0s[i]\n"
        "        ts = [t0 if c == 0.0 else t0 + c * h for c in nodes]\n"
        f"        {body}\n"
        "    return torch.stack(states), y\n"
    )
    # a unique file name -> a new code object -> its own compile cache and recompile limit
    exec(compile(source, f"<attsolver compiled loop {next(_SERIAL)}>", "exec"), namespace)
    return namespace["advance"]


class _SlowerThanEager(Exception):
    """Inductor compiled the loop but left its arithmetic to eager kernels (complex dtypes):
    the compiled loop would be slower than the eager one."""


#: inductor's own warning when it cannot generate code for complex arithmetic
_COMPLEX_FALLBACK = "does not support code generation for complex"
_SLOWER_REASON = ("inductor generates no code for complex arithmetic (torch "
                  f"{torch.__version__.split('+')[0]}), so compiling this loop (FFTs and complex "
                  "coefficients: the spectral steppers, or an f with complex tensors) is slower than eager")


def _key(f, corrector, method_key, h, chunk, y0):
    return (id(f), id(corrector), method_key, h, chunk, tuple(y0.shape), y0.dtype, y0.device.type)


def _get_compiled(stepper, f, corrector, method_key, h, chunk, y0):
    """The compiled loop of this configuration, or ``None`` if it is known to be slower than eager."""
    key = _key(f, corrector, method_key, h, chunk, y0)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is f and hit[1] is corrector:
        _CACHE.move_to_end(key)
        return hit[2]
    fn = torch.compile(_chunk_function(stepper, corrector, h, chunk), dynamic=False, fullgraph=True)
    _remember(key, f, corrector, fn)
    return fn


def _remember(key, f, corrector, fn) -> None:
    _CACHE[key] = (f, corrector, fn)  # strong refs keep the ids in the key valid
    _CACHE.move_to_end(key)
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def _eager(reason: str, stepper, corrector, y0, t, t_np, n_sub, h_int):
    from .boundary import _fixed_loop

    _STATS.eager_fallbacks += 1
    warnings.warn(f"options['compile']: {reason}; this solve ran the eager loop instead",
                  RuntimeWarning, stacklevel=4)
    return _fixed_loop(stepper, corrector, y0, t, t_np, n_sub, h_int)


def compiled_loop(stepper, f, corrector, y0, t, t_np, n_sub, h_int, *, chunk: int = 32):
    """Drop-in replacement for ``solve``'s eager loop (same arguments, same result)."""
    from .boundary import _fixed_loop

    total = int(n_sub.sum())
    h = float(np.dot(h_int, n_sub) / total)
    # A grid from linspace has steps equal up to rounding; those compile once.  A truly
    # non-uniform grid would recompile for every distinct step: run it eagerly instead.
    # "equal up to rounding" at the resolution of the grid's dtype (a float32 linspace's steps
    # differ by ~1e-4 relative)
    tol = max(1e-12, 8.0 * float(torch.finfo(t.dtype).eps) * float(np.max(np.abs(t_np))) / abs(h))
    if np.max(np.abs(h_int - h)) > tol * abs(h):
        return _eager("it needs a uniform step and this grid is not uniform",
                      stepper, corrector, y0, t, t_np, n_sub, h_int)
    n_full = total // chunk
    if n_full == 0:  # fewer steps than one chunk: nothing to compile
        return _fixed_loop(stepper, corrector, y0, t, t_np, n_sub, h_int)
    # known in advance, so the compile is not paid: the spectral steppers, and any method on a
    # pseudo-spectral system (its f runs FFTs on complex tensors: rk4 on Burgers compiled was
    # 1.2-1.3x slower than eager in the speed benchmark)
    spectral_f = hasattr(f, "linear_symbol") and hasattr(f, "nonlinear_op")
    if not getattr(stepper, "compile_helps", True) or spectral_f:
        return _eager(_SLOWER_REASON, stepper, corrector, y0, t, t_np, n_sub, h_int)
    method_key = getattr(getattr(stepper, "tableau", None), "name", type(stepper).__name__)
    fn = _get_compiled(stepper, f, corrector, method_key, h, chunk, y0)
    if fn is None:
        return _eager(_SLOWER_REASON, stepper, corrector, y0, t, t_np, n_sub, h_int)
    try:
        return _run_chunks(fn, stepper, corrector, y0, t, t_np, n_sub, h_int, chunk, n_full)
    except _SlowerThanEager:
        _remember(_key(f, corrector, method_key, h, chunk, y0), f, corrector, None)
        return _eager(_SLOWER_REASON, stepper, corrector, y0, t, t_np, n_sub, h_int)
    except (torch._dynamo.exc.TorchDynamoException, torch._dynamo.exc.FailOnRecompileLimitHit) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return _eager(f"torch.compile could not compile this loop ({type(e).__name__}: {first})",
                      stepper, corrector, y0, t, t_np, n_sub, h_int)


def _run_chunks(fn, stepper, corrector, y0, t, t_np, n_sub, h_int, chunk, n_full):
    from .boundary import _fixed_loop, _Outputs, _step_windows

    out = _Outputs(y0, len(t_np))
    state = y0 if corrector is not None else stepper.to_state(y0)
    all_outputs = bool((n_sub == 1).all())
    window = chunk * _WINDOW_CHUNKS
    done = 0
    first = True
    for idx, k in _step_windows(n_sub, 0, window):
        m = min(len(idx), n_full * chunk - done)
        if m <= 0:
            break
        m -= m % chunk
        idx, k = idx[:m], k[:m]
        starts = torch.as_tensor(t_np[idx] + h_int[idx] * k, device=t.device).to(t.dtype)
        is_output = k == n_sub[idx] - 1
        for c, t0s in enumerate(starts.split(chunk)):
            graphs = _graphs_captured()
            t_begin = time.perf_counter()
            if first:  # where a compilation normally happens: watch inductor's warnings
                first = False
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    states, state = fn(state, t0s)
                for w in caught:  # not ours to swallow
                    if _COMPLEX_FALLBACK not in str(w.message):
                        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            else:
                caught = ()
                states, state = fn(state, t0s)
            if _graphs_captured() != graphs:
                _STATS.compilations += _graphs_captured() - graphs
                _STATS.compile_seconds += time.perf_counter() - t_begin
            if any(_COMPLEX_FALLBACK in str(w.message) for w in caught):
                raise _SlowerThanEager
            _STATS.compiled_calls += 1
            rows = slice(c * chunk, (c + 1) * chunk)
            if all_outputs:
                out.put_block(int(idx[rows.start]) + 1, states)
            else:
                for r in np.flatnonzero(is_output[rows]).tolist():
                    out.put(int(idx[rows.start + r]) + 1, states[r])
        done += m
    total = int(n_sub.sum())
    if done < total:  # the tail that does not fill a chunk runs eagerly
        ends = np.cumsum(n_sub)
        interval = int(np.searchsorted(ends, done, side="right"))
        first_sub = done - (int(ends[interval - 1]) if interval else 0)
        y_done = state if corrector is not None else stepper.from_state(state)
        t_start = t_np[interval] + h_int[interval] * first_sub
        t_rest = np.concatenate(([t_start], t_np[interval + 1:]))
        n_rest = np.concatenate(([n_sub[interval] - first_sub], n_sub[interval + 1:]))
        h_rest = np.concatenate(([h_int[interval]], h_int[interval + 1:]))
        tail = _fixed_loop(stepper, corrector, y_done, torch.as_tensor(t_rest, device=t.device).to(t.dtype),
                           t_rest, n_rest, h_rest)
        out.put_block(interval + 1, tail[1:])  # tail[0] is y_done itself
    return out.result()
