"""What ``solve`` works out once and reuses on later calls: the fixed cost of a call.

A solve of a few steps of a small system used to cost several times its own steps in set-up
(checking ``t``, the step grid, the stage times, a test call of ``f``, the step-doubling
check).  Series of solves — ``compare``'s ladders, training rollouts, an ensemble, a
benchmark — repeat the same set-up with the same ``t`` and the same ``f``; this module keeps
what does not change between them.  Every entry is keyed so that a hit gives the answer the
full computation would give:

* **the time grid** (:func:`times_entry`): ``t`` found valid, the step grid ``(n_sub,
  h_int)`` of a ``step_size`` and the stage times of a short solve (:class:`Grid`), keyed by ``t``'s values
  (its bytes) and dtype.  At most :data:`MAX_GRIDS` grids of at most :data:`MAX_TIMES`
  output times, :data:`MAX_STEP_SIZES` step sizes each, are kept (oldest dropped first); the
  arrays are read-only.
* **the test call of f** (:func:`f_known` / :func:`note_f`): ``f(t0, y0)`` returned ``y0``'s
  shape and dtype, once per ``f`` and (shape, dtype, device).  A NaN from ``f`` at the start
  of a later solve is still reported as ``f``'s own: the boundary re-runs the full check
  before blaming the steps (see ``integrate.boundary``).
* **the step-doubling check** of a solve without ``step_size`` (:func:`coarse_known` /
  :func:`note_coarse_quiet`): a verdict "not too coarse" per ``f``, method, step, state
  shape, dtype, device and start time.  Only quiet verdicts are kept, so a coarse step warns
  on every call; a later ``y0`` of the same shape reuses the first one's verdict.

* **the stepper** (:func:`stepper_for`) of a method that declares it ``reusable`` (the
  spectral ones: their set-up costs a few steps), per immutable system, state shape, dtype,
  device and thread.

``f`` is held weakly by the checks.  An ``nn.Module`` (its weights change between calls) and an object that
cannot be hashed or weakly referenced are never cached: their checks run on every call.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._validate import is_real

__all__ = ["MAX_TIMES", "MAX_GRIDS", "MAX_STEP_SIZES", "Grid", "TimesEntry", "times_entry", "f_known", "note_f",
           "coarse_known", "note_coarse_quiet", "stepper_for", "MAX_STEPPERS", "clear", "times_entry_again"]

#: grids of more output times than this are not cached (keying them costs a copy of ``t``)
MAX_TIMES = 4096
#: grids kept (oldest dropped first)
MAX_GRIDS = 32
#: step sizes kept per grid (oldest dropped first): with the stage times of a solve of at most
#: 1,024 steps each, the whole cache holds at most a few hundred thousand 0-d tensors
MAX_STEP_SIZES = 8
#: the dtypes ``t`` may have to be keyed by its float64 copy (which is exact for each)
_KEYED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)

_LOCK = threading.Lock()


class Grid:
    """The steps of one ``(t, step_size)``: ``n_sub`` and ``h_int`` as ``step_grid`` returns
    them (read-only), and ``stages``: the stage times of every step per ``(nodes, dtype,
    device)``, filled by the loop (:func:`attsolver.integrate.loop.stage_times`)."""

    __slots__ = ("n_sub", "h_int", "stages")

    def __init__(self, n_sub: np.ndarray, h_int: np.ndarray):
        n_sub.flags.writeable = False
        h_int.flags.writeable = False
        self.n_sub, self.h_int = n_sub, h_int
        self.stages: dict[tuple, list[list[Tensor]]] = {}


class TimesEntry:
    """One output grid ``t`` found valid: its float64 copy and its :class:`Grid` per
    ``(step_size, max_steps)``."""

    __slots__ = ("t_np", "grids")

    def __init__(self, t_np: np.ndarray):
        t_np.flags.writeable = False
        self.t_np = t_np
        self.grids: dict[tuple, Grid] = {}

    def grid(self, step_size, max_steps: int, compute: Callable[[], tuple[np.ndarray, np.ndarray]]) -> Grid | None:
        """``compute()`` (``step_grid``'s ``(n_sub, h_int)``) once per ``(step_size, max_steps)``
        as a :class:`Grid`; an error it raises is raised on every call (nothing is kept).
        ``None``: a ``step_size`` that is not a plain number (``compute`` checks it)."""
        if step_size is not None and not is_real(step_size):
            return None
        key = (None if step_size is None else float(step_size), max_steps)
        got = self.grids.get(key)
        if got is None:
            got = Grid(*compute())
            if len(self.grids) >= MAX_STEP_SIZES:  # a sweep over many step sizes: keep the latest
                self.grids.pop(next(iter(self.grids)))
            self.grids[key] = got
        return got


_TIMES: OrderedDict[tuple, TimesEntry] = OrderedDict()
#: per thread: the ``t`` (weakly), its version counter and the entry that ``times_entry`` just
#: returned for it; :func:`times_entry_again` takes it once
_JUST_FOUND = threading.local()


def times_key(t: Tensor) -> tuple | None:
    """The key of ``t`` (dtype and values), or ``None`` where ``t`` is not cached (not a 1-D
    tensor of a real floating dtype with at most :data:`MAX_TIMES` times, on the CPU, without
    grad)."""
    # attribute reads of ~0.1 µs each (len(t) and t.device cost several times more)
    if not isinstance(t, Tensor) or t.ndim != 1 or t.requires_grad or not t.is_cpu or t.dtype not in _KEYED_DTYPES \
            or not 0 < t.shape[0] <= MAX_TIMES:
        return None
    return t.dtype, (t if t.dtype == torch.float64 else t.double()).numpy().tobytes()


def times_entry(t: Tensor, *, only_known: bool = False) -> TimesEntry | None:
    """The cache entry of ``t``; ``only_known``: ``None`` unless ``t`` was seen (and found
    valid) before, else one is made for it — call it so only once ``t`` has been checked."""
    _JUST_FOUND.last = None  # what times_entry_again may take: only this call's answer
    key = times_key(t)
    if key is None:
        return None
    with _LOCK:
        got = _TIMES.get(key)
        if got is not None:
            _TIMES.move_to_end(key)
        elif only_known:
            return None
        else:
            got = _TIMES[key] = TimesEntry(np.frombuffer(key[1], dtype=np.float64).copy())
            if len(_TIMES) > MAX_GRIDS:
                _TIMES.popitem(last=False)
    if not t.is_inference():  # an inference tensor has no version counter: nothing handed on
        _JUST_FOUND.last = (weakref.ref(t), t._version, got)
    return got


def times_entry_again(t: Tensor) -> TimesEntry | None:
    """:func:`times_entry` for the ``t`` that this thread's last call of it was given — the
    same tensor object, not modified in place since (version counter) — without keying ``t``
    again (a copy of its values, ~2 µs); the remembered entry is taken, so a later call keys
    ``t`` afresh.  ``solve`` checks ``t`` and then, a few lines later, looks up its grid."""
    last = getattr(_JUST_FOUND, "last", None)
    _JUST_FOUND.last = None
    if last is not None and last[0]() is t and last[1] == t._version:
        return last[2]
    return times_entry(t)


# --------------------------------------------------------------------------- what f has shown

#: checks remembered per f (the set is emptied when full)
MAX_KEYS_PER_F = 256
#: f -> the keys of the checks it passed
_F_SEEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cacheable(f: Any) -> bool:
    return not isinstance(f, torch.nn.Module)


def _seen(f: Any, key: tuple) -> bool:
    if not _cacheable(f):
        return False
    try:
        keys = _F_SEEN.get(f)
        return keys is not None and key in keys
    except Exception:  # noqa: BLE001 - unhashable f, or an __eq__ that does not return a bool: no cache
        return False


def _note(f: Any, key: tuple) -> None:
    if not _cacheable(f):
        return
    try:
        with _LOCK:
            keys = _F_SEEN.get(f)
            if keys is None:
                keys = _F_SEEN[f] = set()
            elif len(keys) >= MAX_KEYS_PER_F:  # e.g. a loop of solves from ever new start times: start over
                keys.clear()
            keys.add(key)
    except Exception:  # noqa: BLE001 - unhashable, or no weak reference possible: checked every call
        pass


def _state_key(y0: Tensor) -> tuple:
    return tuple(y0.shape), y0.dtype, y0.device


def f_known(f: Any, y0: Tensor, t_f: Tensor) -> bool:
    """Whether ``f`` already returned ``y0``'s shape and dtype for a state like ``y0``."""
    return _seen(f, ("f", *_state_key(y0), t_f.dtype))


def note_f(f: Any, y0: Tensor, t_f: Tensor) -> None:
    """Remember that ``f`` passed ``check_f`` for a state like ``y0``."""
    _note(f, ("f", *_state_key(y0), t_f.dtype))


def _coarse_key(method: str, h: float, y0: Tensor, t0: float) -> tuple:
    return ("coarse", method, float(h), *_state_key(y0), float(t0))


def coarse_known(f: Any, method: str, h: float, y0: Tensor, t0: float) -> bool:
    """Whether the step-doubling check passed before for this ``f``, method, step, state
    shape, dtype, device and start time."""
    return _seen(f, _coarse_key(method, h, y0, t0))


def note_coarse_quiet(f: Any, method: str, h: float, y0: Tensor, t0: float) -> None:
    """Remember a quiet step-doubling check (see :func:`coarse_known`)."""
    _note(f, _coarse_key(method, h, y0, t0))


# --------------------------------------------------------------------------- steppers

#: steppers kept for later solves (:func:`stepper_for`)
MAX_STEPPERS = 8
_STEPPERS: OrderedDict[tuple, Any] = OrderedDict()
#: methods whose steppers were found not ``reusable`` (not looked up again)
_NOT_REUSABLE: set[str] = set()
#: field values that cannot change in place (a frozen dataclass of these is immutable)
_IMMUTABLE = (int, float, complex, str, bool, type(None), tuple, frozenset, torch.dtype)


def _immutable(f: Any) -> bool:
    """A frozen dataclass whose fields are plain immutable values (e.g. ``Burgers(nu=0.01)``):
    nothing a stepper reads from it at construction can change later."""
    params = getattr(type(f), "__dataclass_params__", None)
    if params is None or not params.frozen or isinstance(f, torch.nn.Module):
        return False
    return all(isinstance(getattr(f, name), _IMMUTABLE) for name in type(f).__dataclass_fields__)


def stepper_for(f: Any, method: str, y0: Tensor, exact: bool, build: Callable[[], Any]) -> Any:
    """``build()``, or the stepper an earlier solve built for the same ``f`` (by identity),
    method, state shape, dtype, device and ``exact`` (built with ``fast_path=False``) in this
    thread — where the stepper declares itself ``reusable`` and ``f`` is immutable (see
    :func:`_immutable`).  At most :data:`MAX_STEPPERS` are kept (oldest dropped first); each
    holds its ``f``, so none outlives its entry."""
    if method in _NOT_REUSABLE:
        return build()
    key = (id(f), method, *_state_key(y0), exact, threading.get_ident())
    with _LOCK:
        hit = _STEPPERS.get(key)
        if hit is not None and hit.f is f:
            _STEPPERS.move_to_end(key)
            return hit
    stepper = build()
    if not getattr(stepper, "reusable", False):
        _NOT_REUSABLE.add(method)  # e.g. the explicit RK steppers: built in under a microsecond
        return stepper
    if getattr(stepper, "f", None) is f and _immutable(f):
        with _LOCK:
            _STEPPERS[key] = stepper
            if len(_STEPPERS) > MAX_STEPPERS:
                _STEPPERS.popitem(last=False)
    return stepper


def clear() -> None:
    """Forget everything (tests; a process that wants every check re-run)."""
    with _LOCK:
        _TIMES.clear()
        _F_SEEN.clear()
        _STEPPERS.clear()
        _NOT_REUSABLE.clear()
    _JUST_FOUND.last = None
