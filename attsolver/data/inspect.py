"""Summaries of trajectory files for ``attsolver data info``: our own schema
(:mod:`attsolver.data.h5`) and PDEBench's 1-D layout (:mod:`attsolver.data.pdebench`).

This module reads both formats, so that neither reader needs the other: ``h5`` and
``pdebench`` each know one layout, and this one dispatches.  Values are read in chunks of
trajectories, so a file larger than memory can be summarised.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .h5 import SCHEMA, _attr_str, _check_layout, _check_schema, _json_attr, open_h5
from .pdebench import (
    PDEBENCH_DATASETS, _burgers_config, _domain_length, _find_nu, _snap_float32,
)
from .pdebench import _check_layout as _check_pdebench_layout

__all__ = ["inspect_file", "inspect_pdebench", "component_stats"]


def component_stats(dset: h5py.Dataset | np.ndarray, *, chunk: int = 64) -> dict[str, np.ndarray]:
    """Per-component mean, std (population), min and max of ``[n, nt, *state]`` values over
    trajectories and times, each of the state's shape, reading ``chunk`` trajectories at a
    time (Chan's merge of partial means and sums of squared deviations, in float64)."""
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
    """``{"n", "start", "end", "step"}`` of a time grid; ``step`` is ``None`` if not uniform."""
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
            return inspect_pdebench(path)
        version = _check_schema(f, path)
        dsets = _check_layout(f, path)
        t = dsets["t"][()]
        y = dsets["y"]
        if not np.all(np.isfinite(t)):
            raise ValueError(f"{path}: dataset 't' holds non-finite times; the file is damaged")
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


def inspect_pdebench(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a PDEBench 1-D file for ``attsolver data info`` (values read in chunks)."""
    path = Path(path)
    with open_h5(path) as f:
        shape, nt, nx = _check_pdebench_layout(f, path)
        try:
            nu_file: float | None = _find_nu(f, path, None)
        except ValueError:
            nu_file = None
        x = np.asarray(f["x-coordinate"][()], dtype=np.float64)
        t = _snap_float32(f["t-coordinate"][()][:nt])
        length = _domain_length(x, path)
        attrs = {k: _attr_str(v) for k, v in f.attrs.items()}
        return {
            "format": "pdebench",
            "path": str(path),
            "pdebench_nu": nu_file,
            "system": _burgers_config(nu=nu_file / math.pi, nx=nx, length=length) if nu_file else None,
            "attrs": attrs,
            "shapes": {k: tuple(f[k].shape) for k in PDEBENCH_DATASETS},
            "dtype": str(f["tensor"].dtype),
            "time": _time_summary(t),
            "t_coordinate_extra": f["t-coordinate"].shape[0] == nt + 1,
            "noise_level": 0.0,
            "stats": component_stats(f["tensor"]),
        }
