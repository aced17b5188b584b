"""Pieces shared by the ``attsolver`` subcommands: user errors, ``--param KEY=VALUE``
parsing, and the guard that turns expected errors into a message and exit code 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["CLIError", "parse_params", "guarded"]


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


def guarded(command: str, func: Callable[[Any], int | None]) -> Callable[[Any], int]:
    """Run ``func(args)``; expected errors print ``attsolver COMMAND: error: ...`` and return 2
    (no traceback), anything else propagates."""

    def run(args) -> int:
        try:
            return int(func(args) or 0)
        except (CLIError, ValueError, TypeError, OSError, FloatingPointError) as e:
            print(f"attsolver {command}: error: {e}", file=sys.stderr)
            return 2

    return run
