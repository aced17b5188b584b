"""What ``compare`` returns: the scored contenders, the verdict and its one line, and the
JSON form (one non-finite policy: a NaN or infinity is written as ``null``, so the file is
valid JSON)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .confidence import outcome
from .metrics import speedups_at_equal_accuracy

__all__ = ["CompareResult", "make_verdict", "summary_line", "format_speedup", "json_safe"]

#: where each match error is measured, in the verdict's words
_WHERE = {"err_q1": "1/4 of the horizon", "err_q2": "1/2 of the horizon", "err_full": "the whole horizon"}


def format_speedup(x: float | None) -> str:
    """``"2.5x"`` (three significant digits), or ``"n/a"`` for no value."""
    if x is None:
        return "n/a"
    return f"{x:.3g}x"


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (tuples become lists): what
    ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@dataclass
class CompareResult:
    """What :func:`attsolver.compare` returns (and writes as JSON).

    Attributes:
        entries: one dict per contender: ``family`` (``same``, a classical method's name
            such as ``rk4``, ``dopri5``, ``etdrk4``, ``ifrk4``, or ``corrected``), ``label``,
            ``method``, ``step`` and ``k`` or ``rtol``, the errors of
            :func:`attsolver.evaluate.metrics.score_rollout`, ``time_s`` (minimum, seconds)
            and ``time_median_s``.
        verdict: the speed-ups of the corrected solve (see
            :func:`attsolver.evaluate.metrics.speedups_at_equal_accuracy`), ``pays`` and the
            one-line ``line``; ``None`` without a corrector.
        setting: what was compared (method, step, match error, dtype, Lyapunov exponent and
            where it came from, test-set size and horizon, timing rounds).
        error_vs_time: ``{"t": [...], label: [mean normalised error per time]}`` of the
            coarse, corrected and best classical contenders.
        files: the paths written (JSON, work-precision PNG, error-vs-time PNG).
        error_bars: the corrected solve's split-conformal error bars per time
            (:func:`attsolver.evaluate.conformal.compare_error_bars`), ``None`` without a corrector.
    """

    entries: list[dict[str, Any]]
    verdict: dict[str, Any] | None
    setting: dict[str, Any]
    error_vs_time: dict[str, list[float]]
    files: dict[str, str] = field(default_factory=dict)
    error_bars: dict[str, Any] | None = None

    @property
    def verdict_line(self) -> str:
        return self.verdict["line"] if self.verdict else self.setting.get("summary_line", "")

    def as_dict(self) -> dict[str, Any]:
        """The result as plain Python values (floats as computed, NaN included)."""
        return {"schema": 1, "kind": "attsolver.compare", "setting": self.setting, "verdict": self.verdict,
                "entries": self.entries, "error_vs_time": self.error_vs_time, "files": self.files,
                "error_bars": self.error_bars}

    def to_json(self) -> str:
        """:meth:`as_dict` as JSON text, a non-finite number written as ``null``."""
        return json.dumps(json_safe(self.as_dict()), indent=1, allow_nan=False)

    def __repr__(self) -> str:
        return f"CompareResult({len(self.entries)} contenders; {self.verdict_line})"


def make_verdict(classical: list[dict[str, Any]], corrected: dict[str, Any], coarse: dict[str, Any], *,
                 method: str, step_size: float, match: str, interval: dict[str, Any] | None = None,
                 clock_note: str = "", evals: dict[str, Any] | None = None,
                 target_error: float | None = None) -> dict[str, Any]:
    """The verdict on the corrected entry: its speed-ups at equal accuracy against the
    ``classical`` entries, its error and time relative to the ``coarse`` solve, the
    ``outcome`` and the one ``line``.

    With an ``interval`` (``{"low", "high", ...}``, the speed-up against the best classical
    contender) the outcome is ``"pays"`` only when the whole interval is above 1x, ``"does not
    pay"`` when it is below, else ``"inconclusive"``; without one, the point estimate decides
    (pays / does not pay).  ``evals``: the cross-check in evaluations of ``f``, added as is.
    ``target_error``: the error the classical cost is read at, when not the corrected one's own
    (a lower bound on the speed-up when the corrected error is at the reference's accuracy)."""
    target = corrected[match] if target_error is None else target_error
    v = speedups_at_equal_accuracy(classical, target, corrected["time_s"], match)
    v["error_ratio_vs_coarse"] = corrected[match] / coarse[match] if coarse[match] > 0 else None
    v["time_ratio_vs_coarse"] = corrected["time_s"] / coarse["time_s"]
    point_pays = v["speedup_best"] is not None and v["speedup_best"] > 1.0
    if interval is None:
        v["outcome"] = "pays" if point_pays else "does not pay"
    else:
        v["outcome"] = outcome(interval["low"], interval["high"])
        v["interval"] = {k: interval[k] for k in ("low", "high", "n_boot", "unreached")}
        v["interval"]["level"] = 0.95
    v["pays"] = v["outcome"] == "pays"
    v["clock"] = clock_note
    v["evals"] = evals
    v["line"] = _verdict_line(method, step_size, match, corrected, coarse, v)
    return v


def _verdict_line(method: str, h: float, match: str, corr: dict[str, Any], coarse: dict[str, Any],
                  v: dict[str, Any]) -> str:
    pays = {"pays": ">1x (pays)", "does not pay": "<1x (does not pay)",
            "inconclusive": "inconclusive"}[v["outcome"]]
    iv = v.get("interval")
    if iv is not None:
        span = ("no interval: most resamples reach no classical cost" if iv["low"] is None else
                f"95 % interval {format_speedup(iv['low'])}-{format_speedup(iv['high'])}")
        pays += f" [{span}" + (", contains 1x" if v["outcome"] == "inconclusive" and iv["low"] is not None else "")
        pays += f"; {v['clock'].split(' (')[0]}]" if v.get("clock") else "]"
    ev = v.get("evals")
    if ev and ev.get("speedup_best_evals") is not None:
        pays += f"; in evaluations of f: {format_speedup(ev['speedup_best_evals'])}"
    k, ks, kb = v["k_equiv"], v["speedup_same_kind"], v["speedup_best_kind"]
    same_note = {"interpolated": f" (= h/{k:.3g})" if k is not None else "",
                 "extrapolated": f" (~h/{k:.3g}, extrapolated)" if k is not None else " (extrapolated)",
                 "cheapest": " (an upper bound: the uncorrected solve is already as accurate)"}.get(ks, "")
    reach = v["best_classical_reaching"] or "no classical run reaches it"
    best_note = {"extrapolated": ", extrapolated", "cheapest": ", an upper bound"}.get(kb, "")
    return (f"verdict: {corr['label'].split(' + ')[-1]} on {method} h={h:g}: error {corr[match]:.3g} up to "
            f"{_WHERE[match]} (uncorrected {coarse[match]:.3g}) in {corr['time_s'] * 1e3:.3g} ms; speed-up at equal "
            f"accuracy {format_speedup(v['speedup_same'])} vs {method} refined{same_note} and "
            f"{format_speedup(v['speedup_best'])} vs the best classical ({reach}{best_note}): {pays}")


def summary_line(coarse: dict[str, Any], match: str) -> str:
    """The line that stands for the verdict when there is no corrector."""
    return (f"no corrector: {coarse['label']} {match} {coarse[match]:.3g} in "
            f"{coarse['time_s'] * 1e3:.3g} ms; see the work-precision front")
