"""``compare()``: does a corrector make *this* problem faster at the same accuracy?

Given a right-hand side ``f``, held-out initial states (or a test data set) and optionally
a trained corrector, :func:`compare` runs every contender on the same test set

* the coarse classical solve (the corrector's method and step ``h``) and the corrected one,
* the same method refined, ``h/2, h/4, ...``,
* the classical ladders of the method registry (:mod:`attsolver.evaluate.contenders`): RK4
  over steps, ``dopri5`` over tolerances and, for periodic semilinear PDEs, the spectral
  steppers (``etdrk4``, ``ifrk4``) over steps,

times them in the steady state (one untimed warm-up call each, under ``torch.no_grad()``,
every contender in the same dtype, interleaved repeats; minimum and median reported),
scores them (relative L2 error up to ¼, ½ and the whole horizon, valid prediction time in
Lyapunov times, blow-ups) and states the verdict in one line: the speed-up at equal
accuracy against the same method refined and against the best classical contender,
``>1x (pays)`` or ``<1x (does not pay)``.

"Equal accuracy" is read off the classical work-precision front: its Pareto points
(cheapest first, each more accurate than the last) joined by straight lines in log-log
coordinates (:func:`attsolver.evaluate.metrics.cost_at_accuracy`).  The same analysis produces the
speed-up columns of ``benchmarks/ode.py`` (:func:`~attsolver.evaluate.metrics.speedups_at_equal_accuracy`,
:func:`~attsolver.evaluate.metrics.score_rollout`,
:func:`~attsolver.evaluate.timing.interleaved_times`), so the benchmark tables and a user's
``attsolver compare`` are one code path.
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._io import atomic_write_text
from .._progress import progress as make_progress
from .._validate import is_integer, is_real, output_time_count
from ..steppers.registry import default_method, get_method
from .guards import check_data_match_f
from .conformal import compare_error_bars
from .contenders import Contender, TestSet, build_ladders, build_test_set, problem_of
from .lyapunov import lyapunov_for
from .metrics import HORIZONS, blow_up_limit, clamp_blow_ups, normalized_error, reference_scale, score_rollout
from .plots import save_figures
from .reference_accuracy import credit_above_reference, describe_floor, reference_accuracy
from .runtime import budget_note, describe_plan, rounds_postfix, timing_bar, timing_plan
from .confidence import (CLOCKS, bootstrap_speedup, choose_clock, machine_load, narrow_enough,
                         per_trajectory_error, point_speedup, run_rounds, timed_call)
from .result import CompareResult, make_verdict, summary_line
from .stiffness import stiffness_of

__all__ = ["compare"]


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
    dopri_rtols: Sequence[float] = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10),
    spectral_refinements: Sequence[int] = (1, 2, 4, 8),
    lyapunov_exponent: float | str | None = "auto", stiff: bool | None = None,
    match: str = "auto",
    dtype: torch.dtype = torch.float64,
    rounds: int = 5, clock: str = "auto", ci_width: float = 0.10, max_rounds: int = 40, time_budget: float = 60.0,
    out: str | os.PathLike | None = None, name: str = "compare", progress: bool = True, command: str | None = None,
    coverage: float | None = 0.9, calibration: Any = None,
) -> CompareResult:
    """Compare a corrected coarse solve with the classical solvers on held-out data.

    Args:
        f: the right-hand side ``f(t, y)`` (a plain function, an attsolver system, or a
            :class:`attsolver.systems.SemilinearPDE`, which adds the spectral steppers).
        y0, t: held-out initial states ``[n, *state]`` and the output times (the reference is then
            computed: the method at ``h / 256``, ``h / 64`` for spectral methods).  Or give ``data``.
        data: a :class:`attsolver.data.TrajectoryDataset` or an HDF5 path; its clean values (``y_true``) are
            the reference.  Output times finer than ``h`` are sub-sampled to multiples of ``h``.
        reference: the reference ``[n, len(t), *state]`` for ``y0``/``t``, if known.
        corrector: a trained :class:`attsolver.correctors.Corrector` (``None``: the classical solvers
            only); its method and step are the coarse ones.
        method, step_size: the coarse method and step (default: the corrector's, which they must equal).
        refinements: ``k`` of the same method at ``h / k`` (1 = the coarse solve).
        rk4_refinements: ``k`` of the general ``"steps"`` ladder (RK4) at ``h / k`` (method not RK4).
        dopri_rtols: tolerances of every ``"tolerance"`` ladder (``atol = rtol / 100``); ``()`` skips.
        spectral_refinements: ``etdrk4``/``ifrk4`` at ``h / k`` for a SemilinearPDE.
        stiff: ``True`` adds the registry's ``"stiff"`` ladders (``kvaerno5`` over ``dopri_rtols``), ``False``
            not; ``None`` adds them if the problem looks stiff (:mod:`attsolver.evaluate.stiffness`).
        lyapunov_exponent: a number, ``None`` (time units), ``"auto"`` (the system's own, else estimated), ``"estimate"``.
        match: the error compared at equal accuracy: ``"err_q1"``, ``"err_q2"``, ``"err_full"``, or ``"auto"`` —
            ``err_q1`` for a chaotic problem (positive exponent and a horizon over one Lyapunov time, where
            every rollout decorrelates late in the horizon), else ``err_full``.
        dtype: the dtype every contender runs in (the corrector is copied to it).
        rounds: the fewest timing rounds (interleaved, after one warm-up call each); more follow until the
            speed-up's 95 % interval is within ``±ci_width``, ``max_rounds`` or ``time_budget`` seconds.
        clock: the time the verdict reads: ``"cpu"`` (process CPU time), ``"wall"``, or ``"auto"``
            (CPU time unless the solves are too short for it); the verdict says which.
        ci_width: the relative half-width of the interval at which timing stops (0.10: ±10 %).
        max_rounds, time_budget: the most timing rounds, and seconds of timing.
        out: a folder: writes ``<name>.json``, ``<name>_work_precision.png`` and ``<name>_error_vs_time.png``.
        name: file name stem.
        progress: tqdm on a terminal, log lines otherwise.
        command: the command line that made the comparison (recorded in the JSON).
        coverage, calibration: ``result.error_bars``, a split-conformal bound on the corrected ``e(t)`` at
            ``coverage`` (``None``: none) from half the test trajectories or ``calibration`` (a data set).

    Returns:
        A :class:`~attsolver.evaluate.result.CompareResult`; ``result.verdict_line`` is the one-line verdict.

    Raises:
        ValueError / TypeError: bad input, naming the argument and the fix (a corrector for
            another method or step, a test horizon shorter than one coarse step, ...).
    """
    method, h = _check_arguments(f, dtype, rounds, corrector, method, step_size)
    _check_output(out, name, t)
    timing, load_start, problem = _timing_options(clock, ci_width, max_rounds, time_budget, rounds), machine_load(), \
        problem_of(f)
    test = build_test_set(f, y0, t, data, reference, method, h, dtype)
    data_check = None if (data is None and reference is None) else check_data_match_f(
        f, test.y0, test.t, test.true, method, h, problem)
    lam, lam_source = lyapunov_for(f, test.y0, test.t, lyapunov_exponent, h, method=default_method(problem))
    match, chaotic = _match_error(match, lam, float(test.t[-1] - test.t[0]))
    lam_units = lam if (lam is not None and lam > 0) else None
    scale, limit = reference_scale(test.true), blow_up_limit(test.true)
    model = None if corrector is None else copy.deepcopy(corrector).to(dtype).eval()
    stiffness = stiffness_of(f, test.y0, test.t, h, problem, stiff)  # a stiff problem adds the implicit ladder
    contenders = _contenders(method, problem, h, corrector, refinements=refinements, step_refinements=rk4_refinements,
                             spectral_refinements=spectral_refinements, tolerances=dopri_rtols, stiff=stiffness["stiff"])
    score = {"scale": scale, "limit": limit, "lyapunov_exponent": lam_units, "match": match}
    ref_acc = reference_accuracy(f, test, computed=data is None and reference is None, method=method, h=h,
                                 problem=problem, match=match, limit=limit)
    entries, preds, meas = _measure(f, test, contenders, model, timing, score, name=name, progress=progress,
                                    ref_acc=ref_acc)
    classical, corrected, coarse = _split(entries)
    verdict = None if corrected is None else _verdict(classical, corrected, coarse, meas, method, h, match, ref_acc)
    curves = _error_vs_time(test, preds, classical, coarse, corrected, verdict, scale, limit, match)
    setting = _setting(method, h, corrector, match, dtype, test, lam, lam_source, chaotic, limit, meas["rounds"], command)
    setting.update(_timing_setting(meas, timing, load_start, machine_load()), data_check=data_check,
                   reference_accuracy=ref_acc, stiffness=stiffness)
    if verdict is None:
        setting["summary_line"] = _summary(classical, coarse, match, ref_acc)
    bars = None if corrected is None else compare_error_bars(f, preds[corrected["label"]], test.true, test.t, scale,
                                                             coverage, calibration=calibration, model=model,
                                                             method=method, step_size=h, limit=limit)
    result = CompareResult(entries, verdict, setting, curves, error_bars=bars)
    if out is not None:
        _write(result, Path(out), name)
    return result


# --------------------------------------------------------------------------- the steps of compare


def _split(entries):
    """The classical entries, the corrected one (``None`` without a corrector) and the coarse one."""
    classical = [e for e in entries if e["family"] != "corrected"]
    corrected = next((e for e in entries if e["family"] == "corrected"), None)
    return classical, corrected, next(e for e in classical if e["family"] == "same" and e["k"] == 1)


def _summary(classical, coarse, match: str, ref_acc) -> str:
    """The line that stands for the verdict without a corrector, with the reference's accuracy."""
    floor = credit_above_reference(classical, None, {}, ref_acc, match)[3]
    return summary_line(coarse, match) + "; " + describe_floor(ref_acc, floor)


def _contenders(method: str, problem: str, h: float, corrector, **rungs) -> list[Contender]:
    """Every classical ladder's rungs (:func:`build_ladders`), then the corrected solve."""
    out = [c for ladder in build_ladders(method, problem, **rungs) for c in ladder.contenders(h)]
    if corrector is not None:
        out.append(Contender("corrected", f"{method} h/1 + {type(corrector).__name__}", method, step=h, k=1,
                             corrected=True))
    return out


def _check_output(out, name, t) -> None:
    """``name`` is a file name stem (never a path: ``"../x"`` would write outside ``out``),
    ``out``, when it exists, a folder, and ``t`` at most 1e8 output times."""
    if t is not None and hasattr(t, "__len__"):
        output_time_count(len(t), dt_name="t's spacing", t_final_name="t's span")
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or os.sep in name or "\0" in name:
        raise ValueError(f"name must be a file name stem without folders (e.g. 'lorenz_run'), got {name!r}; "
                         "put the folder in out=")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out must be a folder, but {out} is an existing file; give a folder (it is created "
                         "if missing)")


def _check_arguments(f, dtype, rounds, corrector, method, step_size) -> tuple[str, float]:
    """The plain argument checks; returns the coarse ``(method, step)``."""
    if not callable(f):
        raise TypeError(f"f must be callable as f(t, y), got {type(f).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"compare runs every contender in float32 or float64, got dtype={dtype}: the adaptive "
                        "ladder and the reference need at least single precision; pass dtype=torch.float32")
    if not is_integer(rounds) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    method, h = _coarse_setting(corrector, method, step_size)
    spec = get_method(method)
    if spec.kind != "fixed":
        raise ValueError(f"method must be a fixed-step method (the coarse solve), got the {spec.kind} {method!r}")
    return method, h


def _coarse_setting(corrector, method, step_size) -> tuple[str, float]:
    """The coarse method and step: the corrector's (``method`` / ``step_size`` must agree
    with it when given), or the given ones when there is no corrector."""
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
    if not is_real(step_size) or not math.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    return method, float(step_size)


def _match_error(match: str, lam: float | None, horizon: float) -> tuple[str, bool]:
    """The error compared at equal accuracy (``"auto"`` resolved) and whether the problem is
    chaotic over the horizon (positive exponent, more than one Lyapunov time)."""
    chaotic = lam is not None and lam > 0 and lam * horizon > 1.0
    if match == "auto":
        match = "err_q1" if chaotic else "err_full"
    if match not in dict(HORIZONS):
        raise ValueError(f"match must be one of {[k for k, _ in HORIZONS]} or 'auto', got {match!r}")
    return match, chaotic


def _timing_options(clock, ci_width, max_rounds, time_budget, rounds) -> dict[str, Any]:
    """The timing arguments checked."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {list(CLOCKS)}, got {clock!r}")
    if not is_real(ci_width) or not 0 < ci_width < 10:
        raise ValueError(f"ci_width must be a relative half-width in (0, 10), e.g. 0.1 for ±10 %, got {ci_width!r}")
    if not is_integer(max_rounds) or max_rounds < rounds:
        raise ValueError(f"max_rounds must be an integer >= rounds ({rounds}), got {max_rounds!r}")
    if not is_real(time_budget) or not time_budget > 0:
        raise ValueError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    return {"clock": clock, "ci_width": float(ci_width), "min_rounds": int(rounds), "max_rounds": int(max_rounds),
            "budget_s": float(time_budget)}


def _scored_run(c: Contender, f, test: TestSet, model, score) -> tuple[dict[str, Any], Tensor, int | None, int]:
    """One untimed run of a contender (its warm-up): the entry with its errors, the
    prediction, the evaluations of ``f`` (``None`` when none were counted) and of the corrector."""
    pred, stats = c.runner(f, test.y0, test.t, model, return_stats=True)()
    pred = pred.transpose(0, 1)
    entry = c.entry()
    entry.update(score_rollout(pred, test.true, test.t, **score))
    return entry, pred, (stats.n_f_evals or None), stats.n_corrector_calls


def _score_all(f, test: TestSet, contenders: list[Contender], model, score, too_slow_s: float, bar):
    """Every contender's untimed, scored run, coarse to fine within a ladder.  A classical
    ladder stops early, with a note in ``skipped``, after a rung that failed (an exception:
    a blow-up the adaptive solver cannot step through, its step budget spent) or took more
    than ``too_slow_s`` (its cost explodes: a stiff problem); the coarse and the corrected runs are never skipped.
    Returns entries, predictions, per-trajectory errors, timing calls, corrector calls,
    the skipped rungs ``{label: reason}`` and the estimated seconds of one timing round."""
    entries, preds, traj, fns, skipped, stop = [], {}, {}, {}, {}, {}
    corr_calls, one_round = 0, 0.0
    for c in contenders:
        bar.update(1)
        if c.family in stop:
            skipped[c.label] = stop[c.family]
            continue
        t0 = time.perf_counter()
        try:
            entry, pred, n_f, n_c = _scored_run(c, f, test, model, score)
        except (RuntimeError, FloatingPointError) as err:
            if c.corrected or (c.family == "same" and c.k == 1):
                raise
            skipped[c.label] = stop[c.family] = f"{c.label} failed: {str(err).splitlines()[0]}"
            continue
        took = time.perf_counter() - t0
        if took > too_slow_s and not c.corrected:
            stop[c.family] = f"ladder stopped: {c.label} took {took:.3g} s (over {too_slow_s:.3g} s; stiff?)"
        entry["f_evals"] = n_f
        corr_calls, one_round = max(corr_calls, n_c), one_round + took
        entries.append(entry)
        preds[c.label] = pred
        traj[c.label] = per_trajectory_error(pred, test.true, score["limit"], score["match"])
        fns[c.label] = c.runner(f, test.y0, test.t, model)
    return entries, preds, traj, fns, corr_calls, skipped, one_round


def _measure(f, test: TestSet, contenders: list[Contender], model, timing: dict[str, Any], score: dict[str, Any], *,
             name: str, progress: bool, ref_acc: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Tensor],
                                                                             dict[str, Any]]:
    """Run every contender once (scored against the reference, its evaluations of ``f``
    counted; this call is also its warm-up), then time them all in interleaved rounds until
    the verdict's interval is narrow enough (see :func:`~attsolver.evaluate.confidence.run_rounds`).
    Returns the entries, the predictions ``{label: [n, time, *state]}`` and the measurement
    (timing samples, per-trajectory errors, clock, why timing stopped)."""
    bar = make_progress(len(contenders), f"{name}: contenders", unit="run", enabled=progress)
    try:
        t0 = time.perf_counter()
        entries, preds, traj, fns, corr_calls, skipped, one_round = _score_all(
            f, test, contenders, model, score, timing["budget_s"] / 4, bar)
        plan = timing_plan(one_round, timing, time.perf_counter() - t0)
        bar.write(describe_plan(plan, len(contenders), timing["budget_s"]))
    finally:
        bar.close()
    bar = timing_bar(plan, name, progress)
    try:
        corrected = next((e for e in entries if e["family"] == "corrected"), None)
        classical, traj_v, _, _ = credit_above_reference([e for e in entries if e["family"] != "corrected"],
                                                         corrected, traj, ref_acc, score["match"])

        def enough(samples) -> bool:
            if corrected is None:
                return True
            clk, _ = choose_clock(timing["clock"], samples)
            iv = bootstrap_speedup(classical, corrected["label"], samples, traj_v, score["match"], clk, n_boot=150)
            bar.set_postfix(**rounds_postfix(iv))
            return narrow_enough(iv, timing["ci_width"])

        samples, stopped = run_rounds(fns, min_rounds=timing["min_rounds"], max_rounds=timing["max_rounds"],
                                      budget_s=timing["budget_s"], enough=enough,
                                      on_round=lambda r: bar.update(1))
    finally:
        bar.close()
    clk, clock_note = choose_clock(timing["clock"], samples)
    for e in entries:
        s = samples[e["label"]]
        e.update(time_s=min(s["wall"]), time_median_s=statistics.median(s["wall"]), cpu_s=min(s["cpu"]),
                 cpu_median_s=statistics.median(s["cpu"]), verdict_time_s=statistics.median(s[clk]))
    meas = {"samples": samples, "traj_errors": traj, "clock": clk, "clock_note": clock_note, "stopped": stopped,
            "skipped": skipped, "estimate_s": plan, "ci_width": timing["ci_width"],
            "rounds": len(next(iter(samples.values()))["wall"]), "corrector_calls": corr_calls,
            "corrector_f_equiv": None if model is None else _corrector_f_equivalents(f, model, test)}
    return entries, preds, meas


def _corrector_f_equivalents(f, model, test: TestSet, calls: int = 15) -> float | None:
    """One corrector call on the test states in evaluations of ``f`` on them (median CPU
    time of ``calls`` calls each, measured once): the machine-independent cost's exchange rate."""
    t0 = test.t[0]
    with torch.no_grad():
        dy = f(t0, test.y0) * float(model.step_size)
        fc = [timed_call(lambda: f(t0, test.y0))[1] for _ in range(calls)]
        cc = [timed_call(lambda: model(t0, test.y0, dy, float(model.step_size)))[1] for _ in range(calls)]
    tf = statistics.median(fc)
    return statistics.median(cc) / tf if tf > 0 else None


def _verdict(classical, corrected, coarse, meas, method: str, h: float, match: str, ref_acc) -> dict[str, Any]:
    """The verdict at the chosen clock's median times, with its bootstrap interval and the
    cross-check in evaluations of ``f``; rungs at the reference's accuracy are not credited
    (:func:`~attsolver.evaluate.reference_accuracy.credit_above_reference`)."""
    every = classical
    classical, traj, target, floor = credit_above_reference(every, corrected, meas["traj_errors"], ref_acc, match)
    for e in every:
        e["at_reference_accuracy"] = e["label"] in floor["not_credited"]
    timed = [dict(e, time_s=e["verdict_time_s"]) for e in classical]
    interval = bootstrap_speedup(classical, corrected["label"], meas["samples"], traj, match, meas["clock"], n_boot=400)
    cost = _cost_in_f_evals(classical, corrected, meas, match, target)
    v = make_verdict(timed, dict(corrected, time_s=corrected["verdict_time_s"]), dict(
        coarse, time_s=coarse["verdict_time_s"]), method=method, step_size=h, match=match, interval=interval,
        clock_note=meas["clock_note"], evals=cost, target_error=target)
    v.update(reference_accuracy=ref_acc, not_credited=floor["not_credited"], speedup_is_lower_bound=floor["bound"])
    v["line"] += "; " + describe_floor(ref_acc, floor)
    v["budget_note"] = budget_note(meas["stopped"], interval, meas["ci_width"])
    if v["budget_note"]:
        v["line"] += "; " + v["budget_note"]
    return v


def _cost_in_f_evals(classical, corrected, meas, match: str, target: float) -> dict[str, Any] | None:
    """The speed-up at equal accuracy with cost = evaluations of ``f`` (+ the corrector's calls
    times its cost in ``f``-equivalents); ``None`` when evaluations cannot be counted."""
    eq = meas["corrector_f_equiv"]
    usable = [e for e in classical if e.get("f_evals")]
    if eq is None or corrected.get("f_evals") is None or len(usable) < 2:
        return None
    corrected["cost_f_equiv"] = corrected["f_evals"] + meas["corrector_calls"] * eq
    for e in usable:
        e["cost_f_equiv"] = float(e["f_evals"])
    costs = {e["label"]: e["cost_f_equiv"] for e in usable + [corrected]}
    errs = dict({e["label"]: e[match] for e in usable}, **{corrected["label"]: target})
    s = point_speedup(usable, corrected["label"], costs, errs, match)
    return {"speedup_best_evals": s["speedup_best"], "corrector_f_equiv": eq, "corrector_calls": meas["corrector_calls"],
            "corrected_cost_f_equiv": corrected["cost_f_equiv"]}


def _timing_setting(meas, timing, load_start, load_end) -> dict[str, Any]:
    """How the times were measured, the machine's load and its warning."""
    busiest = max(x["load_1min"] or 0.0 for x in (load_start, load_end))
    warn = (f"the machine was busier than its cores (load {busiest:.3g} on {load_start['cores']} cores): wall "
            f"times are stretched; the verdict reads {meas['clock_note']}") if busiest > load_start["cores"] else None
    return {"clock": meas["clock"], "clock_note": meas["clock_note"], "timing_stopped": meas["stopped"],
            "ci_width_target": timing["ci_width"], "time_budget_s": timing["budget_s"],
            "load_start": load_start, "load_end": load_end, "load_warning": warn, "skipped": meas["skipped"],
            "estimate": meas["estimate_s"]}


def _error_vs_time(test: TestSet, preds: dict[str, Tensor], classical, coarse, corrected, verdict, scale: Tensor,
                   limit: float, match: str) -> dict[str, list[float]]:
    """Mean normalised error over time of the coarse, corrected, best classical (reaching
    the corrected error) and most accurate classical contenders."""
    curves: dict[str, list[float]] = {"t": [float(x) for x in test.t]}
    show = [coarse["label"]]
    if corrected is not None:
        show.append(corrected["label"])
        if verdict and verdict["best_classical_reaching"]:
            show.append(verdict["best_classical_reaching"])
    finest = min(classical, key=lambda e: e[match])["label"]
    if finest not in show:
        show.append(finest)
    for label in show:
        p = clamp_blow_ups(preds[label], limit)
        curves[label] = [float(x) for x in normalized_error(p, test.true, scale).mean(dim=0)]
    return curves


def _setting(method, h, corrector, match, dtype, test: TestSet, lam, lam_source, chaotic, limit, rounds,
             command) -> dict[str, Any]:
    """What was compared, recorded in the result."""
    return {
        "method": method, "step_size": h, "corrector": None if corrector is None else type(corrector).__name__,
        "corrector_trained_for": None if corrector is None else json.loads(json.dumps(
            getattr(corrector, "trained_for", {}), default=str)),
        "match": match, "dtype": str(dtype).replace("torch.", ""), "n_test": len(test.y0), "n_times": len(test.t),
        "horizon": float(test.t[-1] - test.t[0]), "test_source": test.source, "lyapunov_exponent": lam,
        "lyapunov_source": lam_source,
        "vpt_units": "Lyapunov times" if (lam is not None and lam > 0) else "time units",
        "chaotic": chaotic, "blow_up_limit": limit, "timing_rounds": rounds,
        "timing": "steady state: one untimed warm-up call each, torch.no_grad(), interleaved rounds; "
                  "time_s / time_median_s: minimum / median wall time, cpu_s / cpu_median_s: the same in "
                  "process CPU time; the verdict reads verdict_time_s, the median on setting['clock']",
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _write(result: CompareResult, out: Path, name: str) -> None:
    """``<name>.json`` and the two figures in ``out`` (each written atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{name}.json", "work_precision_png": out / f"{name}_work_precision.png",
             "error_vs_time_png": out / f"{name}_error_vs_time.png"}
    result.files = {k: str(v) for k, v in paths.items()}
    save_figures(result, paths["work_precision_png"], paths["error_vs_time_png"])
    atomic_write_text(paths["json"], result.to_json())
