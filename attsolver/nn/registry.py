"""Name -> attention gate.  ``make_attention("se", channels=64)`` builds one, ``list_attention()``
shows what is registered.

A gate maps an input ``x`` (``[B, C_in]`` vectors, or ``[B, C_in, *spatial]`` feature maps,
which it pools over the spatial dimensions) to a gate ``a`` in ``(0, 1)`` with ``channels``
entries per sample, shaped to broadcast against ``x`` (``[B, C]`` or ``[B, C, 1, ...]``).
The same gates serve the solver correctors and the vision models.

A new gate is one class decorated with :func:`register_attention`; the parametrised tests
iterate over :func:`list_attention`, so it is tested automatically.  Gate classes accept at
least ``channels`` and the keywords ``in_channels`` (default ``channels``),
``lipschitz_cap`` (``None`` or a bound on the spectral norm of each linear map), ``dtype``
and ``device`` (options of other gates they have no use for, such as ``reduction``, may be
accepted and ignored), set a
class attribute ``stateful`` (``False``: ``forward(x) -> a``; a gate that carries a hidden
state from call to call, like DIA's LSTM cell, sets ``True`` and implements
``forward(x, state=None) -> (a, state)`` with ``None`` starting a new sequence) and implement
``lipschitz_bound() -> float | None`` (an upper bound on the gate's Lipschitz constant in its
pooled input, which the tests check empirically).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from torch import nn

__all__ = ["register_attention", "make_attention", "list_attention", "get_attention"]

_ATTENTION: dict[str, type[nn.Module]] = {}


def register_attention(name: str):
    """Class decorator: make the gate class reachable as ``make_attention(name, ...)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an attention name must be a non-empty string, got {name!r}")

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _ATTENTION:
            raise ValueError(f"attention {name!r} is already registered (by {_ATTENTION[name].__name__})")
        _ATTENTION[name] = cls
        cls.attention_name = name
        return cls

    return decorator


def list_attention(pattern: str = "*") -> list[str]:
    """Registered gate names matching a shell-style ``pattern``."""
    return sorted(n for n in _ATTENTION if fnmatch.fnmatchcase(n, pattern))


def get_attention(name: str) -> type[nn.Module]:
    """The gate class registered as ``name``; an unknown name raises ``ValueError`` with the choices."""
    if not isinstance(name, str):
        raise TypeError(f"attention must be a name (str) or a gate class, got {type(name).__name__}")
    try:
        return _ATTENTION[name]
    except KeyError:
        raise ValueError(
            f"unknown attention {name!r}; choose one of: {', '.join(list_attention())}"
        ) from None


def make_attention(name: str | type[nn.Module], channels: int, **kwargs: Any) -> nn.Module:
    """Build a gate by registered name (or from a gate class) with ``channels`` outputs.

    Args:
        name: a name from :func:`list_attention` or a gate class.
        channels: number of gate entries per sample (``C``).
        **kwargs: passed to the class (``in_channels``, ``lipschitz_cap``, ``reduction``, ...).
    """
    cls = name if isinstance(name, type) else get_attention(name)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    return cls(channels, **kwargs)
