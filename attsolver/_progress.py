"""Progress for long work: a tqdm bar on a terminal, periodic ``logging`` lines otherwise.

A job on a cluster writes stderr to a file, where a tqdm bar is either hidden or a mess of
carriage returns; there the same progress goes through :mod:`logging` (logger
``attsolver.progress``, level INFO) at most every ``log_every_s`` seconds, plus the first
and the last update, so the log shows the epochs of a ``fit`` or the contenders of a
``compare``.  ``attsolver`` commands configure logging to print these lines when stderr is
not a terminal; a library user gets them with ``logging.basicConfig(level=logging.INFO)``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress", "LOGGER", "stderr_is_terminal"]

LOGGER = logging.getLogger("attsolver.progress")

#: seconds between two log lines of one task
LOG_EVERY_S = 10.0


class _LogProgress:
    """The subset of tqdm's interface that the library uses, writing log lines."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int = 0,
                 log_every_s: float = LOG_EVERY_S):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = initial
        self.postfix = ""
        self._every = log_every_s
        self._start = time.perf_counter()
        self._last = -float("inf")
        self._closed = False

    def _emit(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        elapsed = time.perf_counter() - self._start
        post = f" ({self.postfix})" if self.postfix else ""
        LOGGER.info("%s: %d%s %s%s, %.1f s", self.desc, self.n, of, self.unit, post, elapsed)
        self._last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        done = self.total is not None and self.n >= self.total
        if done or time.perf_counter() - self._last >= self._every:
            self._emit()

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def write(self, text: str) -> None:
        """A message beside the progress (tqdm's ``write``): one INFO line."""
        LOGGER.info("%s: %s", self.desc, text)

    def close(self) -> None:
        if not self._closed and self.n and (self.total is None or self.n < self.total) \
                and time.perf_counter() - self._last > 0:
            self._emit()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def write(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def progress(total: int | None, desc: str, *, unit: str = "it", enabled: bool = True, initial: int = 0):
    """A progress reporter with tqdm's ``update``/``set_postfix``/``write``/``close``.

    ``enabled=False``: nothing.  On a terminal: a tqdm bar that disappears when done.
    Otherwise: INFO lines on the ``attsolver.progress`` logger every :data:`LOG_EVERY_S`
    seconds and at the end.
    """
    if not enabled:
        return _Silent()
    if stderr_is_terminal():
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=False)
    return _LogProgress(total, desc, unit, initial=initial)
