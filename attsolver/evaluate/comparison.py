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
from .contenders import Contender, TestSet, build_ladders, build_test_set, problem_of
from .lyapunov import lyapunov_for
from .metrics import HORIZONS, blow_up_limit, clamp_blow_ups, normalized_error, reference_scale, score_rollout
from .plots import save_figures
from .result import CompareResult, make_verdict, summary_line
from .timing import interleaved_times

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
        rk4_refinements: ``k`` of the registry's general ``"steps"`` ladder (RK4) at ``h / k``
            (when the method is not RK4).
        dopri_rtols: tolerances of the ``"tolerance"`` ladder (dopri5; ``atol = rtol / 100``);
            empty to skip.
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
        A :class:`~attsolver.evaluate.result.CompareResult`; ``result.verdict_line`` is the
        one-line verdict.

    Raises:
        ValueError / TypeError: bad input, naming the argument and the fix (a corrector for
            another method or step, a test horizon shorter than one coarse step, ...).
    """
    method, h = _check_arguments(f, dtype, rounds, corrector, method, step_size)
    _check_output(out, name, t)
    problem = problem_of(f)
    test = build_test_set(f, y0, t, data, reference, method, h, dtype)
    lam, lam_source = lyapunov_for(f, test.y0, test.t, lyapunov_exponent, h, method=default_method(problem))
    match, chaotic = _match_error(match, lam, float(test.t[-1] - test.t[0]))
    lam_units = lam if (lam is not None and lam > 0) else None
    scale, limit = reference_scale(test.true), blow_up_limit(test.true)
    model = None if corrector is None else copy.deepcopy(corrector).to(dtype).eval()

    ladders = build_ladders(method, problem, refinements=refinements, step_refinements=rk4_refinements,
                            spectral_refinements=spectral_refinements, tolerances=dopri_rtols)
    contenders = [c for ladder in ladders for c in ladder.contenders(h)]
    if model is not None:
        contenders.append(Contender("corrected", f"{method} h/1 + {type(corrector).__name__}", method,
                                    step=h, k=1, corrected=True))
    score = {"scale": scale, "limit": limit, "lyapunov_exponent": lam_units, "match": match}
    entries, preds = _measure(f, test, contenders, model, rounds, score, name=name, progress=progress)

    classical = [e for e in entries if e["family"] != "corrected"]
    coarse = next(e for e in classical if e["family"] == "same" and e["k"] == 1)
    corrected = next((e for e in entries if e["family"] == "corrected"), None)
    verdict = None if corrected is None else make_verdict(classical, corrected, coarse, method=method,
                                                          step_size=h, match=match)
    curves = _error_vs_time(test, preds, classical, coarse, corrected, verdict, scale, limit, match)
    setting = _setting(method, h, corrector, match, dtype, test, lam, lam_source, chaotic, limit, rounds, command)
    if verdict is None:
        setting["summary_line"] = summary_line(coarse, match)
    result = CompareResult(entries, verdict, setting, curves)
    if out is not None:
        _write(result, Path(out), name)
    return result


# --------------------------------------------------------------------------- the steps of compare


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


def _measure(f, test: TestSet, contenders: list[Contender], model, rounds: int, score: dict[str, Any], *,
             name: str, progress: bool) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Run every contender once (scored against the reference; this call is also its warm-up),
    then time them all in interleaved rounds.  Returns the entries and the predictions
    ``{label: [n, time, *state]}``."""
    entries, fns, preds = [], {}, {}
    bar = make_progress(len(contenders) + rounds, f"{name}: contenders", unit="run", enabled=progress)
    try:
        for c in contenders:
            run = c.runner(f, test.y0, test.t, model)
            pred = run().transpose(0, 1)
            entry = c.entry()
            entry.update(score_rollout(pred, test.true, test.t, **score))
            entries.append(entry)
            preds[c.label] = pred
            fns[c.label] = run
            bar.update(1)
        times = interleaved_times(fns, rounds, warmup=0, on_round=lambda r: bar.update(1))
    finally:
        bar.close()
    for e in entries:
        e["time_s"] = times[e["label"]]["min_s"]
        e["time_median_s"] = times[e["label"]]["median_s"]
    return entries, preds


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
                  "time_s is the minimum, time_median_s the median",
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
