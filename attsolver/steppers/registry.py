"""Name -> integrator.  ``list_methods()`` shows what ``solve(method=...)`` accepts.

Three kinds of method live here:

* ``"fixed"`` — fixed-step steppers written in this package (explicit Runge–Kutta from a
  tableau, spectral ETDRK4 / IFRK4).  They take ``step_size`` and a learned ``corrector``.
* ``"adaptive"`` — adaptive reference solvers that are *not* written again here:
  torchdiffeq's ``dopri5``/``dopri8`` and SciPy's ``solve_ivp`` (``DOP853``, ``Radau``,
  ``LSODA``).  They take ``rtol``/``atol`` and no corrector.

Besides how to run it, an entry declares where the method takes part:

* ``applies_to`` — the problems it can solve (:data:`PROBLEMS`): ``"any"`` right-hand side
  ``f(t, y)``, or only a ``"semilinear"`` periodic PDE that exposes its Fourier-diagonal
  linear part (the spectral steppers);
* ``ladders`` — the classical work-precision ladders of ``attsolver.compare`` it joins
  (:data:`LADDERS`): ``"steps"`` (a fixed-step method refined over step sizes ``h / k``),
  ``"tolerance"`` (an adaptive method over ``rtol``) or ``"stiff"`` (an implicit adaptive
  method over ``rtol``, for stiff problems only);
* ``default_for`` — the problems for which it is the default fixed-step method (reference
  data, Lyapunov estimates): see :func:`default_method`.

A new method is one :func:`register_method` call; the parametrised tests iterate over
:func:`list_methods`, so a registered method is tested automatically.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from .._validate import one_of

__all__ = ["MethodSpec", "register_method", "get_method", "list_methods", "default_method",
           "LADDERS", "PROBLEMS", "FLOAT_DTYPES", "HALF_DTYPES"]

#: options every fixed-step method understands (see ``solve``'s docstring).
FIXED_OPTIONS = frozenset({"check_finite", "compile", "compile_chunk"})
#: the problems a method may be restricted to: any ``f(t, y)``, or a periodic semilinear PDE
#: ``u_t = L u + N(u)`` with a Fourier-diagonal ``L`` (a ``SpectralSystem``).
PROBLEMS = ("any", "semilinear")
#: the classical ladders of ``compare``: a fixed-step method over step sizes, an adaptive one
#: over tolerances, and an implicit (stiff) adaptive one over tolerances — run only on a problem
#: detected or declared stiff (``compare(stiff=...)``); each ladder needs one kind of method.
LADDERS = {"steps": "fixed", "tolerance": "adaptive", "stiff": "adaptive"}
#: the dtypes of ``y0`` a method supports unless its entry says otherwise: single and double
#: precision, real and complex (half precision only where a method declares it)
FLOAT_DTYPES = ("float64", "float32", "complex128", "complex64")
#: half precision too (the explicit Runge–Kutta steppers: plain torch arithmetic)
HALF_DTYPES = ("float16", "bfloat16")


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
        applies_to: the problems it solves, one of :data:`PROBLEMS` (``"any"``: every
            ``f(t, y)``; ``"semilinear"``: only a spectral semilinear PDE system).
        ladders: the ``compare`` ladders it joins, names from :data:`LADDERS` (``"steps"``
            for a fixed-step method, ``"tolerance"`` for an adaptive one); ``()``: none.
        default_for: the problems (from :data:`PROBLEMS`) for which it is the default
            fixed-step method; at most one method per problem.
        dtypes: the dtypes of ``y0`` it supports, as names (``"float32"``, ...); ``solve``
            refuses any other with an error naming the dtype and the method.  The default
            :data:`FLOAT_DTYPES` (single and double precision) is the lowest precision most
            methods support; ``complex32`` is supported by none.
        differentiable: whether gradients flow through its result; ``solve`` refuses a
            method that is not (the SciPy ones) when an input requires grad.
    """

    name: str
    kind: str
    order: int | None
    description: str
    build: Callable | None = None
    run: Callable | None = None
    options: frozenset[str] = field(default_factory=frozenset)
    needs: str = ""
    applies_to: str = "any"
    ladders: tuple[str, ...] = ()
    default_for: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = FLOAT_DTYPES
    differentiable: bool = True

    def solves(self, problem: str) -> bool:
        """Whether the method applies to a problem of kind ``problem`` (one of :data:`PROBLEMS`)."""
        return self.applies_to == "any" or self.applies_to == problem


_REGISTRY: dict[str, MethodSpec] = {}


def _check_declarations(spec: MethodSpec) -> None:
    """The ladder / problem declarations of ``spec`` are known names that fit its kind."""
    one_of("applies_to", spec.applies_to, PROBLEMS)
    for ladder in spec.ladders:
        one_of("ladders", ladder, LADDERS)
        if LADDERS[ladder] != spec.kind:
            raise ValueError(f"the {ladder!r} ladder takes {LADDERS[ladder]} methods; "
                             f"{spec.name!r} is {spec.kind}")
    for problem in spec.default_for:
        one_of("default_for", problem, PROBLEMS)
        if spec.kind != "fixed" or not spec.solves(problem):
            raise ValueError(f"{spec.name!r} cannot be the default method for {problem!r} problems: the default is "
                             f"a fixed-step method that applies to them")
        taken = [s.name for s in _REGISTRY.values() if problem in s.default_for and s.name != spec.name]
        if taken:
            raise ValueError(f"{taken[0]!r} is already the default method for {problem!r} problems")


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method; a duplicate name is an error (use another name or remove the old one)."""
    if spec.kind not in ("fixed", "adaptive"):
        raise ValueError(f"kind must be 'fixed' or 'adaptive', got {spec.kind!r}")
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is already registered")
    _check_declarations(spec)
    _REGISTRY[spec.name] = spec
    return spec


def list_methods(pattern: str = "*", *, kind: str | None = None, ladder: str | None = None,
                 problem: str | None = None) -> list[str]:
    """Registered method names (sorted) matching a shell-style ``pattern``.

    Args:
        kind: only ``"fixed"`` or only ``"adaptive"`` methods.
        ladder: only the methods that join this ``compare`` ladder (a name from :data:`LADDERS`).
        problem: only the methods that apply to a problem of this kind (from :data:`PROBLEMS`):
            ``"any"`` keeps the methods for every ``f(t, y)``, ``"semilinear"`` adds the
            spectral ones.
    """
    if ladder is not None:
        one_of("ladder", ladder, LADDERS)
    if problem is not None:
        one_of("problem", problem, PROBLEMS)
    return sorted(
        n for n, s in _REGISTRY.items()
        if fnmatch.fnmatchcase(n, pattern) and (kind is None or s.kind == kind)
        and (ladder is None or ladder in s.ladders) and (problem is None or s.solves(problem))
    )


def default_method(problem: str = "any") -> str:
    """The default fixed-step method for a problem of kind ``problem`` (one of :data:`PROBLEMS`).

    The method registered with ``problem`` in its ``default_for``; a problem without one of
    its own gets the default for ``"any"`` (today: ``"rk4"``, and ``"etdrk4"`` for
    ``"semilinear"``).  Reference data and Lyapunov estimates use it.
    """
    one_of("problem", problem, PROBLEMS)
    for wanted in (problem, "any"):
        for name, spec in _REGISTRY.items():
            if wanted in spec.default_for:
                return name
    raise LookupError(f"no default method is registered for {problem!r} problems (register one with "
                      f"default_for=({problem!r},))")


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
