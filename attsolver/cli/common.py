"""Pieces shared by the ``attsolver`` subcommands: user errors, ``--param KEY=VALUE``
parsing, and the guard that turns expected errors into a message and exit code 2."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import _validate
from ..data import TrajectoryDataset, load_h5

__all__ = ["CLIError", "parse_params", "guarded", "positive_float", "nonneg_float", "positive_int",
           "nonneg_int", "device_name", "output_file", "report_error", "check_param_types",
           "check_system_choice", "load_data", "output_times"]


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
# (a bad value is an argparse error naming the flag: "argument --dt: must be > 0, got 0"); the
# checks are _validate's, the words argparse's (it puts the flag's name in front)


def _parsed(parse: Callable[[str], Any], text: str, kind: str) -> Any:
    try:
        return parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None


def _checked(check: Callable[[str, Any], Any], value: Any, text: str, need: str) -> Any:
    """``check(name, value)`` (a :mod:`attsolver._validate` checker); its error as argparse's."""
    try:
        return check("value", value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {need}, got {text!r}") from None


def _number(text: str) -> float:
    return _checked(_validate.finite_number, _parsed(float, text, "a number"), text, "a finite number")


def positive_float(text: str) -> float:
    return _checked(_validate.positive_number, _number(text), text, "> 0")


def nonneg_float(text: str) -> float:
    return _checked(_validate.nonnegative_number, _number(text), text, ">= 0")


def positive_int(text: str) -> int:
    return _checked(_validate.positive_int, _parsed(int, text, "an integer"), text, "a positive integer")


def nonneg_int(text: str) -> int:
    def at_least_0(name: str, value: int) -> int:
        return _validate.integer(name, value, low=0)

    return _checked(at_least_0, _parsed(int, text, "an integer"), text, "an integer >= 0")


def device_name(text: str) -> str:
    """A torch device this build can use (``cuda`` on a CPU-only build is refused up front)."""
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
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{flag} {path}: is a directory; give a file name (e.g. {p / 'out.h5'})")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"{flag} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise CLIError(f"{flag} {path}: directory {parent} is not writable")
    return str(path)


def check_system_choice(args) -> None:
    """A command takes a built-in system name or ``--rhs`` (a user's f): exactly one of them."""
    rhs = getattr(args, "rhs", None)
    if rhs and args.system is not None:
        raise CLIError(f"give a built-in system name ({args.system!r}) or --rhs, not both")
    if not rhs and args.system is None:
        raise CLIError("give a built-in system name (see `attsolver systems`) or --rhs file.py:f")


def load_data(path: str, system_name: str | None) -> TrajectoryDataset:
    """The trajectory file ``path``, checked to hold ``system_name``'s trajectories (if given)."""
    data = load_h5(path)
    if system_name is not None and data.system["name"] != system_name:
        raise CLIError(
            f"{path} holds {data.system['name']!r} trajectories, not {system_name!r}; pass the "
            f"system the data was made for"
        )
    return data


def output_times(t_final: float, dt: float) -> torch.Tensor:
    """The output times ``0, dt, ..., t_final`` (float64); ``t_final`` must be a whole multiple of ``dt``."""
    steps = round(t_final / dt)
    if steps < 1 or abs(steps * dt - t_final) > 1e-9 * t_final:
        raise CLIError(f"--t-final ({t_final:g}) must be a whole multiple of --dt ({dt:g})")
    _validate.output_time_count(steps + 1, dt_name="--dt", t_final_name="--t-final")
    return torch.arange(steps + 1, dtype=torch.float64) * dt


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
