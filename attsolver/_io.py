"""File safety for every format attsolver writes: one layer that data, correctors, training,
vision, pruning and the benchmarks all use.

* :func:`atomic_path` / :func:`atomic_write_text`: replace a file atomically (temporary file
  beside the target, fsync, rename).  Temporary files left by a writer that was killed are
  removed by the next successful write to the same target; a full disk is a
  :class:`DiskFullError` naming the target, with the previous file untouched.
* :func:`open_regular` / :func:`require_regular_file`: open for reading in bounded time — a
  FIFO, device or socket given as a data path is refused instead of blocking forever.
* Integrity: :func:`seal_payload` / :func:`verify_payload` (checkpoints: a digest over the
  whole nested payload, tensors included), :func:`file_digest` (HDF5 files: a digest of the
  bytes), per-record checks in :class:`AppendLog`.  A mismatch is an :class:`IntegrityError`.
* :func:`save_checkpoint` / :func:`load_checkpoint`: every ``.pt`` file attsolver writes
  (correctors, ``fit``, vision training, the search supernet, pruned models) goes through
  these two — sealed, written atomically, read with ``weights_only=True`` and verified.
* :class:`AppendLog`: an fsynced append-only JSON-lines log that survives a crash mid-line.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_path", "atomic_write_text", "AppendLog", "IntegrityError", "DiskFullError",
    "open_regular", "require_regular_file", "payload_digest", "seal_payload", "verify_payload",
    "file_digest", "remove_stale_temps", "is_disk_full", "save_checkpoint", "load_checkpoint",
]

#: key under which :func:`seal_payload` stores its digest
INTEGRITY_KEY = "integrity"
_DIGEST_ALGORITHM = "sha256-tree-v1"
#: field that carries a record's check in an :class:`AppendLog` line
RECORD_CHECK = "_check"


class IntegrityError(ValueError):
    """A file's stored checksum does not match its content: it was damaged (bit rot, a bad
    copy, a truncated transfer) or edited after attsolver wrote it."""


class DiskFullError(OSError):
    """Writing a file failed because its filesystem is full (or over quota); the previous
    file at the target path, if any, is untouched.  ``errno`` is ``ENOSPC``."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC

    def __str__(self) -> str:
        return str(self.args[0])


# --------------------------------------------------------------------------- atomic writes


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


def _temp_prefix(target: Path) -> str:
    # the writer's pid is part of the name, so a later write can tell a dead writer's leftover
    # from a file another live process is still writing
    return f".{target.name}.{os.getpid()}."


def _temp_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(re.escape(f".{target.name}.") + r"(?:(\d+)\.)?[A-Za-z0-9_]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM)
        return True
    return True


def remove_stale_temps(target: str | os.PathLike, *, keep: Path | None = None,
                       legacy_age_s: float = 3600.0) -> list[Path]:
    """Remove temporary files of :func:`atomic_path`'s naming next to ``target`` whose writer
    is gone (killed mid-write); returns what was removed.

    A temp file names its writer's pid; one whose pid no longer runs is stale.  Temp files of
    the older naming (no pid) are removed once older than ``legacy_age_s`` seconds.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    pattern = _temp_pattern(target)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or (keep is not None and entry.name == keep.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        pid = m.group(1)
        stale = (not _pid_alive(int(pid))) if pid is not None else (now - st.st_mtime > legacy_age_s)
        if pid is not None and int(pid) == os.getpid():
            stale = False  # our own, possibly still being written by another thread
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def is_disk_full(exc: BaseException, directory: str | os.PathLike | None = None) -> bool:
    """Whether ``exc`` (from a write into ``directory``) means the filesystem is full.

    Libraries report it in different ways (``OSError(ENOSPC)``, h5py's ``OSError`` with the
    HDF5 message, torch's ``RuntimeError: ... file write failed``), so besides the errno the
    free space left is consulted.
    """
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
    if directory is not None and isinstance(exc, (OSError, RuntimeError)):
        try:
            st = os.statvfs(directory)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < 64 * 1024
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success it is fsynced and renamed
    onto ``path`` (``os.replace``), on any exception it is removed and ``path`` is untouched.

    After a successful write, temporary files that killed writers left next to ``path`` are
    removed.  A full filesystem raises :class:`DiskFullError`.  The caller must have closed
    the file when the ``with`` body ends.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {target}: directory {directory} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a directory; give a file name")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=directory)
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(f"cannot write {target}: no space left on device") from None
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_path(tmp)
        # mkstemp makes the file 0600; give it the mode a plainly created file would have
        mode = (target.stat().st_mode & 0o777) if target.exists() else (0o666 & ~_umask())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as e:
        full = isinstance(e, Exception) and is_disk_full(e, directory)
        with contextlib.suppress(OSError):
            tmp.unlink()
        if full:
            kept = "the previous file is untouched" if target.exists() else "nothing was written"
            raise DiskFullError(
                f"cannot write {target}: no space left on device ({kept}); free some space or "
                "write to another directory",
            ) from None
        raise
    _fsync_path(directory, directory=True)
    remove_stale_temps(target)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# --------------------------------------------------------------------------- reading safely


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def require_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a :class:`Path` if it is a regular file (symlinks followed); a missing path
    is ``FileNotFoundError``, a directory, FIFO, device or socket a ``ValueError`` — reading
    a FIFO would block forever."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is {_kind(st.st_mode)}, not a regular file; give the path of the {what} itself")
    return path


def open_regular(path: str | os.PathLike, what: str = "file"):
    """Open ``path`` for binary reading without ever blocking: the open is non-blocking and
    the opened descriptor must be a regular file (checked on the descriptor, so a path
    swapped for a FIFO after a check cannot hang the reader)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory, not a regular file; give the path of the {what} itself") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is {_kind(st.st_mode)}, not a regular file; give the path of the {what} itself")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# --------------------------------------------------------------------------- integrity


def _feed(h: Any, obj: Any) -> None:
    """Hash a nested payload of plain types and tensors, unambiguously (type tags + lengths)."""
    if obj is None:
        h.update(b"N")
    elif isinstance(obj, bool):
        h.update(b"T" if obj else b"F")
    elif isinstance(obj, int):
        b = str(obj).encode()
        h.update(b"i" + struct.pack("<Q", len(b)) + b)
    elif isinstance(obj, float):
        h.update(b"f" + struct.pack("<d", obj))
    elif isinstance(obj, complex):
        h.update(b"c" + struct.pack("<dd", obj.real, obj.imag))
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(b"s" + struct.pack("<Q", len(b)) + b)
    elif isinstance(obj, bytes):
        h.update(b"b" + struct.pack("<Q", len(obj)) + obj)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().contiguous()
        header = f"{t.dtype}|{tuple(t.shape)}".encode()
        h.update(b"t" + struct.pack("<Q", len(header)) + header)
        if t.numel():
            data = t.reshape(-1).view(torch.uint8).numpy()
            h.update(struct.pack("<Q", data.nbytes))
            h.update(data.tobytes())
    elif isinstance(obj, torch.dtype):
        _feed(h, ("dtype", str(obj)))
    elif isinstance(obj, torch.Size):
        _feed(h, ("size", tuple(obj)))
    elif isinstance(obj, dict):
        h.update(b"d" + struct.pack("<Q", len(obj)))
        for k, v in sorted(obj.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0]))):
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update((b"l" if isinstance(obj, list) else b"u") + struct.pack("<Q", len(obj)))
        for v in obj:
            _feed(h, v)
    else:
        raise TypeError(f"cannot checksum a {type(obj).__name__} in a payload; use plain types and tensors")


def payload_digest(payload: Any) -> str:
    """Hex SHA-256 over a nested payload (dicts, lists, tuples, str, int, float, bool, None,
    tensors: dtype, shape and bytes)."""
    h = hashlib.sha256()
    _feed(h, payload)
    return h.hexdigest()


def seal_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` plus an ``"integrity"`` entry holding its digest (see :func:`verify_payload`)."""
    body = {k: v for k, v in payload.items() if k != INTEGRITY_KEY}
    return {**body, INTEGRITY_KEY: {"algorithm": _DIGEST_ALGORITHM, "sha256": payload_digest(body)}}


def verify_payload(payload: Any, source: str) -> dict[str, Any]:
    """Check the digest :func:`seal_payload` stored; returns the payload without it.

    Raises:
        IntegrityError: no digest, or it does not match (the message names ``source``).
    """
    if not isinstance(payload, dict):
        raise IntegrityError(f"{source} does not hold a checksummed attsolver payload; the file is damaged")
    seal = payload.get(INTEGRITY_KEY)
    if not (isinstance(seal, dict) and seal.get("algorithm") == _DIGEST_ALGORITHM
            and isinstance(seal.get("sha256"), str)):
        raise IntegrityError(
            f"{source} has no valid integrity record (checksum); the file is damaged, or it was written "
            "by an attsolver before checksums — re-create it"
        )
    body = {k: v for k, v in payload.items() if k != INTEGRITY_KEY}
    try:
        digest = payload_digest(body)
    except TypeError as e:
        raise IntegrityError(f"{source}: {e}; the file is damaged") from None
    if digest != seal["sha256"]:
        raise IntegrityError(
            f"{source} is damaged: its content does not match the checksum stored when it was written "
            "(bit rot, a bad copy or an edit); restore it from a good copy or re-create it"
        )
    return body


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plain types and tensors) to ``path`` with ``torch.save``: sealed with
    :func:`seal_payload` and written atomically (:func:`atomic_path`).  Read it back with
    :func:`load_checkpoint`.  Returns the path."""
    path = Path(path)
    sealed = seal_payload(payload)
    with atomic_path(path) as tmp:
        torch.save(sealed, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, *, what: str = "checkpoint", map_location: Any = "cpu",
                    check: Callable[[Any, str], None] | None = None) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint`: ``torch.load(..., weights_only=True)``
    (never arbitrary pickled code), then the seal verified; returns the payload without it.

    ``check(payload, source)`` validates the format (raising ``ValueError``); it runs after the
    seal is verified, so a damaged file is always an :class:`IntegrityError` — except for a
    file with no seal (or a seal of a newer attsolver's algorithm), which is checked first so
    that a foreign or newer file is named as such.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a FIFO/device/directory, or ``check`` refused the content.
        IntegrityError: unreadable (damaged, truncated), holding pickled objects other than
            tensors and plain values, or its content does not match its checksum.
    """
    path = Path(path)
    source = str(path)
    with open_regular(path, f"{what} file") as fh:
        try:
            payload = torch.load(fh, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
            raise IntegrityError(f"{path} is not a readable attsolver {what} ({torch_load_failure(e)})") from None
    seal = payload.get(INTEGRITY_KEY) if isinstance(payload, dict) else None
    # sealed by this version's algorithm: verify first (a damaged format field is damage, too);
    # otherwise (no seal, or one from a newer attsolver) let ``check`` say what the file is
    sealed = isinstance(seal, dict) and seal.get("algorithm") == _DIGEST_ALGORITHM
    if check is not None and not sealed:
        check(payload, source)
    try:
        body = verify_payload(payload, source)
    except IntegrityError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged payload can hold anything weights_only admits
        raise IntegrityError(f"{path}: cannot verify its checksum ({type(e).__name__}: {e}); the file is damaged") from None
    if check is not None and sealed:
        check(body, source)
    return body


def torch_load_failure(e: BaseException) -> str:
    """Why ``torch.load`` failed, without relaying torch's advice to retry with
    ``weights_only=False`` (which would run whatever code the file holds)."""
    text = str(e).strip()
    if "weights only load failed" in text.lower() or "weights_only" in text:
        found = [ln.strip() for ln in text.splitlines() if "Unsupported" in ln or "unsupported" in ln]
        what = f" ({found[0][:160]})" if found else ""
        return ("refused: it holds pickled Python objects other than tensors and plain values"
                f"{what}; attsolver checkpoints never do, so it was not written by attsolver or has been "
                "tampered with — do not load it")
    reason = text.splitlines()[0][:200] if text else type(e).__name__
    return f"corrupted, truncated, or not written by attsolver: {type(e).__name__}: {reason}"


def file_digest(fh, *, start: int = 0, length: int | None = None, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of ``length`` bytes of an open binary file from ``start`` (default: to the end)."""
    h = hashlib.sha256()
    fh.seek(start)
    left = math.inf if length is None else length
    while left > 0:
        block = fh.read(int(min(chunk, left)))
        if not block:
            break
        h.update(block)
        left -= len(block)
    return h.hexdigest()


def record_check(record: dict[str, Any]) -> str:
    """The check an :class:`AppendLog` line carries: SHA-256 (16 hex digits) of the record's
    canonical JSON."""
    text = json.dumps(record, sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- append-only log


class AppendLog:
    """Finished records, one JSON object with a ``"key"`` per line, appended and fsynced one
    at a time, so a long resumable run loses at most the record being written.

    Every line carries a check of its record (``"_check"``).  When the log is opened again a
    line cut short by a crash, a line whose record does not match its check (damaged or
    edited: a changed value would flow into the results), and a record that ``validate``
    rejects (e.g. a missing field) are dropped — the caller recomputes them — and the file is
    rewritten (atomically) without them.  A log written before checks existed (no line has
    one) is read as it is and upgraded in place.

    Args:
        path: the ``.jsonl`` file.
        validate: optional ``validate(record) -> bool``; records it rejects are dropped.
    """

    def __init__(self, path: str | os.PathLike, *, validate: Callable[[dict[str, Any]], bool] | None = None):
        self.path = Path(path)
        self.validate = validate
        self.records: dict[str, dict[str, Any]] = {}
        self.dropped = 0
        if self.path.exists():
            with open_regular(self.path, "log file") as fh:
                text = fh.read().decode("utf-8", "replace")
            lines = text.splitlines()
            parsed = []
            for line in lines:
                try:
                    rec = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    rec = None
                parsed.append(rec if isinstance(rec, dict) else None)
            checked = any(rec is not None and RECORD_CHECK in rec for rec in parsed)
            good = []
            for rec in parsed:
                rec = self._accept(rec, checked)
                if rec is None:
                    self.dropped += 1
                    continue
                self.records[rec["key"]] = rec
                good.append(self._line(rec))
            if good != [ln + "\n" for ln in lines] or (text and not text.endswith("\n")):
                atomic_write_text(self.path, "".join(good))

    def _accept(self, rec: dict[str, Any] | None, checked: bool) -> dict[str, Any] | None:
        if rec is None:
            return None
        if RECORD_CHECK in rec or checked:
            check = rec.pop(RECORD_CHECK, None)
            try:
                if check != record_check(rec):
                    return None
            except (TypeError, ValueError):
                return None
        if not isinstance(rec.get("key"), str):
            return None
        if self.validate is not None:
            try:
                if not self.validate(rec):
                    return None
            except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                return None
        return rec

    @staticmethod
    def _line(record: dict[str, Any]) -> str:
        return json.dumps({**record, RECORD_CHECK: record_check(record)}, allow_nan=False) + "\n"

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def add(self, record: dict[str, Any]) -> None:
        if RECORD_CHECK in record:
            raise ValueError(f"a log record must not have a {RECORD_CHECK!r} field (the log's own check)")
        line = self._line(record)
        try:
            with open(self.path, "a") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as e:
            if is_disk_full(e, self.path.parent):
                raise DiskFullError(f"cannot append to {self.path}: no space left on device") from None
            raise
        self.records[record["key"]] = record
