"""HDF5 files of our own schema: one :class:`TrajectoryDataset` per file.

Layout (``schema = "attsolver.trajectories"``, ``schema_version = 1``)::

    /                 attributes: schema, schema_version, config (JSON), system (JSON),
                      noise_level (float), created_by ("attsolver X.Y.Z")
    /t                float64 [nt]
    /y                float64 or float32 [n, nt, *state]   observed values
    /y_clean          (optional) same shape and dtype as y: noise-free values
    /x                (optional) [state[-1]]: spatial grid of a 1-D PDE field

Every dataset carries a Fletcher-32 checksum, so damaged values fail to read instead of
loading silently.  Files are written atomically (temporary file beside the target, fsync, ``os.replace``).
Readers turn every problem (not HDF5, truncated, foreign file, newer schema, missing or
inconsistent datasets) into a ``ValueError`` that says what is wrong and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from .._io import atomic_path
from .dataset import TrajectoryDataset
from .generate import library_version

__all__ = ["SCHEMA", "SCHEMA_VERSION", "save_h5", "load_h5", "inspect_file", "open_h5"]

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
        with h5py.File(tmp, "w") as f:
            f.attrs["schema"] = SCHEMA
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["config"] = json.dumps(dataset.config, allow_nan=False)
            f.attrs["system"] = json.dumps(dataset.system, allow_nan=False)
            f.attrs["noise_level"] = float(dataset.noise_level)
            f.attrs["created_by"] = f"attsolver {library_version()}"
            _write_array(f, "t", _to_numpy(dataset.t, np.dtype(np.float64)))
            _write_array(f, "y", _to_numpy(dataset.y, store))
            if dataset.y_clean is not None:
                _write_array(f, "y_clean", _to_numpy(dataset.y_clean, store))
            if dataset.x is not None:
                _write_array(f, "x", _to_numpy(dataset.x, store))
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
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _unreadable(path, _short(e)) from None
    try:
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
            f"attsolver ({library_version()}) reads (up to {SCHEMA_VERSION}): upgrade attsolver "
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


def load_h5(path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> TrajectoryDataset:
    """Read a file written by :func:`save_h5`.

    Args:
        path: the file.
        dtype: dtype of ``y``/``y_clean``/``x`` in memory; default the stored dtype.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not HDF5 / corrupt / truncated; not an attsolver trajectory file (with a
            pointer to :func:`read_pdebench` for PDEBench files); a newer schema version;
            missing or inconsistent datasets or attributes (named in the message).
    """
    path = Path(path)
    with open_h5(path) as f:
        _check_schema(f, path)
        missing = [k for k in ("t", "y") if k not in f]
        missing_attrs = [k for k in _REQUIRED_ATTRS if k not in f.attrs]
        if missing or missing_attrs:
            parts = []
            if missing:
                parts.append(f"dataset(s) {missing}")
            if missing_attrs:
                parts.append(f"root attribute(s) {missing_attrs}")
            raise ValueError(f"{path}: missing {' and '.join(parts)}; the file is incomplete — regenerate it")
        config = _json_attr(f, "config", path)
        system = _json_attr(f, "system", path)
        noise_level = float(f.attrs["noise_level"])
        arrays = {k: _read_dataset(f, k, path) for k in ("t", "y", "y_clean", "x") if k in f}

    y = arrays["y"]
    for k in ("y_clean",):
        if k in arrays and arrays[k].shape != y.shape:
            raise ValueError(f"{path}: dataset {k!r} has shape {arrays[k].shape} but 'y' has {y.shape}")
    t = arrays["t"]
    if t.ndim != 1 or y.ndim < 3 or y.shape[1] != len(t):
        raise ValueError(
            f"{path}: dataset 't' has shape {t.shape} and 'y' has shape {y.shape}; expected "
            "t [nt] and y [n, nt, *state]"
        )
    if "x" in arrays and (arrays["x"].ndim != 1 or len(arrays["x"]) != y.shape[-1]):
        raise ValueError(f"{path}: dataset 'x' has shape {arrays['x'].shape} but y's last dimension is {y.shape[-1]}")
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


# ---------------------------------------------------------------------------- inspection


def component_stats(dset: h5py.Dataset | np.ndarray, *, chunk: int = 64) -> dict[str, np.ndarray]:
    """Per-component mean, std (population), min and max of ``[n, nt, *state]`` values over
    trajectories and times, reading ``chunk`` trajectories at a time (Chan's merge of
    partial means and sums of squared deviations, in float64)."""
    n = dset.shape[0]
    count, mean, m2 = 0, None, None
    lo = hi = None
    for start in range(0, n, chunk):
        a = np.asarray(dset[start:start + chunk], dtype=np.float64)
        a = a.reshape(-1, *a.shape[2:])
        k = a.shape[0]
        m = a.mean(axis=0)
        s = ((a - m) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2, lo, hi = k, m, s, a.min(axis=0), a.max(axis=0)
        else:
            delta = m - mean
            total = count + k
            mean = mean + delta * (k / total)
            m2 = m2 + s + delta**2 * (count * k / total)
            count = total
            lo, hi = np.minimum(lo, a.min(axis=0)), np.maximum(hi, a.max(axis=0))
    return {"mean": mean, "std": np.sqrt(m2 / count), "min": lo, "max": hi}


def _time_summary(t: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"n": int(len(t)), "start": float(t[0]), "end": float(t[-1]), "step": None}
    if len(t) > 1:
        d = np.diff(t)
        if np.allclose(d, d.mean(), rtol=1e-5, atol=0):
            out["step"] = float(d.mean())
    return out


def inspect_file(path: str | os.PathLike) -> dict[str, Any]:
    """A summary of an attsolver trajectory file or a PDEBench 1-D file (for ``attsolver
    data info``): format, schema version, system, shapes, dtype, time grid, noise level,
    config and per-component statistics of the observed values.  Reads the values in
    chunks, so large files do not need to fit in memory."""
    path = Path(path)
    with open_h5(path) as f:
        if "schema" not in f.attrs and "tensor" in f:
            from .pdebench import inspect_pdebench

            return inspect_pdebench(path)
        version = _check_schema(f, path)
        missing = [k for k in ("t", "y") if k not in f]
        if missing:
            raise ValueError(f"{path}: missing dataset(s) {missing}; the file is incomplete — regenerate it")
        for name in _REQUIRED_ATTRS:
            if name not in f.attrs:
                raise ValueError(f"{path}: missing root attribute {name!r}; the file is incomplete — regenerate it")
        t = _read_dataset(f, "t", path)
        y = f["y"]
        return {
            "format": "attsolver",
            "path": str(path),
            "schema": SCHEMA,
            "schema_version": version,
            "created_by": _attr_str(f.attrs.get("created_by", "unknown")),
            "system": _json_attr(f, "system", path),
            "config": _json_attr(f, "config", path),
            "noise_level": float(f.attrs["noise_level"]),
            "shapes": {k: tuple(f[k].shape) for k in ("t", "y", "y_clean", "x") if k in f},
            "dtype": str(y.dtype),
            "time": _time_summary(t),
            "has_clean": "y_clean" in f,
            "stats": component_stats(y),
        }
