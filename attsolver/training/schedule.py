"""The window length of each epoch: ``fit``'s fixed ``rollout_steps`` or its ``rollout_schedule``
(solver-in-the-loop training that unrolls longer as training goes on), checked once at set-up."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._validate import integer, positive_int

__all__ = ["RolloutSchedule", "Schedule", "rollout_schedule", "as_pairs"]

#: the type of ``fit``'s ``rollout_schedule``
Schedule = Callable[[int], int] | Sequence[tuple[int, int]]
#: what ``rollout_schedule`` accepts, in the words of its error messages
_WHAT = "a callable epoch -> rollout steps or a list of (epoch, steps) pairs"


@dataclass(frozen=True)
class RolloutSchedule:
    """The data intervals per training window of every epoch ``0 .. epochs-1``.

    Attributes:
        steps: one entry per epoch (0-based index): ``k >= 1`` intervals per window, or 0 for
            one-step targets (only without a schedule).
        scheduled: whether ``rollout_schedule`` gave them (else ``rollout_steps`` did).
    """

    steps: tuple[int, ...]
    scheduled: bool

    def at(self, epoch: int) -> int:
        """The window length of epoch ``epoch`` (0-based)."""
        return self.steps[epoch]

    @property
    def longest(self) -> int:
        """The longest window, at least 1 interval (a one-step pair spans one)."""
        return max(max(self.steps), 1)

    def longest_epoch(self) -> int:
        """The first epoch (0-based) that uses :attr:`longest`."""
        return next(e for e, k in enumerate(self.steps) if max(k, 1) == self.longest)


def rollout_schedule(rollout_steps: int, schedule, epochs: int) -> RolloutSchedule:
    """Check ``fit``'s ``rollout_steps`` and ``rollout_schedule`` and give each epoch's length.

    Args:
        rollout_steps: the fixed window length (0: one-step targets), an integer >= 0.
        schedule: ``None``; a callable ``schedule(epoch) -> k`` called once for each 0-based
            epoch index ``0 .. epochs-1``; or a list of ``(first_epoch, k)`` pairs, the first at
            epoch 0 and their epochs increasing, each ``k`` holding until the next pair.  Every
            ``k`` is an integer >= 1 (data intervals per window: the rollout loss).
        epochs: the number of epochs (already checked, >= 1).
    """
    integer("rollout_steps", rollout_steps, low=0)
    if schedule is None:
        return RolloutSchedule((int(rollout_steps),) * epochs, scheduled=False)
    if rollout_steps != 0:
        raise ValueError(
            f"give rollout_steps (one window length for every epoch) or rollout_schedule (one per epoch), "
            f"not both; got rollout_steps={rollout_steps!r} with a rollout_schedule"
        )
    why = " (data intervals per training window)"
    if callable(schedule):
        return RolloutSchedule(tuple(positive_int(f"rollout_schedule({e})", schedule(e), why=why)
                                     for e in range(epochs)), scheduled=True)
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, Sequence):
        raise TypeError(f"rollout_schedule must be {_WHAT}, got {type(schedule).__name__} {schedule!r}")
    if len(schedule) == 0:
        raise ValueError(f"rollout_schedule is empty; give {_WHAT}, e.g. [(0, 2), (10, 4)]")
    starts: list[int] = []
    lengths: list[int] = []
    for i, pair in enumerate(schedule):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"rollout_schedule[{i}] must be an (epoch, steps) pair, got {pair!r}")
        start = integer(f"rollout_schedule[{i}]'s epoch", pair[0], low=0)
        if i == 0 and start != 0:
            raise ValueError(
                f"rollout_schedule must start at epoch 0 (its first pair gives the first epoch's steps), "
                f"got {tuple(pair)!r}"
            )
        if starts and start <= starts[-1]:
            raise ValueError(
                f"rollout_schedule's epochs must increase: rollout_schedule[{i}] starts at epoch {start}, "
                f"rollout_schedule[{i - 1}] at {starts[-1]}"
            )
        starts.append(start)
        lengths.append(positive_int(f"rollout_schedule[{i}]'s steps", pair[1], why=why))
    # each epoch takes the last pair that starts at or before it (starts[0] == 0)
    steps = [lengths[bisect.bisect_right(starts, e) - 1] for e in range(epochs)]
    return RolloutSchedule(tuple(steps), scheduled=True)


def as_pairs(steps: Sequence[int]) -> list[list[int]]:
    """``[[first_epoch, k], ...]`` at every change of length (what ``training_info`` records)."""
    return [[e, k] for e, k in enumerate(steps) if e == 0 or steps[e - 1] != k]
