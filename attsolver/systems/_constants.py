"""Constant tensors of the built-in systems' right-hand sides, made once per dtype and device.

A tiny system's ``f`` (Lorenz-63: three components) costs torch's per-operation dispatch, a
few microseconds an operation, not arithmetic: turning a Python tuple of parameters into a
tensor on every call (``torch.as_tensor``) costs as much as the arithmetic itself.  This cache
keeps such tensors per ``(key, dtype, device)``.

It stays out of the way of torch's transforms: under ``torch.compile`` (tracing) or for a
tensor subclass (fake, functional tensors...) the constant is made afresh and not kept, and a
kept one is made outside inference mode (an inference tensor could not be saved for a later
backward pass).  ``torch.func``'s ``vmap``/``jacrev`` see plain constant tensors either way.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["constant"]

#: (key, dtype, device) -> tensor; cleared when it grows past _MAX (a sweep over parameters)
_KEPT: dict = {}
_MAX = 256


def constant(key, like: Tensor, build: Callable[[], object]) -> Tensor:
    """The tensor ``build()`` (nested lists/tuples of numbers, or a tensor) in ``like``'s dtype
    and device, made once per ``key``: a hashable naming the system and every parameter that
    ``build`` reads (a tuple of plain values: cheaper to hash than a dataclass)."""
    if torch.compiler.is_compiling() or type(like) is not Tensor:
        return torch.as_tensor(build(), dtype=like.dtype, device=like.device)
    k = (key, like.dtype, like.device)
    c = _KEPT.get(k)
    if c is None:
        if len(_KEPT) >= _MAX:
            _KEPT.clear()
        with torch.inference_mode(False):
            c = torch.as_tensor(build(), dtype=like.dtype, device=like.device)
        _KEPT[k] = c
    return c
