"""What ``compare`` runs, and on what: the classical ladders (from the method registry) and
the test set with its reference.

A :class:`Ladder` is one method refined over its rungs — step sizes ``h / k`` for a
fixed-step method, tolerances for an adaptive one — and each rung is a :class:`Contender`.
``compare`` always runs the coarse method refined (family ``"same"``); the other ladders are
the registry's: every method that joins the ``"steps"`` or ``"tolerance"`` ladder and
applies to the problem (:func:`attsolver.steppers.registry.list_methods`), so a method joins
the comparison by its registry entry, not by a name written here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._validate import is_integer, is_real
from ..data import TrajectoryDataset, load_h5
from ..integrate import solve
from ..steppers.registry import default_method, get_method, list_methods
from ..systems import SemilinearPDE

__all__ = ["Contender", "Ladder", "TestSet", "problem_of", "build_ladders", "build_test_set",
           "REFERENCE_REFINE", "REFERENCE_REFINE_SPECTRAL", "STIFF_EXPLICIT_RUNGS"]

#: on a stiff problem, the explicit adaptive ladders keep this many of the loosest tolerances
STIFF_EXPLICIT_RUNGS = 2
#: the reference (when not given): the default method at the coarse step divided by this
REFERENCE_REFINE = 256
#: ... or, for a method that needs a semilinear PDE (spectral), that method at the step over this
REFERENCE_REFINE_SPECTRAL = 64


# --------------------------------------------------------------------------- the problem


def _is_semilinear(f) -> bool:
    # the integrator swaps this for steppers.spectral.is_spectral_system (note that it also
    # counts NavierStokes2D, which this test does not: a change of contenders for that system)
    return isinstance(f, SemilinearPDE)


def problem_of(f) -> str:
    """The registry's problem kind of ``f`` (``attsolver.steppers.registry.PROBLEMS``):
    ``"semilinear"`` for a periodic semilinear PDE system, else ``"any"``."""
    return "semilinear" if _is_semilinear(f) else "any"


# --------------------------------------------------------------------------- contenders and ladders


@dataclass(frozen=True)
class Contender:
    """One classical or corrected solve of the test set.

    Attributes:
        family: ``"same"`` (the coarse method refined), a method name (its ladder) or
            ``"corrected"``.
        label: unique name, e.g. ``"rk4 h/4"``, ``"dopri5 rtol=1e-06"``, ``"rk4 h/1 + NeurVec"``.
        method: the ``solve`` method.
        step, k: the step size ``h / k`` and ``k`` (fixed-step contenders; else ``None``).
        rtol: the relative tolerance (adaptive contenders, ``atol = rtol * 1e-2``; else ``None``).
        corrected: whether the corrector runs in this solve.
    """

    family: str
    label: str
    method: str
    step: float | None = None
    k: int | None = None
    rtol: float | None = None
    corrected: bool = False

    def entry(self) -> dict[str, Any]:
        """The result-entry fields that describe the contender (the errors and times follow)."""
        out: dict[str, Any] = {"family": self.family, "label": self.label, "method": self.method}
        if self.step is not None:
            out.update(step=self.step, k=self.k)
        if self.rtol is not None:
            out["rtol"] = self.rtol
        return out

    def runner(self, f, y0: Tensor, t: Tensor, corrector: Any = None, *,
               return_stats: bool = False) -> Callable[[], Tensor]:
        """A call that solves the test set, ``[len(t), n, *state]``, without gradients
        (``corrector`` is used only when the contender is ``corrected``); with
        ``return_stats`` it returns ``(solution, SolveStats)`` (evaluations of ``f`` counted)."""
        kw = {"step_size": self.step} if self.step is not None else {}
        opts: dict[str, Any] = {"check_finite": False}
        if self.rtol is not None:
            opts.update(rtol=self.rtol, atol=self.rtol * 1e-2)
        corr = corrector if self.corrected else None

        def run() -> Tensor:
            with torch.no_grad():
                return solve(f, y0, t, method=self.method, corrector=corr, options=opts,
                             return_stats=return_stats, **kw)
        return run


@dataclass(frozen=True)
class Ladder:
    """A method refined over its rungs: ``over="steps"`` runs it at ``h / k`` for each ``k``
    of ``rungs``, ``over="tolerance"`` at each ``rtol`` of ``rungs``."""

    family: str
    method: str
    over: str
    rungs: tuple[float, ...]

    def contenders(self, step_size: float) -> list[Contender]:
        """One contender per rung, for the coarse step ``step_size``."""
        if self.over == "tolerance":
            return [Contender(self.family, f"{self.method} rtol={tol:g}", self.method, rtol=tol) for tol in self.rungs]
        return [Contender(self.family, f"{self.method} h/{k}", self.method, step=step_size / k, k=k)
                for k in self.rungs]


def _refinements(name: str, values: Any) -> tuple[int, ...]:
    vals = tuple(values)
    if any(not is_integer(v) or v < 1 for v in vals):
        raise ValueError(f"{name} must be positive integers, got {values!r}")
    return tuple(sorted(set(int(v) for v in vals)))


def _tolerances(name: str, values: Any) -> tuple[float, ...]:
    for tol in values:
        if not (is_real(tol) and 0 < tol < 1):
            raise ValueError(f"{name} must be numbers in (0, 1), got {tol!r}")
    return tuple(float(tol) for tol in values)


def build_ladders(method: str, problem: str, *, refinements: Sequence[int], step_refinements: Sequence[int],
                  spectral_refinements: Sequence[int], tolerances: Sequence[float], stiff: bool = False) -> list[Ladder]:
    """The ladders ``compare`` runs for the coarse ``method`` on a ``problem`` (a registry
    problem kind), in this order: the method refined (``refinements``, ``1`` always
    included), each registry ``"steps"`` ladder other than the method (general methods over
    ``step_refinements``, then those that need a semilinear PDE over
    ``spectral_refinements``) and each ``"tolerance"`` ladder over ``tolerances``; on a ``stiff``
    problem, each ``"stiff"`` ladder (the implicit methods) over ``tolerances`` too, and the
    explicit ``"tolerance"`` ladders over their :data:`STIFF_EXPLICIT_RUNGS` loosest tolerances
    only (their cost is set by stability there, not by the tolerance: tighter rungs cost as much
    and add nothing).

    Each group of rungs is checked when a ladder uses it, under the name of ``compare``'s
    argument (``rk4_refinements``, ``spectral_refinements``, ``dopri_rtols``).
    """
    same = refinements if 1 in refinements else (1, *refinements)
    ladders = [Ladder("same", method, "steps", _refinements("refinements", same))]
    general_first = sorted(list_methods(ladder="steps", problem=problem),
                           key=lambda m: (get_method(m).applies_to != "any", m))
    for m in general_first:
        if m == method:
            continue
        if get_method(m).applies_to == "any":
            ladders.append(Ladder(m, m, "steps", _refinements("rk4_refinements", step_refinements)))
        else:
            ladders.append(Ladder(m, m, "steps", _refinements("spectral_refinements", spectral_refinements)))
    explicit = _tolerances("dopri_rtols", tolerances)
    if stiff:
        explicit = tuple(sorted(explicit, reverse=True)[:STIFF_EXPLICIT_RUNGS])
    for m in list_methods(ladder="tolerance", problem=problem):
        ladders.append(Ladder(m, m, "tolerance", explicit))
    for m in list_methods(ladder="stiff", problem=problem) if stiff else ():
        ladders.append(Ladder(m, m, "tolerance", _tolerances("dopri_rtols", tolerances)))
    return ladders


# --------------------------------------------------------------------------- the test set


@dataclass(frozen=True)
class TestSet:
    """The held-out problem every contender solves.

    Attributes:
        y0: initial states ``[n, *state]`` in the comparison's dtype.
        t: output times ``[time]`` (multiples of the coarse step), same dtype.
        true: the reference ``[n, time, *state]``, float64.
        source: where states and reference came from (recorded in the result).
    """

    __test__ = False  # not a pytest class, despite its name

    y0: Tensor
    t: Tensor
    true: Tensor
    source: str


def _from_data(data: Any) -> tuple[Tensor, Tensor, Tensor, str]:
    """States, times and clean reference (float64) of a data set or an HDF5 file."""
    if isinstance(data, (str, os.PathLike)):
        source = str(data)
        data = load_h5(data)
    elif isinstance(data, TrajectoryDataset):
        source = "TrajectoryDataset"
    else:
        raise TypeError(f"data must be a TrajectoryDataset or an HDF5 path, got {type(data).__name__}")
    try:
        true = data.y_true
    except ValueError:
        raise ValueError(
            "data holds noisy observations without their clean values; compare needs a clean test "
            "reference (generate the test set with noise 0, or pass y0= and t= to compute one)"
        ) from None
    true = true.to(torch.float64)
    return true[:, 0], data.t.to(torch.float64), true, source


def _from_states(y0: Any, t: Any) -> tuple[Tensor, Tensor]:
    if y0 is None or t is None:
        raise ValueError("give the held-out initial states and times (y0=, t=) or a test data set (data=)")
    if not isinstance(y0, Tensor):
        raise TypeError(f"y0 must be a tensor [n, *state], got {type(y0).__name__}")
    t = torch.as_tensor(t, dtype=torch.float64)
    if y0.ndim < 2:
        raise ValueError(f"y0 must be [n_test, *state] (a batch of initial states), got shape {tuple(y0.shape)}")
    return y0.to(torch.float64), t


def _on_step_grid(t: Tensor, true: Tensor | None, h: float) -> tuple[Tensor, Tensor | None]:
    """The times (and reference) kept on multiples of ``h``: finer test times are sub-sampled."""
    if t.ndim != 1 or len(t) < 2 or not bool((t[1:] > t[:-1]).all()):
        raise ValueError("t must be 1-D, increasing, with at least two times")
    horizon = float(t[-1] - t[0])
    if horizon < h * (1 - 1e-9):
        raise ValueError(
            f"the test horizon ({horizon:g}) is shorter than one coarse step ({h:g}); give a longer test set "
            f"(t_final >= {h:g}, better many steps) or a smaller step"
        )
    dts = (t[1:] - t[:-1]).numpy()
    dt = float(dts.mean())
    if abs(dts.max() - dts.min()) > 1e-6 * dt:
        raise ValueError("the test times must be equally spaced")
    ratio = dt / h
    if ratio < 1 - 1e-9:
        m = round(h / dt)
        if abs(h / dt - m) > 1e-6 * m:
            raise ValueError(
                f"the test interval dt={dt:g} and the step {h:g} do not fit: the step must be a whole multiple "
                f"of dt (sub-sampling the test set) or dt a whole multiple of the step"
            )
        keep = torch.arange(0, len(t), m)
        return t[keep], None if true is None else true[:, keep]
    if abs(ratio - round(ratio)) > 1e-6 * ratio:
        raise ValueError(
            f"the test interval dt={dt:g} is not a whole multiple of the step {h:g}; regenerate the test set on a "
            f"grid of multiples of the step"
        )
    return t, true


def _reference(f, y0: Tensor, t: Tensor, reference: Any, method: str, h: float) -> tuple[Tensor, str]:
    """The given ``reference`` checked, or one computed finely; and a note on its source."""
    if reference is not None:
        true = torch.as_tensor(reference, dtype=torch.float64)
        if true.shape != (len(y0), len(t), *y0.shape[1:]):
            raise ValueError(f"reference must have shape [n, len(t), *state] = "
                             f"{(len(y0), len(t), *y0.shape[1:])}, got {tuple(true.shape)}")
        if not bool(torch.isfinite(true).all()):
            bad = (~torch.isfinite(true)).reshape(len(true), -1).any(1).nonzero().flatten().tolist()
            raise ValueError(f"reference contains NaN or infinite values (trajectories {bad[:10]}"
                             f"{' ...' if len(bad) > 10 else ''}); every error would be NaN — drop those "
                             "trajectories or recompute the reference (leave reference out to compute one)")
        return true, ""
    # a method restricted to semilinear PDEs (spectral) is its own reference; others get the default
    spectral = get_method(method).applies_to != "any"
    ref_method = method if spectral else default_method("any")
    refine = REFERENCE_REFINE_SPECTRAL if spectral else REFERENCE_REFINE
    with torch.no_grad():
        true = solve(f, y0, t, method=ref_method, step_size=h / refine).transpose(0, 1)
    return true, f" (reference: {ref_method} at h/{refine})"


def build_test_set(f, y0: Any, t: Any, data: Any, reference: Any, method: str, h: float,
                   dtype: torch.dtype) -> TestSet:
    """Initial states, times and reference of the test set, on a grid of multiples of ``h``.

    From ``data`` (a :class:`attsolver.data.TrajectoryDataset` or an HDF5 path; its clean
    values are the reference) or from ``y0``/``t`` (and ``reference``, else the reference is
    computed: the default method at ``h / 256``, or a spectral ``method`` itself at ``h / 64``).
    """
    if data is not None:
        if y0 is not None or t is not None or reference is not None:
            raise ValueError("give either data= (a test data set) or y0= and t= (and reference=), not both")
        y0, t, true, source = _from_data(data)
    else:
        (y0, t), true, source = _from_states(y0, t), None, "y0/t"
    t, true = _on_step_grid(t, true, h)
    if true is None:
        true, note = _reference(f, y0, t, reference, method, h)
        source += note
    return TestSet(y0.to(dtype), t.to(dtype), true, source)
