"""Pieces shared by the ``attsolver`` subcommands: user errors, ``--param KEY=VALUE``
parsing, and the guard that turns expected errors into a message and exit code 2."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["CLIError", "parse_params", "guarded", "positive_float", "nonneg_float", "positive_int",
           "nonneg_int", "device_name", "output_file", "report_error", "check_param_types"]


class CLIError(Exception):
    """A user error with its message; printed on stderr, exit code 2."""


def parse_params(items: list[str], example: str = "width=64") -> dict[str, Any]:
    """``["a=1", "b=[2,3]", "c=text"]`` -> ``{"a": 1, "b": [2, 3], "c": "text"}`` (values as JSON,
    else plain strings)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--param expects KEY=VALUE (e.g. --param {example}), got {item!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw  # a plain string
    return params


def check_param_types(defaults: dict[str, Any], params: dict[str, Any]) -> None:
    """A ``--param`` value must have the kind of its default (a number for a number, a list
    for a list), so ``--param rho='"x"'`` is refused here, not deep inside the system."""
    for key, value in params.items():
        if key not in defaults:
            continue
        d = defaults[key]
        number = (int, float)
        if isinstance(d, number) and not isinstance(d, bool):
            if isinstance(value, bool) or not isinstance(value, number):
                raise CLIError(f"--param {key}={json.dumps(value)}: {key} must be a number (default {d!r})")
            if not math.isfinite(float(value)):
                raise CLIError(f"--param {key}: must be finite, got {value!r}")
        elif isinstance(d, bool) and not isinstance(value, bool):
            raise CLIError(f"--param {key}={json.dumps(value)}: {key} must be true or false (default {d!r})")
        elif isinstance(d, list) and not isinstance(value, list):
            raise CLIError(f"--param {key}={json.dumps(value)}: {key} must be a list like {json.dumps(d)}")


def guarded(command: str, func: Callable[[Any], int | None]) -> Callable[[Any], int]:
    """Run ``func(args)``; expected errors print ``attsolver COMMAND: error: ...`` and return 2
    (no traceback), anything else propagates."""

    def run(args) -> int:
        try:
            return int(func(args) or 0)
        except EXPECTED_ERRORS as e:
            if os.environ.get("ATTSOLVER_TRACEBACK"):
                raise
            return report_error(command, e)

    return run


# ------------------------------------------------------------------ argparse value types
# (a bad value is an argparse error naming the flag: "argument --dt: must be > 0, got 0")


def _number(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return x


def positive_float(text: str) -> float:
    x = _number(text)
    if x <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return x


def nonneg_float(text: str) -> float:
    x = _number(text)
    if x < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return x


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    n = _integer(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def nonneg_int(text: str) -> int:
    n = _integer(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return n


def device_name(text: str) -> str:
    """A torch device this build can use (``cuda`` on a CPU-only build is refused up front)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:1)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this torch build has no usable CUDA device; use --device cpu")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available here; use --device cpu")
    return text


def output_file(path: str | os.PathLike, flag: str = "-o") -> str:
    """Check an output path before any work: not a directory, its directory exists."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{flag} {path}: is a directory; give a file name (e.g. {p / 'out.h5'})")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"{flag} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise CLIError(f"{flag} {path}: directory {parent} is not writable")
    return str(path)


#: errors that are the user's (or the environment's), reported in one line
EXPECTED_ERRORS = (CLIError, ValueError, TypeError, OSError, FloatingPointError, ArithmeticError,
                   MemoryError, KeyError, IndexError)


def report_error(command: str, e: BaseException) -> int:
    """Print one line for ``e`` and return the exit code (2: a bad input or environment,
    1: an internal error — the traceback only with ``ATTSOLVER_TRACEBACK=1``)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, EXPECTED_ERRORS):
        if isinstance(e, (KeyError, IndexError, ArithmeticError, MemoryError)):
            msg = f"{type(e).__name__}: {msg}"
        print(f"attsolver {command}: error: {msg}", file=sys.stderr)
        return 2
    print(f"attsolver {command}: internal error: {type(e).__name__}: {msg} (set ATTSOLVER_TRACEBACK=1 for "
          "the traceback, and please report it)", file=sys.stderr)
    return 1
