"""One set of argument checkers for every boundary (``solve``, ``fit``, ``compare``, the
systems, the data layer and the command line).

Each checker names the argument, says what it must be and echoes what it got, so that an
error message reads the same wherever the argument enters the library. A wrong *type* is a
``TypeError``; a value of the right type outside its range is a ``ValueError``. ``bool`` is
never accepted as a number (``True`` is an ``int`` to Python, never a step size to a user).
Boundaries whose wrong-type errors have always been ``ValueError`` (the systems' parameters,
the data layer) keep that contract with ``type_error=False``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["is_real", "is_integer", "finite_number", "positive_number", "positive_finite",
           "nonnegative_number", "positive_int", "integer", "one_of", "boolean", "whole_multiple"]


def is_real(value: Any) -> bool:
    """A real number that is not a ``bool`` (NumPy and torch scalars included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """An integer that is not a ``bool`` (NumPy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def whole_multiple(ratio: float, rtol: float) -> int | None:
    """``round(ratio)`` where ``ratio`` (a span over a step) is a whole number ``>= 1`` within
    ``rtol * max(1, ratio)``, else ``None``: the callers' messages say what to change."""
    k = round(ratio)
    return k if k >= 1 and abs(ratio - k) <= rtol * max(1.0, ratio) else None


def _bounds(low, high, low_open, high_open) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def finite_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False, allow_inf: bool = False,
                  why: str = "", what: str | None = None, type_error: bool = True) -> float:
    """``value`` as a float, checked to be a real number within the bounds.

    Args:
        name: the argument's name, as the caller wrote it.
        low, high: bounds (``None``: unbounded); ``low_open`` / ``high_open`` exclude them.
        allow_inf: accept ``+inf`` (a bound of "no limit"); NaN is never accepted.
        why: appended to the message (e.g. ``" (the step of the coarse solver)"``).
        what: what the message says the value must be (default built from the bounds,
            e.g. ``"a finite number > 0"``).
        type_error: a value that is not a real number is a ``TypeError`` naming its type;
            ``False``: a ``ValueError`` with the text of an out-of-range value.
    """
    if what is None:
        bound = _bounds(low, high, low_open, high_open)
        what = f"a {'' if allow_inf else 'finite '}number" + (f" {bound}" if bound else "")
    if not is_real(value):
        _wrong_type(name, value, what + why, type_error)
    v = float(value)
    bad = math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0))
    if not bad and low is not None:
        bad = v <= low if low_open else v < low
    if not bad and high is not None and not math.isinf(v):
        bad = v >= high if high_open else v > high
    if bad:
        raise ValueError(f"{name} must be {what}{why}, got {value!r}")
    return v


def _wrong_type(name: str, value: Any, what: str, type_error: bool) -> None:
    if type_error:
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    raise ValueError(f"{name} must be {what}, got {value!r}")


def positive_number(name: str, value: Any, *, allow_inf: bool = False, why: str = "",
                    type_error: bool = True) -> float:
    """A finite number > 0 (a step size, a tolerance, a length, a viscosity)."""
    return finite_number(name, value, low=0.0, low_open=True, allow_inf=allow_inf, why=why, type_error=type_error)


def positive_finite(name: str, value: Any, *, why: str = "", type_error: bool = True) -> float:
    """A finite number > 0, in the words "must be a positive finite number" of the systems'
    parameters and the coarse/fine set-ups (their messages are matched by tests and users);
    the same check as :func:`positive_number`."""
    return finite_number(name, value, low=0.0, low_open=True, why=why, what="a positive finite number",
                         type_error=type_error)


def nonnegative_number(name: str, value: Any, *, why: str = "", type_error: bool = True) -> float:
    """A finite number >= 0 (a noise level, a weight decay)."""
    return finite_number(name, value, low=0.0, why=why, type_error=type_error)


def integer(name: str, value: Any, *, low: int | None = None, high: int | None = None, why: str = "",
            type_error: bool = True) -> int:
    """``value`` as an int, checked to lie in ``[low, high]`` (``type_error`` as in :func:`finite_number`)."""
    what = "a positive integer" if low == 1 and high is None else \
        "an integer" + (f" {_bounds(low, high, False, False)}" if low is not None or high is not None else "")
    if not is_integer(value):
        _wrong_type(name, value, what + why, type_error)
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be {what}{why}, got {value!r}")
    return v


def positive_int(name: str, value: Any, *, why: str = "", type_error: bool = True) -> int:
    """An integer >= 1 (a count, a width, a number of steps)."""
    return integer(name, value, low=1, why=why, type_error=type_error)


def one_of(name: str, value: Any, choices) -> Any:
    """``value`` if it is one of ``choices``; the message lists them."""
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    """A ``bool`` (NumPy's included); ``0``/``1`` are refused as flags are easy to mistype."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)
