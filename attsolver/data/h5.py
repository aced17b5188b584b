"""HDF5 files of our own schema: one :class:`TrajectoryDataset` per file.

Layout (``schema = "attsolver.trajectories"``, ``schema_version = 1``)::

    /                 attributes: schema, schema_version, config (JSON), system (JSON),
                      noise_level (float), created_by ("attsolver X.Y.Z")
    /t                float64 [nt]
    /y                float64 or float32 [n, nt, *state]   observed values
    /y_clean          (optional) same shape and dtype as y: noise-free values
    /x                (optional) [state[-1]]: spatial grid of a 1-D PDE field

Integrity: the file starts with a 512-byte HDF5 user block (ignored by HDF5 readers) that
holds a SHA-256 of every byte after it — attributes, the datasets' names, shapes and dtypes,
the B-trees and the values — checked before HDF5 parses anything, so a damaged file is an
:class:`~attsolver._io.IntegrityError` (never other values, never a hang inside the HDF5
library).  Every dataset also carries a Fletcher-32 checksum.  A file without the seal (written
by another program, or by an attsolver before it) — and a sealed one too, since anyone can
recompute a checksum (it is not a signature) — is first opened in a child process with a
time limit, so a damaged or hostile one cannot hang the reader (files this process wrote
itself, unchanged since, are not probed again).  Before any dataset is read, its declared
size and chunk size are checked against :func:`allocation_limit` (16x the file's size, at
least 64 MiB).  Files are written atomically (temporary
file beside the target, fsync, ``os.replace``).  Readers turn every problem (not HDF5,
truncated, foreign file, newer schema, missing or inconsistent datasets) into a
``ValueError`` that says what is wrong and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from .._io import IntegrityError, atomic_path, file_digest, open_regular, require_regular_file
from .._version import __version__
from .dataset import TrajectoryDataset

__all__ = ["SCHEMA", "SCHEMA_VERSION", "save_h5", "load_h5", "open_h5", "allocation_limit", "MAX_INFLATION",
           "MIN_ALLOCATION_LIMIT"]

SCHEMA = "attsolver.trajectories"
#: Version of the layout above; readers refuse files with a larger number.
SCHEMA_VERSION = 1

_REQUIRED_ATTRS = ("config", "system", "noise_level")
_STORAGE = {"float64": np.float64, "float32": np.float32}


def _storage_dtype(dtype: Any, default: torch.dtype) -> np.dtype:
    if dtype is None:
        dtype = default
    if isinstance(dtype, torch.dtype):
        name = str(dtype).replace("torch.", "")
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype)
    if name not in _STORAGE:
        raise ValueError(f"storage dtype must be float64 or float32, got {dtype!r}")
    return np.dtype(_STORAGE[name])


def _to_numpy(v: torch.Tensor, dtype: np.dtype | None = None) -> np.ndarray:
    a = v.detach().cpu().numpy()
    return a if dtype is None else a.astype(dtype, copy=False)


#: the user block that carries the seal (HDF5 allows 512 * 2^k bytes before the superblock)
_USERBLOCK = 512
_SEAL_MAGIC = b"\x89attsolver-seal\r\n\x1a\n"
#: root attribute that says the file was sealed (so a damaged seal is not taken for "no seal")
_SEAL_ATTR = "integrity"


def _seal_header(digest: str, length: int) -> bytes:
    meta = json.dumps({"version": 1, "algorithm": "sha256", "length": length, "sha256": digest},
                      sort_keys=True).encode()
    header = _SEAL_MAGIC + meta
    assert len(header) <= _USERBLOCK
    return header + b"\0" * (_USERBLOCK - len(header))


@contextlib.contextmanager
def write_sealed(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Yield a new HDF5 file to fill; on success it is written to ``path`` with its seal.

    The HDF5 library builds the file in memory and this function writes the bytes: a full
    disk is then an ordinary ``OSError`` from one ``write`` — the HDF5 library never sees a
    failed write (on a full disk it used to leave state behind that crashed the
    interpreter at exit with SIGSEGV).
    """
    buf = io.BytesIO()
    with h5py.File(buf, "w", userblock_size=_USERBLOCK) as f:
        f.attrs[_SEAL_ATTR] = "sha256 of the bytes after the 512-byte user block, stored in the user block"
        yield f
    image = buf.getbuffer()
    body = image[_USERBLOCK:]
    digest = hashlib.sha256(body).hexdigest()
    with open(path, "wb") as fh:
        fh.write(_seal_header(digest, len(body)))
        fh.write(body)
    del body, image


def seal_file(path: str | os.PathLike) -> None:
    """(Re-)write the seal of an HDF5 file that has a 512-byte user block (e.g. after an
    intentional edit with h5py): the SHA-256 of everything after the user block."""
    with open(path, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        digest = file_digest(fh, start=_USERBLOCK)
        fh.seek(0)
        fh.write(_seal_header(digest, size - _USERBLOCK))


def check_seal(path: str | os.PathLike) -> bool:
    """Verify the seal of ``path``; ``True`` if it has one and it matches, ``False`` if the
    file has none (not written by this attsolver).

    Raises:
        IntegrityError: the seal does not match the content (damaged, truncated or edited).
        ValueError: not a regular file (a FIFO would block forever).
    """
    path = Path(path)
    with open_regular(path, "HDF5 file") as fh:
        head = fh.read(_USERBLOCK)
        if not head.startswith(_SEAL_MAGIC):
            return False
        try:
            meta = json.loads(head[len(_SEAL_MAGIC):].rstrip(b"\0").decode("ascii"))
            length, digest = int(meta["length"]), str(meta["sha256"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise IntegrityError(f"{path}: its integrity record (the user block) is damaged; regenerate the file "
                                 "or copy it again") from None
        size = fh.seek(0, os.SEEK_END)
        if size - _USERBLOCK != length:
            raise IntegrityError(
                f"{path} is damaged: {size} bytes where {length + _USERBLOCK} were written (truncated or "
                "extended); regenerate it or copy it again"
            )
        if file_digest(fh, start=_USERBLOCK) != digest:
            raise IntegrityError(
                f"{path} is damaged: its content does not match the checksum stored when it was written "
                "(bit rot, a bad copy or an edit after writing); regenerate it or copy it again"
            )
    return True


#: time limit of the child-process open of an unsealed file: this plus 1 s per 50 MB
_PROBE_TIMEOUT_S = 30.0
_PROBE = r"""
import sys, h5py
limit = int(sys.argv[2])
with h5py.File(sys.argv[1], "r") as f:
    dict(f.attrs)
    def visit(name, obj):
        dict(obj.attrs)
        if isinstance(obj, h5py.Dataset):
            obj.shape, obj.dtype
            if obj.size * obj.dtype.itemsize <= limit:
                obj[()]
    f.visititems(visit)
"""


#: files this process wrote (``save_h5``) or already probed, by identity (device, inode, size,
#: mtime, ctime): any change to a file — an edit, a re-seal — makes it a stranger again
_KNOWN: set[tuple[int, ...]] = set()
#: a reader allocates at most this multiple of the file's size for its datasets (or
#: :data:`MIN_ALLOCATION_LIMIT`, whichever is larger); a larger claim is refused as damaged
MAX_INFLATION = 16
#: the allocation a small file may always ask for (bytes)
MIN_ALLOCATION_LIMIT = 64 << 20


def _identity(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def allocation_limit(path: Path) -> int:
    """The most bytes a reader allocates for ``path``'s datasets: :data:`MAX_INFLATION` times
    its size, at least :data:`MIN_ALLOCATION_LIMIT`."""
    return max(MAX_INFLATION * path.stat().st_size, MIN_ALLOCATION_LIMIT)


def _probe(path: Path) -> None:
    """Open a file in a child process with a time limit unless this process wrote it (or
    probed it unchanged): damaged HDF5 metadata can send the HDF5 library into an endless
    loop (or a crash), which must not take this process.  A seal proves no origin — anyone
    can recompute a checksum — so sealed files are probed too."""
    key = _identity(path)
    if key in _KNOWN:
        return
    _probe_unsealed(path)
    _KNOWN.add(key)


def _probe_unsealed(path: Path) -> None:
    """Open a file in a child process with a time limit (the child is killed on timeout and
    on Ctrl-C, so the reader stays interruptible)."""
    size = path.stat().st_size
    timeout = _PROBE_TIMEOUT_S + size / 50e6
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(min(allocation_limit(path), 256 << 20))],
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise _unreadable(path, f"opening it did not finish within {timeout:.0f} s") from None
    if proc.returncode < 0:
        raise _unreadable(path, f"the HDF5 library crashed reading it (signal {-proc.returncode})")


def _write_array(f: h5py.File, name: str, data: np.ndarray) -> None:
    # Fletcher-32 checksums (chunked storage) make silently damaged values a read error
    f.create_dataset(name, data=data, fletcher32=True)


def save_h5(dataset: TrajectoryDataset, path: str | os.PathLike, *, dtype: Any = None) -> Path:
    """Write ``dataset`` to ``path`` atomically in the schema above.

    Args:
        dataset: the trajectories.
        path: target file (``.h5``); an existing file is replaced only once the new one is
            complete and on disk.
        dtype: storage dtype of ``y``/``y_clean``/``x``: ``torch.float64``/``"float64"`` or
            ``torch.float32``/``"float32"``; default the dataset's dtype.  ``t`` is always
            float64.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not isinstance(dataset, TrajectoryDataset):
        raise TypeError(f"dataset must be a TrajectoryDataset, got {type(dataset).__name__}")
    store = _storage_dtype(dtype, dataset.dtype)
    path = Path(path)
    with atomic_path(path) as tmp:
        with write_sealed(tmp) as f:
            f.attrs["schema"] = SCHEMA
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["config"] = json.dumps(dataset.config, allow_nan=False)
            f.attrs["system"] = json.dumps(dataset.system, allow_nan=False)
            f.attrs["noise_level"] = float(dataset.noise_level)
            f.attrs["created_by"] = f"attsolver {__version__}"
            _write_array(f, "t", _to_numpy(dataset.t, np.dtype(np.float64)))
            _write_array(f, "y", _to_numpy(dataset.y, store))
            if dataset.y_clean is not None:
                _write_array(f, "y_clean", _to_numpy(dataset.y_clean, store))
            if dataset.x is not None:
                _write_array(f, "x", _to_numpy(dataset.x, store))
    _KNOWN.add(_identity(path))
    return path


# ---------------------------------------------------------------------------- reading


def _unreadable(path: Path, reason: str) -> ValueError:
    return ValueError(
        f"{path} is not a readable HDF5 file (corrupt or truncated: {reason}); regenerate it "
        "(e.g. `attsolver data generate ...`) or copy it again"
    )


@contextlib.contextmanager
def open_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open an HDF5 file for reading; low-level failures become a ``ValueError`` saying the
    file is corrupt or truncated (a missing file is ``FileNotFoundError``)."""
    path = require_regular_file(path, "HDF5 file")
    sealed = check_seal(path)
    _probe(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _unreadable(path, _short(e)) from None
    try:
        if not sealed and _SEAL_ATTR in f.attrs:
            raise IntegrityError(f"{path} was written with a checksum but its integrity record (the user "
                                 "block) is damaged; regenerate the file or copy it again")
        yield f
    except (OSError, RuntimeError, KeyError) as e:  # h5py read errors on damaged files
        raise _unreadable(path, _short(e)) from None
    finally:
        with contextlib.suppress(Exception):
            f.close()


def _short(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    return msg.splitlines()[0][:200]


def _attr_str(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _attr_str(v[()])
    return str(v)


def _check_schema(f: h5py.File, path: Path) -> int:
    schema = f.attrs.get("schema")
    if schema is None or _attr_str(schema) != SCHEMA:
        found = "" if schema is None else f" (its schema attribute is {_attr_str(schema)!r})"
        hint = ""
        if "tensor" in f:
            hint = (" It looks like a PDEBench file (it has a 'tensor' dataset): read it with "
                    "attsolver.data.read_pdebench(path).")
        raise ValueError(
            f"{path} is an HDF5 file but not an attsolver trajectory file{found}: it lacks the "
            f"root attribute schema={SCHEMA!r}.{hint}"
        )
    version = f.attrs.get("schema_version")
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: schema_version attribute is missing or not an integer ({version!r})") from None
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path} was written with trajectory schema version {version}, newer than this "
            f"attsolver ({__version__}) reads (up to {SCHEMA_VERSION}): upgrade attsolver "
            "(pip install -U attsolver) to read it"
        )
    if version < 1:
        raise ValueError(f"{path}: invalid schema_version {version}")
    return version


def _json_attr(f: h5py.File, name: str, path: Path) -> Any:
    try:
        return json.loads(_attr_str(f.attrs[name]))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: attribute {name!r} is not valid JSON ({e}); the file is damaged") from None


def _read_dataset(f: h5py.File, name: str, path: Path) -> np.ndarray:
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{path}: {name!r} must be a dataset, found a {type(obj).__name__}")
    return obj[()]


def _tensor(a: np.ndarray, name: str, path: Path, dtype: torch.dtype | None) -> torch.Tensor:
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{path}: dataset {name!r} must hold floating-point values, found {a.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if dtype is None else t.to(dtype)


def _check_allocation(dsets: dict[str, h5py.Dataset], path: Path) -> None:
    """The datasets' declared sizes (and chunk sizes) fit :func:`allocation_limit` before
    anything is read: a damaged or hostile 8 KB file cannot make the reader allocate GiBs."""
    limit = allocation_limit(path)
    total = 0
    for k, d in dsets.items():
        item = d.dtype.itemsize
        total += int(np.prod(d.shape, dtype=object)) * item
        chunk = int(np.prod(d.chunks, dtype=object)) * item if d.chunks else 0
        if total > limit or chunk > limit:
            raise ValueError(
                f"{path}: dataset {k!r} declares {max(total, chunk) / 2**20:.3g} MiB (shape {d.shape}, chunks "
                f"{d.chunks}) in a file of {path.stat().st_size} bytes — more than the reader allocates "
                f"({MAX_INFLATION}x the file's size, at least {MIN_ALLOCATION_LIMIT >> 20} MiB); the file is "
                "damaged or hostile — regenerate it or copy it again"
            )


def _check_layout(f: h5py.File, path: Path) -> dict[str, h5py.Dataset]:
    """The checks every reader makes (``load_h5`` and ``data info`` alike): required datasets
    and attributes present, each a floating-point dataset, shapes consistent.  Returns the
    datasets by name."""
    missing = [k for k in ("t", "y") if k not in f]
    missing_attrs = [k for k in _REQUIRED_ATTRS if k not in f.attrs]
    if missing or missing_attrs:
        parts = []
        if missing:
            parts.append(f"dataset(s) {missing}")
        if missing_attrs:
            parts.append(f"root attribute(s) {missing_attrs}")
        raise ValueError(f"{path}: missing {' and '.join(parts)}; the file is incomplete — regenerate it")
    dsets = {}
    for k in ("t", "y", "y_clean", "x"):
        if k not in f:
            continue
        obj = f[k]
        if not isinstance(obj, h5py.Dataset):
            raise ValueError(f"{path}: {k!r} must be a dataset, found a {type(obj).__name__}; the file is damaged")
        if not np.issubdtype(obj.dtype, np.floating):
            raise ValueError(f"{path}: dataset {k!r} must hold floating-point values, found {obj.dtype}")
        dsets[k] = obj
    _check_allocation(dsets, path)
    t, y = dsets["t"].shape, dsets["y"].shape
    if "y_clean" in dsets and dsets["y_clean"].shape != y:
        raise ValueError(f"{path}: dataset 'y_clean' has shape {dsets['y_clean'].shape} but 'y' has {y}")
    if len(t) != 1 or len(y) < 3 or y[1] != t[0]:
        raise ValueError(
            f"{path}: dataset 't' has shape {t} and 'y' has shape {y}; expected t [nt] and y [n, nt, *state]"
        )
    if "x" in dsets and (len(dsets["x"].shape) != 1 or dsets["x"].shape[0] != y[-1]):
        raise ValueError(f"{path}: dataset 'x' has shape {dsets['x'].shape} but y's last dimension is {y[-1]}")
    try:
        noise = float(f.attrs["noise_level"])
    except (TypeError, ValueError):
        raise ValueError(f"{path}: attribute 'noise_level' is not a number; the file is damaged") from None
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"{path}: attribute 'noise_level' is {noise}, not a non-negative number; the file is damaged")
    return dsets


def load_h5(path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> TrajectoryDataset:
    """Read a file written by :func:`save_h5`.

    Args:
        path: the file.
        dtype: dtype of ``y``/``y_clean``/``x`` in memory; default the stored dtype.

    Raises:
        FileNotFoundError: no such file.
        IntegrityError (a ``ValueError``): the file's checksum does not match (damaged).
        ValueError: not HDF5 / corrupt / truncated / not a regular file; not an attsolver
            trajectory file (with a pointer to :func:`read_pdebench` for PDEBench files); a
            newer schema version; missing or inconsistent datasets or attributes (named in
            the message).
    """
    path = Path(path)
    with open_h5(path) as f:
        _check_schema(f, path)
        dsets = _check_layout(f, path)
        config = _json_attr(f, "config", path)
        system = _json_attr(f, "system", path)
        noise_level = float(f.attrs["noise_level"])
        arrays = {k: d[()] for k, d in dsets.items()}
    y, t = arrays["y"], arrays["t"]
    try:
        return TrajectoryDataset(
            t=_tensor(t, "t", path, torch.float64),
            y=_tensor(y, "y", path, dtype),
            y_clean=_tensor(arrays["y_clean"], "y_clean", path, dtype) if "y_clean" in arrays else None,
            x=_tensor(arrays["x"], "x", path, dtype) if "x" in arrays else None,
            system=system,
            noise_level=noise_level,
            config=config,
        )
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
