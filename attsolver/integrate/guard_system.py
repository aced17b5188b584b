"""The guard's system check: the exact detector of a parameter shift.

``fit`` records the training data's system in ``corrector.trained_for["data"]["system"]``
(``{"name", "params"}`` as :meth:`attsolver.systems.System.config` returns it).  When a guarded
solve's ``f`` is a built-in :class:`~attsolver.systems.System` and the corrector recorded a
training system, the two are compared once, at the solve's start: another system name, or a
parameter whose value differs (numbers with relative tolerance :data:`SYSTEM_RTOL`, lists and
mappings entry by entry, anything else by equality), puts every rollout outside the training
domain from step 0.  The check is exact by construction for a parameter shift (it reads the
parameters, not the states), and it costs one comparison of two small dicts per solve.

Skipped (the feature scores alone decide): a user's plain callable ``f`` (its parameters are not
known), a corrector without a recorded system (not trained by ``fit``, or trained on data
without a system record).  Parameters recorded on one side only (a system that gained a
parameter since the checkpoint) are not compared.
"""

from __future__ import annotations

import math
from numbers import Number
from typing import Any

from ..systems.base import System

__all__ = ["SYSTEM_RTOL", "trained_system", "system_mismatch", "system_compared"]

#: two numeric parameters are the same when they differ by at most this relative amount (a value
#: written to JSON and read back, or computed as ``1 / re``, may differ in its last bits)
SYSTEM_RTOL = 1e-12


def trained_system(corrector: Any) -> dict[str, Any] | None:
    """The system the corrector's training data recorded (``{"name", "params"}``), or ``None``."""
    record = getattr(corrector, "trained_for", None)
    data = record.get("data") if isinstance(record, dict) else None
    system = data.get("system") if isinstance(data, dict) else None
    if not isinstance(system, dict) or not isinstance(system.get("name"), str):
        return None
    return system


def system_compared(f: Any, corrector: Any) -> bool:
    """Whether :func:`system_mismatch` compares parameters for this ``f`` (a built-in system, and
    a recorded training system): then the right-hand-side probe (:mod:`.guard_probe`) is not needed."""
    return isinstance(f, System) and trained_system(corrector) is not None


def system_mismatch(f: Any, corrector: Any, rtol: float = SYSTEM_RTOL) -> str | None:
    """``None`` when ``f`` is the corrector's training system (or the check does not apply: ``f``
    not a built-in system, no recorded training system); else a sentence naming the first
    difference, e.g. ``"corrector was trained on lorenz63 with rho=28.0; this solve has rho=35.0"``."""
    if not isinstance(f, System):
        return None
    trained = trained_system(corrector)
    if trained is None:
        return None
    current = f.config()
    if current.get("name") != trained["name"]:
        return f"corrector was trained on {trained['name']}; this solve has {current.get('name')}"
    diff = _first_difference(trained.get("params") or {}, current.get("params") or {}, "", rtol)
    if diff is None:
        return None
    key, old, new = diff
    return f"corrector was trained on {trained['name']} with {key}={old!r}; this solve has {key}={new!r}"


def _first_difference(old: Any, new: Any, key: str, rtol: float) -> tuple[str, Any, Any] | None:
    """The first ``(parameter, trained value, current value)`` that differs, or ``None``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in old:
            if k in new:
                got = _first_difference(old[k], new[k], f"{key}.{k}" if key else str(k), rtol)
                if got is not None:
                    return got
        return None
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        if len(old) != len(new):
            return key, old, new
        for i, (a, b) in enumerate(zip(old, new)):
            if _first_difference(a, b, f"{key}[{i}]", rtol) is not None:
                return key, old, new  # name the whole parameter
        return None
    if _is_number(old) and _is_number(new):
        a, b = float(old), float(new)
        if a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= rtol * max(abs(a), abs(b)):
            return None
        return key, old, new
    return None if old == new else (key, old, new)


def _is_number(v: Any) -> bool:
    return isinstance(v, Number) and not isinstance(v, (bool, complex))
