"""Name -> integrator.  ``list_methods()`` shows what ``solve(method=...)`` accepts.

Three kinds of method live here:

* ``"fixed"`` — fixed-step steppers written in this package (explicit Runge–Kutta from a
  tableau, spectral ETDRK4 / IFRK4).  They take ``step_size`` and a learned ``corrector``.
* ``"adaptive"`` — adaptive reference solvers that are *not* written again here:
  torchdiffeq's ``dopri5``/``dopri8`` and SciPy's ``solve_ivp`` (``DOP853``, ``Radau``,
  ``LSODA``).  They take ``rtol``/``atol`` and no corrector.

A new method is one :func:`register_method` call; the parametrised tests iterate over
:func:`list_methods`, so a registered method is tested automatically.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MethodSpec", "register_method", "get_method", "list_methods"]

#: options every fixed-step method understands (see ``solve``'s docstring).
FIXED_OPTIONS = frozenset({"check_finite", "compile", "compile_chunk"})


@dataclass(frozen=True)
class MethodSpec:
    """What the registry knows about one method.

    Args:
        name: the string passed as ``solve(method=...)``.
        kind: ``"fixed"`` or ``"adaptive"``.
        order: classical order (``None`` for adaptive methods where it is not meaningful to users).
        description: one line shown by ``list_methods(verbose=True)``.
        build: fixed-step only — ``build(f, y0) -> Stepper``.
        run: adaptive only — ``run(f, y0, t, options) -> Tensor [len(t), *y0.shape]``.
        options: option keys the method accepts; anything else is a ``ValueError``.
        needs: a short phrase naming what ``f`` must provide (spectral methods), or ``""``.
    """

    name: str
    kind: str
    order: int | None
    description: str
    build: Callable | None = None
    run: Callable | None = None
    options: frozenset[str] = field(default_factory=frozenset)
    needs: str = ""


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method; a duplicate name is an error (use another name or remove the old one)."""
    if spec.kind not in ("fixed", "adaptive"):
        raise ValueError(f"kind must be 'fixed' or 'adaptive', got {spec.kind!r}")
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_methods(pattern: str = "*", *, kind: str | None = None) -> list[str]:
    """Registered method names matching a shell-style ``pattern``, optionally of one ``kind``."""
    return sorted(
        n for n, s in _REGISTRY.items()
        if fnmatch.fnmatchcase(n, pattern) and (kind is None or s.kind == kind)
    )


def get_method(name: str) -> MethodSpec:
    """The spec for ``name``; an unknown name raises ``ValueError`` listing the choices."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a string, got {type(name).__name__}; choices: {', '.join(list_methods())}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; choose one of: {', '.join(list_methods())}"
        ) from None
