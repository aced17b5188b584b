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
import subprocess
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from ..steppers.spectral import is_spectral_system
from .loop import Outputs, StepPlan, fixed_loop, step_windows

__all__ = ["compiled_loop", "compile_stats", "clear_compile_cache", "DEFAULT_COMPILE_CHUNK", "COMPILE_MODES",
           "cxx_compiler_available"]

#: the named modes of ``options={"compile": ...}`` (``True`` is ``"default"``):
#: ``"default"``: inductor's generated kernels called from its Python wrapper;
#: ``"cpp_wrapper"``: the same kernels called from a wrapper compiled to C++
#: (``torch.compile(..., options={"cpp_wrapper": True})``), which removes most of the
#: Python cost of entering the compiled graph — what dominates a step of a tiny system such as
#: Lorenz-63 (about half the time per step there; see ``benchmarks/results/tiny_compile.md``).
#: It needs a C++ compiler; without one, or if the C++ build fails, the solve runs the
#: ``"default"`` mode with a ``RuntimeWarning``.  Its first compilation takes longer.
COMPILE_MODES = ("default", "cpp_wrapper")

#: steps unrolled into one compiled call: Lorenz-63 ran 34 / 21 / 16 / 14 µs a step at
#: 8 / 32 / 64 / 128 (2 loaded cores), while the compile time grows with the chunk; 32 takes
#: most of the gain (the remainder of a solve that does not fill a chunk runs eagerly)
DEFAULT_COMPILE_CHUNK = 32

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
        "torch": torch, "step": stepper.step_for_compile,
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


def _key(f, corrector, method_key, h, chunk, y0, mode="default"):
    return (id(f), id(corrector), method_key, h, chunk, tuple(y0.shape), y0.dtype, y0.device.type, mode)


def cxx_compiler_available() -> bool:
    """Whether inductor finds a C++ compiler (what ``"cpp_wrapper"`` needs)."""
    try:
        return bool(torch._inductor.cpp_builder.get_cpp_compiler())
    except Exception:  # noqa: BLE001 - any failure to find or identify one: not available
        return False


def _get_compiled(stepper, f, corrector, method_key, h, chunk, y0, mode="default"):
    """The compiled loop of this configuration, or ``None`` if it is known to be slower than eager."""
    key = _key(f, corrector, method_key, h, chunk, y0, mode)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is f and hit[1] is corrector:
        _CACHE.move_to_end(key)
        return hit[2]
    fn = torch.compile(_chunk_function(stepper, corrector, h, chunk), dynamic=False, fullgraph=True,
                       options={"cpp_wrapper": True} if mode == "cpp_wrapper" else None)
    _remember(key, f, corrector, fn)
    return fn


def _remember(key, f, corrector, fn) -> None:
    _CACHE[key] = (f, corrector, fn)  # strong refs keep the ids in the key valid
    _CACHE.move_to_end(key)
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def _build_failures() -> tuple[type[BaseException], ...]:
    """What a failed C++ build of the ``"cpp_wrapper"`` mode raises (torch wraps most in
    BackendCompilerFailed).  A function, read only when an exception reaches the ``except``:
    touching ``torch._dynamo``/``torch._inductor`` at import time would import the compiler stack
    (slow, and it probes optional packages) with ``import attsolver``."""
    return (torch._dynamo.exc.BackendCompilerFailed, torch._inductor.exc.InvalidCxxCompiler,
            torch._inductor.exc.CppCompileError, OSError, subprocess.CalledProcessError)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _default_instead(reason: str) -> str:
    """Warn that ``"cpp_wrapper"`` cannot run (``reason``); returns the mode to run instead."""
    warnings.warn(f"options['compile']='cpp_wrapper': {reason}; this solve runs the default compiled loop "
                  "(options={'compile': True}) instead", RuntimeWarning, stacklevel=6)
    return "default"


def _eager(reason: str, plan: StepPlan):
    _STATS.eager_fallbacks += 1
    # the user's call of solve: solve -> _solve_fixed -> _integrate -> compiled_loop -> _eager
    warnings.warn(f"options['compile']: {reason}; this solve ran the eager loop instead",
                  RuntimeWarning, stacklevel=6)
    return fixed_loop(plan)


def _uniform_step(plan: StepPlan) -> float | None:
    """The step of a grid whose steps are equal up to its dtype's rounding, else ``None``.

    A grid from linspace has steps equal up to rounding; those compile once.  A truly
    non-uniform grid would recompile for every distinct step: it runs eagerly instead.
    "Equal up to rounding" at the resolution of the grid's dtype (a float32 linspace's steps
    differ by ~1e-4 relative).
    """
    h_int, n_sub = plan.h_int, plan.n_sub
    h = float(np.dot(h_int, n_sub) / int(n_sub.sum()))
    tol = max(1e-12, 8.0 * float(torch.finfo(plan.t.dtype).eps) * float(np.max(np.abs(plan.t_np))) / abs(h))
    return None if np.max(np.abs(h_int - h)) > tol * abs(h) else h


def compiled_loop(plan: StepPlan, f, *, chunk: int = DEFAULT_COMPILE_CHUNK, mode: str | bool = "default"):
    """Drop-in replacement for :func:`~attsolver.integrate.loop.fixed_loop` (same result);
    ``f`` is the right-hand side the stepper was built on (its identity keys the cache);
    ``mode``: one of :data:`COMPILE_MODES` (``True``: ``"default"``)."""
    mode = "default" if mode is True else mode
    stepper, corrector, y0 = plan.stepper, plan.corrector, plan.y0
    h = _uniform_step(plan)
    if h is None:
        return _eager("it needs a uniform step and this grid is not uniform", plan)
    n_full = plan.n_steps // chunk
    if n_full == 0:  # fewer steps than one chunk: nothing to compile
        return fixed_loop(plan)
    # known in advance, so the compile is not paid: the spectral steppers, and any method on a
    # pseudo-spectral system (its f runs FFTs on complex tensors: rk4 on Burgers compiled was
    # 1.2-1.3x slower than eager in the speed benchmark)
    if not stepper.compile_helps or is_spectral_system(f):
        return _eager(_SLOWER_REASON, plan)
    method_key = (plan.method, type(stepper))
    if mode == "cpp_wrapper" and not cxx_compiler_available():
        mode = _default_instead("inductor finds no C++ compiler (set CXX, or install g++ or clang++)")
    fn = _get_compiled(stepper, f, corrector, method_key, h, chunk, y0, mode)
    if fn is None:
        return _eager(_SLOWER_REASON, plan)
    try:
        return _run_chunks(fn, plan, chunk, n_full)
    except _SlowerThanEager:
        _remember(_key(f, corrector, method_key, h, chunk, y0, mode), f, corrector, None)
        return _eager(_SLOWER_REASON, plan)
    except _build_failures() as e:  # the C++ build of the wrapper failed: the default mode instead
        if mode != "cpp_wrapper":
            if isinstance(e, (torch._dynamo.exc.TorchDynamoException, torch._dynamo.exc.FailOnRecompileLimitHit)):
                return _eager(f"torch.compile could not compile this loop ({type(e).__name__}: {_first_line(e)})",
                              plan)
            raise
        _CACHE.pop(_key(f, corrector, method_key, h, chunk, y0, mode), None)
        _default_instead(f"its C++ build failed ({type(e).__name__}: {_first_line(e)})")
        return compiled_loop(plan, f, chunk=chunk, mode="default")
    except (torch._dynamo.exc.TorchDynamoException, torch._dynamo.exc.FailOnRecompileLimitHit) as e:
        first = _first_line(e)
        return _eager(f"torch.compile could not compile this loop ({type(e).__name__}: {first})", plan)


def _call_chunk(fn, state, t0s, watch: bool):
    """One compiled call, counted in :func:`compile_stats`; ``watch``: the call where a
    compilation normally happens, whose inductor warnings are checked (and passed on)."""
    graphs = _graphs_captured()
    t_begin = time.perf_counter()
    caught = ()
    if watch:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            states, state = fn(state, t0s)
        for w in caught:  # not ours to swallow
            if _COMPLEX_FALLBACK not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    else:
        states, state = fn(state, t0s)
    if _graphs_captured() != graphs:
        _STATS.compilations += _graphs_captured() - graphs
        _STATS.compile_seconds += time.perf_counter() - t_begin
    if any(_COMPLEX_FALLBACK in str(w.message) for w in caught):
        raise _SlowerThanEager
    _STATS.compiled_calls += 1
    return states, state


def _run_chunks(fn, plan: StepPlan, chunk: int, n_full: int):
    """``n_full`` compiled chunks of ``chunk`` steps, then the remaining steps eagerly."""
    stepper, corrector, t, t_np, n_sub, h_int = (plan.stepper, plan.corrector, plan.t, plan.t_np,
                                                 plan.n_sub, plan.h_int)
    out = Outputs(plan.y0, len(t_np))
    state = plan.y0 if corrector is not None else stepper.to_state(plan.y0)
    all_outputs = bool((n_sub == 1).all())
    done = 0
    for idx, k in step_windows(n_sub, 0, chunk * _WINDOW_CHUNKS):
        m = min(len(idx), n_full * chunk - done)
        if m <= 0:
            break
        m -= m % chunk
        idx, k = idx[:m], k[:m]
        starts = torch.as_tensor(t_np[idx] + h_int[idx] * k, device=t.device).to(t.dtype)
        is_output = k == n_sub[idx] - 1
        for c, t0s in enumerate(starts.split(chunk)):
            states, state = _call_chunk(fn, state, t0s, watch=done == 0 and c == 0)
            rows = slice(c * chunk, (c + 1) * chunk)
            if all_outputs:
                out.put_block(int(idx[rows.start]) + 1, states)
            else:
                for r in np.flatnonzero(is_output[rows]).tolist():
                    out.put(int(idx[rows.start + r]) + 1, states[r])
        done += m
    if done < plan.n_steps:  # the tail that does not fill a chunk runs eagerly
        rest = plan.after(done, state if corrector is not None else stepper.from_state(state))
        interval = len(t_np) - len(rest.t_np)  # the output interval the tail starts in
        out.put_block(interval + 1, fixed_loop(rest)[1:])  # the tail's first row is its start
    return out.result()
