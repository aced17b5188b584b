"""Safe writes: atomic file replacement (temporary file beside the target, fsync, rename),
and an fsynced append-only JSON-lines log that survives a crash mid-line."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "AppendLog"]


def _umask() -> int:
    # Reading the umask without changing it (Linux); otherwise the set-and-restore idiom.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_path(path: str | Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms/filesystems cannot open directories; best effort
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success it is fsynced and renamed
    onto ``path`` (``os.replace``), on any exception it is removed and ``path`` is untouched.

    The caller must have closed the file when the ``with`` body ends.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {target}: directory {directory} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_path(tmp)
        # mkstemp makes the file 0600; give it the mode a plainly created file would have
        mode = (target.stat().st_mode & 0o777) if target.exists() else (0o666 & ~_umask())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_path(directory, directory=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class AppendLog:
    """Finished records, one JSON object with a ``"key"`` per line, appended and fsynced one
    at a time, so a long resumable run loses at most the record being written.

    A line cut short by a crash is dropped when the log is opened again, and the file is
    rewritten (atomically) without it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            text = self.path.read_text()
            good = []
            for line in text.splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "key" in rec:
                    self.records[rec["key"]] = rec
                    good.append(line)
            if good != text.splitlines() or (text and not text.endswith("\n")):
                atomic_write_text(self.path, "".join(g + "\n" for g in good))

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def add(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.path, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.records[record["key"]] = record
