"""``compare()``: does a corrector make *this* problem faster at the same accuracy?

Given a right-hand side ``f``, held-out initial states (or a test data set) and optionally
a trained corrector, :func:`compare` runs every contender on the same test set

* the coarse classical solve (the corrector's method and step ``h``) and the corrected one,
* the same method refined, ``h/2, h/4, ...``,
* the best classical ladder: RK4 over steps, ``dopri5`` over tolerances and, for periodic
  semilinear PDEs, the spectral steppers (``etdrk4``, ``ifrk4``) over steps,

times them in the steady state (one untimed warm-up call each, under ``torch.no_grad()``,
every contender in the same dtype, interleaved repeats; minimum and median reported),
scores them (relative L2 error up to ¼, ½ and the whole horizon, valid prediction time in
Lyapunov times, blow-ups) and states the verdict in one line: the speed-up at equal
accuracy against the same method refined and against the best classical contender,
``>1x (pays)`` or ``<1x (does not pay)``.

"Equal accuracy" is read off the classical work-precision front: its Pareto points
(cheapest first, each more accurate than the last) joined by straight lines in log-log
coordinates (:func:`attsolver.evaluate.metrics.cost_at_accuracy`).  The same analysis produces the
speed-up columns of ``benchmarks/ode.py`` (:func:`speedups_at_equal_accuracy`,
:func:`score_rollout`, :func:`interleaved_times`), so the benchmark tables and a user's
``attsolver compare`` are one code path.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .metrics import blow_up, cost_at_accuracy, mape, normalized_error, relative_l2, valid_prediction_time

__all__ = [
    "compare", "CompareResult", "HORIZONS", "score_rollout", "speedups_at_equal_accuracy",
    "interleaved_times", "estimate_lyapunov_exponent", "blow_up_limit",
]

#: the error horizons reported: name -> fraction of the test horizon
HORIZONS = (("err_q1", 0.25), ("err_q2", 0.5), ("err_full", 1.0))
#: |y| beyond this multiple of the reference's scale counts as a blow-up
BLOW_UP_FACTOR = 1e3
VPT_THRESHOLD = 0.5
#: MAPE's denominator is at least this fraction of each component's spread
MAPE_FLOOR = 0.01
#: the reference (when not given): the method at the coarse step divided by this
REFERENCE_REFINE = 256
REFERENCE_REFINE_SPECTRAL = 64


# --------------------------------------------------------------------------- building blocks


def interleaved_times(fns: dict[str, Callable[[], Any]], rounds: int, *, warmup: int = 1,
                      on_round: Callable[[int], None] | None = None) -> dict[str, dict[str, float]]:
    """Steady-state wall time of each function: ``warmup`` untimed calls each, then
    ``rounds`` rounds that call every function once in turn.

    Returns ``{name: {"min_s", "median_s", "rounds"}}``.  The minimum is the most repeatable
    estimate of a solver's own cost on a machine shared with other jobs; the median shows
    how noisy the machine was.  Interleaving spreads slow phases of the machine evenly over
    the contenders instead of penalising whichever ran during them.
    """
    for _ in range(max(0, warmup)):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(max(1, rounds)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
        if on_round is not None:
            on_round(r + 1)
    return {k: {"min_s": min(v), "median_s": statistics.median(v), "rounds": len(v)} for k, v in samples.items()}


def blow_up_limit(reference: Tensor) -> float:
    """The blow-up bound: ``1e3 x max(|mean| + std)`` of the reference's components."""
    y = reference.reshape(-1, math.prod(reference.shape[2:])).to(torch.float64)
    std, mean = y.std(dim=0, correction=0), y.mean(dim=0)
    return BLOW_UP_FACTOR * float((mean.abs() + std).max())


def score_rollout(pred: Tensor, true: Tensor, t: Tensor, *, scale: Tensor, limit: float,
                  lyapunov_exponent: float | None, match: str = "err_full") -> dict[str, Any]:
    """Error metrics of a rollout against the reference, averaged over the test trajectories.

    Args:
        pred, true: ``[batch, time, *state]``; ``true[:, 0]`` is the initial state (exact for
            every solver, left out of the errors).
        t: the times ``[time]``.
        scale: per-component spread of the reference (state shape), for MAPE's floor and
            the valid prediction time.
        limit: blow-up bound (:func:`blow_up_limit`); a blown-up value is clamped to it so a
            blow-up scores as a large error, not a NaN.
        lyapunov_exponent: valid prediction time in Lyapunov times when given (``vpt``),
            else ``None`` (``vpt`` is then in time units and ``vpt_units`` says so).
        match: the error used for "equal accuracy" (copied to ``err_match``).

    Returns:
        ``err_q1``, ``err_q2``, ``err_full`` (relative L2 up to ¼, ½, all of the horizon),
        ``err_match``, ``mape`` (%), ``vpt``, ``blowup_rate`` and ``blowups`` (a count).
    """
    blown = blow_up(pred, limit)
    lim = limit
    p = torch.nan_to_num(pred.double(), nan=lim, posinf=lim, neginf=-lim).clamp(-lim, lim)
    true = true.to(torch.float64)
    nt = true.shape[1]
    out: dict[str, Any] = {}
    for name, frac in HORIZONS:
        j = int(round(frac * (nt - 1))) + 1  # t_0 .. t_{frac T}; t_0 is exact for every solver
        j = max(j, 2)
        out[name] = float(relative_l2(p[:, 1:j], true[:, 1:j]).mean())
    out["err_match"] = out[match]
    out["mape"] = float(mape(p[:, 1:], true[:, 1:], floor=MAPE_FLOOR * scale).mean())
    out["vpt"] = float(valid_prediction_time(p, true, t, scale, threshold=VPT_THRESHOLD,
                                             lyapunov_exponent=lyapunov_exponent).mean())
    out["blowup_rate"] = float(blown.double().mean())
    out["blowups"] = int(blown.sum())
    return out


def speedups_at_equal_accuracy(entries: Sequence[dict[str, Any]], err: float, time_s: float,
                               match: str) -> dict[str, Any]:
    """Speed-up of a run with error ``err`` and wall time ``time_s`` at equal accuracy.

    ``entries`` are the classical contenders (dicts with ``family``, ``label``, ``time_s``,
    the ``match`` error and, for the same method refined (``family == "same"``), ``k``).
    The cost at which a family reaches ``err`` is read off its work-precision front
    (:func:`attsolver.evaluate.metrics.cost_at_accuracy`); the speed-up is that cost over
    ``time_s``.

    Returns:
        ``speedup_same`` (against the same method at ``h/k``) and its kind (interpolated,
        extrapolated, cheapest = an upper bound, unreached), ``k_equiv`` (the refinement
        that would match ``err``), ``speedup_best`` against every classical contender and
        its kind, and ``best_classical_reaching``: the cheapest classical run at least as
        accurate as ``err`` (``None`` when none is).
    """
    same = [e for e in entries if e["family"] == "same"]
    errs = [e[match] for e in same]
    t_same, kind_same = cost_at_accuracy(errs, [e["time_s"] for e in same], err)
    k_equiv, _ = cost_at_accuracy(errs, [e["k"] for e in same], err)
    t_best, kind_best = cost_at_accuracy([e[match] for e in entries], [e["time_s"] for e in entries], err)
    reach = [e for e in entries if e[match] <= err]
    best_label = min(reach, key=lambda e: e["time_s"])["label"] if reach else None
    return {
        "speedup_same": None if t_same is None else t_same / time_s,
        "speedup_same_kind": kind_same,
        "k_equiv": k_equiv,
        "speedup_best": None if t_best is None else t_best / time_s,
        "speedup_best_kind": kind_best,
        "best_classical_reaching": best_label,
    }


def estimate_lyapunov_exponent(f: Callable[[Tensor, Tensor], Tensor], y0: Tensor, t_span: float, *,
                               step_size: float, method: str = "rk4", renormalise_every: float | None = None,
                               perturbation: float = 1e-8, t0: float = 0.0) -> float:
    """Largest Lyapunov exponent from the growth of a small perturbation (Benettin et al. 1980).

    Each state of ``y0`` (``[n, *state]``) and a copy displaced by ``perturbation`` times its
    norm are integrated side by side; every ``renormalise_every`` (default ``t_span / 50``)
    the displacement's growth is logged and it is scaled back.  The estimate is the mean log
    growth rate over ``t_span`` and the ``n`` states — rough (a few per cent for Lorenz-63
    over 20 Lyapunov times) but enough to express prediction times in Lyapunov units.  A
    non-positive value means no exponential divergence was seen.
    """
    from ..integrate.boundary import solve

    y = y0.to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    flat = d.reshape(len(y), -1)
    norm0 = perturbation * y.reshape(len(y), -1).norm(dim=1).clamp(min=1e-300)
    d = (flat / flat.norm(dim=1, keepdim=True) * norm0[:, None]).reshape(y.shape)
    z = y + d
    tau = renormalise_every if renormalise_every is not None else t_span / 50
    n_int = max(1, int(round(t_span / tau)))
    tau = t_span / n_int
    total = torch.zeros(len(y), dtype=torch.float64)
    t = t0
    with torch.no_grad():
        for _ in range(n_int):
            ts = torch.tensor([t, t + tau], dtype=torch.float64)
            both = solve(f, torch.cat([y, z]), ts, method=method, step_size=min(step_size, tau),
                         options={"check_finite": False})[-1]
            y, z = both[:len(y)], both[len(y):]
            dist = (z - y).reshape(len(y), -1).norm(dim=1)
            total += torch.log(dist / norm0)
            z = y + (z - y) * (norm0 / dist).reshape(-1, *([1] * (y.ndim - 1)))
            t += tau
    lam = total / t_span
    lam = lam[torch.isfinite(lam)]
    return float(lam.mean()) if len(lam) else math.nan


# --------------------------------------------------------------------------- the result


@dataclass
class CompareResult:
    """What :func:`compare` returns (and writes as JSON).

    Attributes:
        entries: one dict per contender: ``family`` (``same``, ``rk4``, ``dopri5``,
            ``etdrk4``, ``ifrk4``, ``corrected``), ``label``, ``method``, ``step`` or
            ``rtol``, the errors of :func:`score_rollout`, ``time_s`` (minimum) and
            ``time_median_s``.
        verdict: the speed-ups of the corrected solve (see
            :func:`speedups_at_equal_accuracy`), ``pays`` and the one-line ``line``;
            ``None`` without a corrector.
        setting: what was compared (method, step, match error, dtype, Lyapunov exponent and
            where it came from, test-set size and horizon, timing rounds).
        error_vs_time: ``{"t": [...], label: [mean normalised error per time]}`` of the
            coarse, corrected and best classical contenders.
        files: the paths written (JSON, work-precision PNG, error-vs-time PNG).
    """

    entries: list[dict[str, Any]]
    verdict: dict[str, Any] | None
    setting: dict[str, Any]
    error_vs_time: dict[str, list[float]]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def verdict_line(self) -> str:
        return self.verdict["line"] if self.verdict else self.setting.get("summary_line", "")

    def as_dict(self) -> dict[str, Any]:
        return {"schema": 1, "kind": "attsolver.compare", "setting": self.setting, "verdict": self.verdict,
                "entries": self.entries, "error_vs_time": self.error_vs_time, "files": self.files}

    def __repr__(self) -> str:
        return f"CompareResult({len(self.entries)} contenders; {self.verdict_line})"


# --------------------------------------------------------------------------- compare()


def _fmt_x(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}x"


def _check_int_list(name: str, values: Any) -> tuple[int, ...]:
    vals = tuple(values)
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in vals):
        raise ValueError(f"{name} must be positive integers, got {values!r}")
    return tuple(sorted(set(int(v) for v in vals)))


def _is_semilinear(f) -> bool:
    from ..systems import SemilinearPDE

    return isinstance(f, SemilinearPDE)


def compare(
    f: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor | None = None,
    t: Tensor | None = None,
    *,
    data: Any = None,
    reference: Tensor | None = None,
    corrector: Any = None,
    method: str | None = None,
    step_size: float | None = None,
    refinements: Sequence[int] = (1, 2, 4, 8, 16, 32),
    rk4_refinements: Sequence[int] = (1, 2, 4, 8, 16),
    dopri_rtols: Sequence[float] = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
    spectral_refinements: Sequence[int] = (1, 2, 4, 8),
    lyapunov_exponent: float | str | None = "auto",
    match: str = "auto",
    dtype: torch.dtype = torch.float64,
    rounds: int = 5,
    out: str | os.PathLike | None = None,
    name: str = "compare",
    progress: bool = True,
    command: str | None = None,
) -> CompareResult:
    """Compare a corrected coarse solve with the classical solvers on held-out data.

    Args:
        f: the right-hand side ``f(t, y)`` (a plain function, an attsolver system, or a
            :class:`attsolver.systems.SemilinearPDE`, which adds the spectral steppers).
        y0, t: held-out initial states ``[n, *state]`` and the output times (the
            reference is then computed: the method at ``h / 256``, ``h / 64`` for spectral
            methods).  Or give ``data`` instead.
        data: a :class:`attsolver.data.TrajectoryDataset` or the path of an HDF5 file; its
            clean values (``y_true``) are the reference.  Output times finer than ``h``
            are sub-sampled to multiples of ``h``.
        reference: the reference ``[n, len(t), *state]`` for ``y0``/``t``, if known.
        corrector: a trained :class:`attsolver.correctors.Corrector` (or ``None`` to
            compare the classical solvers only); its method and step are the coarse ones.
        method, step_size: the coarse method and step (default: the corrector's; they
            must equal it when both are given).
        refinements: ``k`` of the same method at ``h / k`` (1 = the coarse solve).
        rk4_refinements: RK4 at ``h / k`` (when the method is not RK4).
        dopri_rtols: dopri5 tolerances (``atol = rtol / 100``); empty to skip.
        spectral_refinements: ``etdrk4``/``ifrk4`` at ``h / k`` for a SemilinearPDE.
        lyapunov_exponent: a number, ``None`` (time units), ``"auto"`` (the system's own
            ``lyapunov_exponent`` attribute, else estimated) or ``"estimate"``.
        match: the error compared at equal accuracy: ``"err_q1"``, ``"err_q2"``,
            ``"err_full"``, or ``"auto"`` — ``err_q1`` for a chaotic problem (positive
            exponent and a horizon over one Lyapunov time, where every rollout decorrelates
            late in the horizon), else ``err_full``.
        dtype: the dtype every contender runs in (the corrector is copied to it).
        rounds: timing rounds (interleaved, after one warm-up call each).
        out: a folder: writes ``<name>.json``, ``<name>_work_precision.png`` and
            ``<name>_error_vs_time.png`` (atomically; only after everything ran).
        name: file name stem.
        progress: tqdm on a terminal, log lines otherwise.
        command: the command line that made the comparison (recorded in the JSON).

    Returns:
        A :class:`CompareResult`; ``result.verdict_line`` is the one-line verdict.

    Raises:
        ValueError / TypeError: bad input, naming the argument and the fix (a corrector for
            another method or step, a test horizon shorter than one coarse step, ...).
    """
    from .._progress import progress as make_progress
    from ..integrate.boundary import solve
    from ..steppers import get_method

    if not callable(f):
        raise TypeError(f"f must be callable as f(t, y), got {type(f).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    method, h = _coarse_setting(corrector, method, step_size)
    spec = get_method(method)
    if spec.kind != "fixed":
        raise ValueError(f"method must be a fixed-step method (the coarse solve), got the {spec.kind} {method!r}")

    y0, t, true, source = _test_set(f, y0, t, data, reference, method, h, dtype)
    n = len(y0)
    lam, lam_source = _lyapunov(f, y0, t, lyapunov_exponent, h)
    horizon = float(t[-1] - t[0])
    chaotic = lam is not None and lam > 0 and lam * horizon > 1.0
    if match == "auto":
        match = "err_q1" if chaotic else "err_full"
    if match not in dict(HORIZONS):
        raise ValueError(f"match must be one of {[k for k, _ in HORIZONS]} or 'auto', got {match!r}")

    flat = true.reshape(-1, math.prod(true.shape[2:]))
    scale = flat.std(dim=0, correction=0).reshape(true.shape[2:])
    scale = torch.where(scale > 0, scale, torch.full_like(scale, float(scale.max()) if float(scale.max()) > 0 else 1.0))
    limit = blow_up_limit(true)
    lam_units = lam if (lam is not None and lam > 0) else None

    model = None
    if corrector is not None:
        model = copy.deepcopy(corrector).to(dtype).eval()

    specs: list[dict[str, Any]] = []
    for k in _check_int_list("refinements", refinements if 1 in refinements else (1, *refinements)):
        specs.append({"family": "same", "label": f"{method} h/{k}", "method": method, "step": h / k, "k": k})
    if method != "rk4":
        for k in _check_int_list("rk4_refinements", rk4_refinements):
            specs.append({"family": "rk4", "label": f"rk4 h/{k}", "method": "rk4", "step": h / k, "k": k})
    if _is_semilinear(f):
        for sm in ("etdrk4", "ifrk4"):
            if sm != method:
                for k in _check_int_list("spectral_refinements", spectral_refinements):
                    specs.append({"family": sm, "label": f"{sm} h/{k}", "method": sm, "step": h / k, "k": k})
    for tol in dopri_rtols:
        if not (isinstance(tol, numbers.Real) and 0 < tol < 1):
            raise ValueError(f"dopri_rtols must be numbers in (0, 1), got {tol!r}")
        specs.append({"family": "dopri5", "label": f"dopri5 rtol={tol:g}", "method": "dopri5",
                      "rtol": float(tol), "options": {"rtol": float(tol), "atol": float(tol) * 1e-2}})
    if model is not None:
        specs.append({"family": "corrected", "label": f"{method} h/1 + {type(corrector).__name__}",
                      "method": method, "step": h, "k": 1, "corrector": True})

    def runner(s: dict[str, Any]) -> Callable[[], Tensor]:
        kw = {"step_size": s["step"]} if "step" in s else {}
        opts = {"check_finite": False, **s.get("options", {})}
        corr = model if s.get("corrector") else None

        def run() -> Tensor:
            with torch.no_grad():
                return solve(f, y0, t, method=s["method"], corrector=corr, options=opts, **kw)
        return run

    entries, fns, preds = [], {}, {}
    bar = make_progress(len(specs) + rounds, f"{name}: contenders", unit="run", enabled=progress)
    try:
        for s in specs:
            run = runner(s)
            pred = run().transpose(0, 1)
            entry = {k: v for k, v in s.items() if k not in ("options", "corrector")}
            entry.update(score_rollout(pred, true, t, scale=scale, limit=limit, lyapunov_exponent=lam_units,
                                       match=match))
            entries.append(entry)
            preds[s["label"]] = pred
            fns[s["label"]] = run
            bar.update(1)
        times = interleaved_times(fns, rounds, warmup=0, on_round=lambda r: bar.update(1))
    finally:
        bar.close()
    for e in entries:
        e["time_s"] = times[e["label"]]["min_s"]
        e["time_median_s"] = times[e["label"]]["median_s"]

    classical = [e for e in entries if e["family"] != "corrected"]
    coarse = next(e for e in classical if e["family"] == "same" and e["k"] == 1)
    verdict = None
    if model is not None:
        corr = next(e for e in entries if e["family"] == "corrected")
        verdict = speedups_at_equal_accuracy(classical, corr[match], corr["time_s"], match)
        verdict["error_ratio_vs_coarse"] = corr[match] / coarse[match] if coarse[match] > 0 else None
        verdict["time_ratio_vs_coarse"] = corr["time_s"] / coarse["time_s"]
        verdict["pays"] = bool(verdict["speedup_best"] is not None and verdict["speedup_best"] > 1.0)
        verdict["line"] = _verdict_line(method, h, match, corr, coarse, verdict)

    # error over time of the coarse, corrected and best classical contenders
    curves: dict[str, list[float]] = {"t": [float(x) for x in t]}
    show = [coarse["label"]]
    if model is not None:
        show.append(next(e for e in entries if e["family"] == "corrected")["label"])
        if verdict and verdict["best_classical_reaching"]:
            show.append(verdict["best_classical_reaching"])
    finest = min(classical, key=lambda e: e[match])["label"]
    if finest not in show:
        show.append(finest)
    for label in show:
        p = torch.nan_to_num(preds[label].double(), nan=limit, posinf=limit, neginf=-limit).clamp(-limit, limit)
        curves[label] = [float(x) for x in normalized_error(p, true, scale).mean(dim=0)]

    setting = {
        "method": method, "step_size": h, "corrector": None if corrector is None else type(corrector).__name__,
        "corrector_trained_for": None if corrector is None else json.loads(json.dumps(
            getattr(corrector, "trained_for", {}), default=str)),
        "match": match, "dtype": str(dtype).replace("torch.", ""), "n_test": n, "n_times": len(t),
        "horizon": horizon, "test_source": source, "lyapunov_exponent": lam, "lyapunov_source": lam_source,
        "vpt_units": "Lyapunov times" if lam_units is not None else "time units",
        "chaotic": chaotic, "blow_up_limit": limit, "timing_rounds": rounds,
        "timing": "steady state: one untimed warm-up call each, torch.no_grad(), interleaved rounds; "
                  "time_s is the minimum, time_median_s the median",
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if verdict is None:
        setting["summary_line"] = (f"no corrector: {coarse['label']} {match} {coarse[match]:.3g} in "
                                   f"{coarse['time_s'] * 1e3:.3g} ms; see the work-precision front")
    result = CompareResult(entries, verdict, setting, curves)
    if out is not None:
        _write(result, Path(out), name)
    return result


def _verdict_line(method, h, match, corr, coarse, v) -> str:
    where = {"err_q1": "1/4 of the horizon", "err_q2": "1/2 of the horizon", "err_full": "the whole horizon"}[match]
    pays = ">1x (pays)" if v["pays"] else "<1x (does not pay)"
    k, ks, kb = v["k_equiv"], v["speedup_same_kind"], v["speedup_best_kind"]
    same_note = {"interpolated": f" (= h/{k:.3g})" if k is not None else "",
                 "extrapolated": f" (~h/{k:.3g}, extrapolated)" if k is not None else " (extrapolated)",
                 "cheapest": " (an upper bound: the uncorrected solve is already as accurate)"}.get(ks, "")
    reach = v["best_classical_reaching"] or "no classical run reaches it"
    best_note = {"extrapolated": ", extrapolated", "cheapest": ", an upper bound"}.get(kb, "")
    return (f"verdict: {corr['label'].split(' + ')[-1]} on {method} h={h:g}: error {corr[match]:.3g} up to {where} "
            f"(uncorrected {coarse[match]:.3g}) in {corr['time_s'] * 1e3:.3g} ms; speed-up at equal accuracy "
            f"{_fmt_x(v['speedup_same'])} vs {method} refined{same_note} and {_fmt_x(v['speedup_best'])} vs the "
            f"best classical ({reach}{best_note}): {pays}")


def _coarse_setting(corrector, method, step_size) -> tuple[str, float]:
    if corrector is not None:
        for attr in ("method", "step_size"):
            if not hasattr(corrector, attr):
                raise TypeError(
                    f"corrector must be an attsolver Corrector (it records the method and step it was "
                    f"trained for), got {type(corrector).__name__}"
                )
        if method is not None and method != corrector.method:
            raise ValueError(
                f"corrector was trained for method {corrector.method!r}, not {method!r}; compare it at "
                f"method={corrector.method!r} (or leave method out) or train one for {method!r}"
            )
        if step_size is not None and abs(float(step_size) - corrector.step_size) > 1e-9 * corrector.step_size:
            raise ValueError(
                f"corrector was trained for step_size={corrector.step_size:g}, not {step_size:g}; compare it "
                f"at step_size={corrector.step_size:g} (or leave step_size out) or train one for {step_size:g}"
            )
        return corrector.method, float(corrector.step_size)
    if method is None or step_size is None:
        raise ValueError("without a corrector give method= and step_size= (the coarse solve to compare)")
    if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) or not math.isfinite(step_size) \
            or step_size <= 0:
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    return method, float(step_size)


def _test_set(f, y0, t, data, reference, method, h, dtype):
    """Initial states, times and reference of the test set, on a grid of multiples of ``h``."""
    from ..integrate.boundary import solve

    if data is not None:
        if y0 is not None or t is not None or reference is not None:
            raise ValueError("give either data= (a test data set) or y0= and t= (and reference=), not both")
        from ..data import TrajectoryDataset, load_h5

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
        t = data.t.to(torch.float64)
        true = true.to(torch.float64)
        y0 = true[:, 0]
    else:
        if y0 is None or t is None:
            raise ValueError("give the held-out initial states and times (y0=, t=) or a test data set (data=)")
        if not isinstance(y0, Tensor):
            raise TypeError(f"y0 must be a tensor [n, *state], got {type(y0).__name__}")
        t = torch.as_tensor(t, dtype=torch.float64)
        if y0.ndim < 2:
            raise ValueError(f"y0 must be [n_test, *state] (a batch of initial states), got shape {tuple(y0.shape)}")
        y0 = y0.to(torch.float64)
        source = "y0/t"
        true = None
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
        t = t[keep]
        if true is not None:
            true = true[:, keep]
    elif abs(ratio - round(ratio)) > 1e-6 * ratio:
        raise ValueError(
            f"the test interval dt={dt:g} is not a whole multiple of the step {h:g}; regenerate the test set on a "
            f"grid of multiples of the step"
        )
    if true is None:
        if reference is not None:
            true = torch.as_tensor(reference, dtype=torch.float64)
            if true.shape != (len(y0), len(t), *y0.shape[1:]):
                raise ValueError(f"reference must have shape [n, len(t), *state] = "
                                 f"{(len(y0), len(t), *y0.shape[1:])}, got {tuple(true.shape)}")
        else:
            ref_method = method if method in ("etdrk4", "ifrk4") else "rk4"
            refine = REFERENCE_REFINE_SPECTRAL if ref_method != "rk4" else REFERENCE_REFINE
            with torch.no_grad():
                true = solve(f, y0, t, method=ref_method, step_size=h / refine).transpose(0, 1)
            source += f" (reference: {ref_method} at h/{refine})"
    return y0.to(dtype), t.to(dtype), true, source


def _lyapunov(f, y0, t, lyapunov_exponent, h) -> tuple[float | None, str]:
    if lyapunov_exponent is None:
        return None, "not used"
    if isinstance(lyapunov_exponent, numbers.Real) and not isinstance(lyapunov_exponent, bool):
        if not math.isfinite(lyapunov_exponent):
            raise ValueError(f"lyapunov_exponent must be finite, got {lyapunov_exponent!r}")
        return float(lyapunov_exponent), "given"
    if lyapunov_exponent not in ("auto", "estimate"):
        raise ValueError(f"lyapunov_exponent must be a number, None, 'auto' or 'estimate', got {lyapunov_exponent!r}")
    if lyapunov_exponent == "auto":
        lam = getattr(f, "lyapunov_exponent", None)
        if isinstance(lam, numbers.Real) and math.isfinite(lam):
            return float(lam), "the system's lyapunov_exponent"
    horizon = float(t[-1] - t[0])
    method = "etdrk4" if _is_semilinear(f) else "rk4"
    lam = estimate_lyapunov_exponent(f, y0[:4].to(torch.float64), max(horizon, 20 * h), step_size=h / 8,
                                     method=method, t0=float(t[0]))
    return (lam if math.isfinite(lam) else None), "estimated (Benettin, perturbation growth)"


# --------------------------------------------------------------------------- output


def _write(result: CompareResult, out: Path, name: str) -> None:
    from .._report import save_png
    from .._io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{name}.json", "work_precision_png": out / f"{name}_work_precision.png",
             "error_vs_time_png": out / f"{name}_error_vs_time.png"}
    result.files = {k: str(v) for k, v in paths.items()}
    import matplotlib

    matplotlib.use("Agg")
    save_png(plot_work_precision(result), paths["work_precision_png"], dpi=110)
    save_png(plot_error_vs_time(result), paths["error_vs_time_png"], dpi=110)
    atomic_write_text(paths["json"], json.dumps(_finite(result.as_dict()), indent=1, allow_nan=False))


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


_STYLES = {"same": "k-o", "rk4": "b-s", "dopri5": "g-d", "etdrk4": "m-^", "ifrk4": "c-v"}


def plot_work_precision(result: CompareResult):
    """Error (the ``match`` error) against wall time for every contender; a matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    match = result.setting["match"]
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for fam, style in _STYLES.items():
        es = [e for e in result.entries if e["family"] == fam]
        if es:
            name = {"same": f"{result.setting['method']} h/k", "dopri5": "dopri5 over rtol"}.get(fam, f"{fam} h/k")
            ax.plot([e["time_s"] * 1e3 for e in es], [max(e[match], 1e-16) for e in es], style, ms=4, lw=1,
                    label=name)
    for e in result.entries:
        if e["family"] == "corrected":
            ax.scatter([e["time_s"] * 1e3], [max(e[match], 1e-16)], marker="*", s=140, color="red", zorder=5,
                       label=e["label"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow decade would print overlapping minor labels
    ax.set_xlabel("wall time of the test batch (ms, steady state, min over rounds)")
    where = {"err_q1": "up to 1/4 horizon", "err_q2": "up to 1/2 horizon", "err_full": "whole horizon"}[match]
    ax.set_ylabel(f"relative L2 error ({where})")
    title = "work-precision"
    if result.verdict:
        v = result.verdict
        title += f": {_fmt_x(v['speedup_same'])} vs same method, {_fmt_x(v['speedup_best'])} vs best classical"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_error_vs_time(result: CompareResult):
    """Mean normalised error ``e(t)`` of the coarse, corrected and best classical solves."""
    import matplotlib.pyplot as plt

    curves = result.error_vs_time
    t = curves["t"]
    lam = result.setting["lyapunov_exponent"] if result.setting["vpt_units"] == "Lyapunov times" else None
    x = [(v - t[0]) * lam for v in t] if lam else [v - t[0] for v in t]
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for label, ys in curves.items():
        if label == "t":
            continue
        ax.semilogy(x[1:], [max(y, 1e-16) for y in ys[1:]], lw=1.5 if "+" in label else 1, label=label)
    ax.axhline(VPT_THRESHOLD, color="gray", ls="--", lw=0.8, label=f"valid-prediction threshold {VPT_THRESHOLD}")
    ax.set_xlabel("time (Lyapunov times)" if lam else "time")
    ax.set_ylabel("normalised error e(t) (mean over the test set)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig
