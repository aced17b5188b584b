"""Classical integrators: explicit Runge–Kutta from tableaus, spectral steppers for
periodic PDEs, adaptive reference solvers delegated to torchdiffeq / SciPy, the batched
embedded pairs with per-sample step control and dense output (:mod:`.embedded`), and the
implicit Kværnø family (:mod:`.implicit`)."""

from .base import ExplicitRK, Stepper
from .registry import FIXED_OPTIONS, FLOAT_DTYPES, HALF_DTYPES, MethodSpec, get_method, list_methods, register_method
from .tableau import TABLEAUS, ButcherTableau

for _tab in TABLEAUS.values():
    register_method(MethodSpec(
        name=_tab.name, kind="fixed", order=_tab.order, description=_tab.description,
        build=(lambda f, y0, _t=_tab, **options: ExplicitRK(f, _t, **options)), options=FIXED_OPTIONS,
        ladders=("steps",) if _tab.name == "rk4" else (), default_for=("any",) if _tab.name == "rk4" else (),
        dtypes=FLOAT_DTYPES + HALF_DTYPES,
    ))

from . import adaptive  # noqa: E402,F401  (registers dopri5/dopri8/scipy_*)
from . import spectral  # noqa: E402,F401  (registers etdrk4/ifrk4)
from . import implicit  # noqa: E402,F401  (registers kvaerno5/kvaerno5_fixed)

__all__ = [
    "ButcherTableau", "ExplicitRK", "MethodSpec", "Stepper", "TABLEAUS",
    "get_method", "list_methods", "register_method",
]
