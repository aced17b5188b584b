"""How long will ``compare`` take?  The run-time estimate, the timing bar and the budget's word.

``compare`` works in two phases: one scored run of every contender (also its warm-up), then
interleaved timing rounds.  The first phase measures what one round costs, so before the
rounds start :func:`timing_plan` knows how many rounds the time budget allows and
:func:`describe_plan` says how long the timing will take (at least ``rounds`` rounds, at most
``max_rounds`` or what ``time_budget`` fits).  The timing bar counts rounds against that plan
(a tqdm bar on a terminal, log lines otherwise, nothing with ``progress=False``).  When the
rounds end on the budget or ``max_rounds`` before the interval is as narrow as asked,
:func:`budget_note` says so and gives the interval reached.
"""

from __future__ import annotations

import math
from typing import Any

from .._progress import progress as make_progress
from .result import format_speedup

__all__ = ["timing_plan", "describe_plan", "timing_bar", "budget_note", "half_width", "rounds_postfix"]


def timing_plan(one_round_s: float, timing: dict[str, Any], scoring_s: float) -> dict[str, Any]:
    """The timing phase's rounds and seconds, from the cost of one round (every contender once).

    ``timing``: ``min_rounds``, ``max_rounds``, ``budget_s`` (``compare``'s checked options).
    Returns ``{"scoring_s", "one_round_s", "rounds_at_least", "rounds_at_most",
    "timing_at_least_s", "timing_at_most_s", "budget_fits_min_rounds"}``; the rounds stop before
    one that would end past the budget, but never before ``min_rounds``.
    """
    lo, hi, budget = timing["min_rounds"], timing["max_rounds"], timing["budget_s"]
    fits = int(budget // one_round_s) if one_round_s > 0 else hi
    most = max(lo, min(hi, fits))
    return {"scoring_s": scoring_s, "one_round_s": one_round_s, "rounds_at_least": lo, "rounds_at_most": most,
            "timing_at_least_s": one_round_s * lo, "timing_at_most_s": one_round_s * most,
            "budget_fits_min_rounds": one_round_s * lo <= budget}


def describe_plan(plan: dict[str, Any], n_contenders: int, budget_s: float) -> str:
    """One line: what the scoring took and how long the timing will take."""
    text = (f"scored {n_contenders} contenders in {plan['scoring_s']:.3g} s; timing: one round "
            f"~{plan['one_round_s']:.3g} s, {plan['rounds_at_least']}-{plan['rounds_at_most']} rounds, about "
            f"{plan['timing_at_least_s']:.3g}-{plan['timing_at_most_s']:.3g} s (time budget {budget_s:g} s)")
    if not plan["budget_fits_min_rounds"]:
        text += f"; the budget does not fit the {plan['rounds_at_least']} rounds asked for: they run anyway"
    return text


def timing_bar(plan: dict[str, Any], name: str, enabled: bool):
    """A progress reporter over the planned rounds (at most what the budget fits)."""
    return make_progress(plan["rounds_at_most"], f"{name}: timing", unit="round", enabled=enabled)


def half_width(interval: dict[str, Any]) -> float | None:
    """The interval's relative half-width ``(high - low) / 2 / point``, or ``None``."""
    p, lo, hi = interval.get("point"), interval.get("low"), interval.get("high")
    if p is None or lo is None or hi is None or not p > 0:
        return None
    return (hi - lo) / 2 / p


def budget_note(stopped: str, interval: dict[str, Any], ci_width: float) -> str | None:
    """When the rounds stopped on the time budget or ``max_rounds`` (``stopped``, from
    :func:`~attsolver.evaluate.confidence.run_rounds`: they stop there only while the interval
    is wider than ``±ci_width``): a sentence that says so and gives the interval reached; else ``None``."""
    if "time budget" not in stopped and "max_rounds" not in stopped:
        return None
    w = half_width(interval)
    reached = ("no interval: most resamples reach no classical cost" if w is None else
               f"the interval reached is {format_speedup(interval['low'])}-{format_speedup(interval['high'])} "
               f"(±{100 * w:.2g} %)")
    return f"the ±{100 * ci_width:.3g} % interval was not reached ({stopped}): {reached}"


def rounds_postfix(interval: dict[str, Any]) -> dict[str, str]:
    """The timing bar's postfix: the interval's current half-width."""
    w = half_width(interval)
    return {"interval": "n/a" if w is None or not math.isfinite(w) else f"±{100 * w:.0f}%"}
