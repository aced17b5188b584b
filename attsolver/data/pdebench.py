"""PDEBench 1-D Burgers files (Takamoto et al., NeurIPS 2022 Datasets & Benchmarks).

Layout of e.g. ``1D_Burgers_Sols_Nu0.001.hdf5`` (as written by PDEBench's
``data_gen_NLE/Data_Merge.py``)::

    /tensor         float32 [samples, nt, nx]      u(t, x); nt = 201 for t in [0, 2]
    /x-coordinate   [nx]                           cell centres (i + 1/2)/nx of [0, 1]
    /t-coordinate   [nt + 1]                       i * dt_save, one value MORE than nt
    attribute Nu    on the root group               the "viscosity" epsilon of the file name

Convention (checked in PDEBench's generator ``BurgersEq/burgers_multi_solution_Hydra.py``:
its numerical flux is ``u^2/2 - epsilon/pi * du/dx``, i.e. it multiplies epsilon by
``pi_inv = 1/pi``): the files solve

    u_t + (u^2 / 2)_x = (Nu / pi) u_xx      on [0, 1], periodic,

so the physical diffusion coefficient of our ``burgers`` system is ``nu = Nu / pi``.
The generator saves frame ``i`` at ``t = i * dt_save`` for ``i = 0..nt-1`` and writes
``t-coordinate = arange(nt + 1) * dt_save``; the reader therefore drops the *last* value.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from .._io import atomic_path
from .._version import __version__
from ..systems import make_system
from .dataset import TrajectoryDataset
from .h5 import _check_allocation, open_h5, write_sealed

__all__ = ["read_pdebench", "write_pdebench", "PDEBENCH_DATASETS"]

#: the dataset names of PDEBench's 1-D layout
PDEBENCH_DATASETS = ("tensor", "x-coordinate", "t-coordinate")

_NU_IN_NAME = re.compile(r"Nu([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


def _snap_float32(values: np.ndarray) -> np.ndarray:
    """float32 coordinates back to the decimal grid they were generated on, when they are
    uniform: ``t0 + i * dt`` with ``t0``/``dt`` the shortest decimals that round to the same
    float32.  Non-uniform values are returned as float64 unchanged."""
    v = np.asarray(values)
    out = v.astype(np.float64)
    if v.dtype != np.float32 or len(v) < 2:
        return out
    # str() of a numpy float32 is its shortest round-tripping decimal ("0.01")
    step = float(str(np.float32((out[-1] - out[0]) / (len(out) - 1))))
    start = float(str(np.float32(out[0])))
    snapped = start + np.arange(len(out)) * step
    tol = 4 * np.finfo(np.float32).eps * max(1.0, float(np.abs(out).max()))
    return snapped if np.abs(snapped - out).max() <= tol else out


def _find_nu(f: h5py.File, path: Path, override: float | None) -> float:
    if override is not None:
        return float(override)
    for holder in (f, f["tensor"]):
        for key in ("Nu", "nu"):
            if key in holder.attrs:
                return float(np.asarray(holder.attrs[key]).reshape(-1)[0])
    m = _NU_IN_NAME.search(path.name)
    if m:
        return float(m.group(1))
    raise ValueError(
        f"{path}: no viscosity found — PDEBench stores it as the root attribute 'Nu' (and in the "
        "file name, '..._Nu0.001.hdf5'); pass it with read_pdebench(path, pdebench_nu=...)"
    )


def _check_layout(f: h5py.File, path: Path) -> tuple[tuple[int, ...], int, int]:
    if "schema" in f.attrs:
        raise ValueError(f"{path} is an attsolver trajectory file, not a PDEBench file: read it with load_h5(path)")
    missing = [k for k in PDEBENCH_DATASETS if k not in f or not isinstance(f[k], h5py.Dataset)]
    if missing:
        present = sorted(f.keys())
        raise ValueError(
            f"{path}: missing PDEBench dataset(s) {missing} (found {present}); a PDEBench 1-D "
            "file has 'tensor' [samples, nt, nx], 'x-coordinate' [nx] and 't-coordinate' [nt or nt+1]"
        )
    shape = tuple(f["tensor"].shape)
    if len(shape) != 3:
        raise ValueError(
            f"{path}: 'tensor' has shape {shape}; the 1-D PDEBench layout is [samples, nt, nx] "
            "(2-D/3-D and multi-variable PDEBench files are not supported)"
        )
    n_samples, nt, nx = shape
    lx, lt = f["x-coordinate"].shape, f["t-coordinate"].shape
    if len(lx) != 1 or lx[0] != nx:
        raise ValueError(f"{path}: 'x-coordinate' has shape {lx} but 'tensor' has nx = {nx} points; they must match")
    if len(lt) != 1 or lt[0] not in (nt, nt + 1):
        raise ValueError(
            f"{path}: 't-coordinate' has shape {lt} but 'tensor' has nt = {nt} frames; expected "
            f"{nt} or {nt + 1} times (PDEBench stores one extra final time)"
        )
    return shape, nt, nx


def _domain_length(x: np.ndarray, path: Path) -> float:
    if len(x) < 2:
        raise ValueError(f"{path}: 'x-coordinate' needs at least 2 points, got {len(x)}")
    d = np.diff(x)
    dx = float(d.mean())
    if dx <= 0 or not np.allclose(d, dx, rtol=1e-4, atol=0):
        raise ValueError(f"{path}: 'x-coordinate' must be uniformly increasing (a periodic grid)")
    length = dx * len(x)
    return 1.0 if abs(length - 1.0) <= 1e-4 else length


def _select(samples: Any, n: int) -> np.ndarray:
    if samples is None:
        return np.arange(n)
    if isinstance(samples, (int, np.integer)) and not isinstance(samples, bool):
        if not 1 <= samples <= n:
            raise ValueError(f"samples={samples} but the file holds {n} samples")
        return np.arange(int(samples))
    if isinstance(samples, slice):
        idx = np.arange(n)[samples]
    else:
        idx = np.asarray(samples, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise ValueError(f"sample indices must lie in [0, {n}), got {idx.min()}..{idx.max()}")
        idx = np.where(idx < 0, idx + n, idx)
    if len(idx) == 0:
        raise ValueError("samples selects no sample")
    return idx


def read_pdebench(path: str | os.PathLike, *, samples: int | slice | Any = None,
                  dtype: torch.dtype | None = None, pdebench_nu: float | None = None) -> TrajectoryDataset:
    """Read a PDEBench 1-D Burgers file as a :class:`TrajectoryDataset` of our ``burgers`` system.

    Args:
        path: the ``.hdf5`` file.
        samples: which samples to read: ``None`` (all), an int ``k`` (the first ``k``), a
            slice, or a sequence of indices.  The full files hold 10,000 samples (8 GB).
        dtype: dtype of ``y``/``x`` in memory; default the stored dtype (float32).
        pdebench_nu: the file's ``Nu`` when it has no ``Nu`` attribute.

    ``x`` is the file's grid: PDEBench stores cell centres ``(j + 1/2)/nx``, half a cell
    off :meth:`Burgers.grid` (``j/nx``); the equation is translation invariant, so the
    system integrates these fields unchanged.

    Returns:
        Dataset with ``t`` (the extra final time dropped; float32 times snapped back to the
        decimal grid ``i * dt``), ``y [samples, nt, nx]``, ``x`` from the file and ``system =
        {"name": "burgers", "params": {"nu": Nu/pi, "nx": nx, "length": 1.0, ...}}``;
        ``config`` records ``pdebench_nu`` (the file's value) and the selected samples.
    """
    path = Path(path)
    with open_h5(path) as f:
        shape, nt, nx = _check_layout(f, path)
        _check_allocation({k: f[k] for k in ("tensor", "x-coordinate", "t-coordinate")}, path)
        nu_file = _find_nu(f, path, pdebench_nu)
        idx = _select(samples, shape[0])
        x_raw = f["x-coordinate"][()]
        t_raw = f["t-coordinate"][()][:nt]
        dset = f["tensor"]
        if np.all(np.diff(idx) == 1):
            y = dset[int(idx[0]):int(idx[-1]) + 1]
        else:  # h5py fancy indexing needs increasing unique indices
            uniq, inverse = np.unique(idx, return_inverse=True)
            y = dset[uniq][inverse]
    if not math.isfinite(nu_file) or nu_file <= 0:
        raise ValueError(f"{path}: viscosity Nu must be a positive number, got {nu_file}")
    length = _domain_length(np.asarray(x_raw, dtype=np.float64), path)
    t = _snap_float32(t_raw)
    nu = nu_file / math.pi
    system = _burgers_config(nu=nu, nx=nx, length=length)
    whole = samples is None or len(idx) == shape[0] and np.array_equal(idx, np.arange(shape[0]))
    config = {
        "source": "pdebench",
        "file": path.name,
        "pdebench_nu": nu_file,
        "equation": "u_t + (u^2/2)_x = (Nu/pi) u_xx, periodic on [0, length]",
        "samples": None if whole else (
            {"start": int(idx[0]), "stop": int(idx[-1]) + 1} if np.all(np.diff(idx) == 1)
            else [int(i) for i in idx]
        ),
        "file_samples": int(shape[0]),
        "attsolver_version": __version__,
    }
    y_t = torch.from_numpy(np.ascontiguousarray(y))
    x_t = torch.from_numpy(np.ascontiguousarray(x_raw))
    if not y_t.is_floating_point():
        raise ValueError(f"{path}: 'tensor' must hold floating-point values, found {y.dtype}")
    try:
        return TrajectoryDataset(
            t=torch.from_numpy(t), y=y_t if dtype is None else y_t.to(dtype),
            x=x_t.to(dtype or y_t.dtype), system=system, noise_level=0.0, config=config,
        )
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None


def _burgers_config(*, nu: float, nx: int, length: float) -> dict[str, Any]:
    cfg = {"name": "burgers", "params": {"nu": nu, "nx": int(nx), "length": float(length)}}
    try:  # normalise through the system class (adds its other defaults) when it is available
        return make_system(**cfg).config()
    except Exception:  # noqa: BLE001 - a placeholder or differently-parametrised system
        return cfg


def write_pdebench(dataset: TrajectoryDataset, path: str | os.PathLike) -> Path:
    """Write a Burgers :class:`TrajectoryDataset` in PDEBench's 1-D layout, atomically.

    ``tensor`` gets the observed values ``y`` as float32, ``x-coordinate`` the dataset's
    ``x`` (else the cell centres ``(i + 1/2) length / nx``), ``t-coordinate`` the ``nt``
    times plus one more (``t[-1] + dt``, as PDEBench does), and the root attribute ``Nu =
    pi * nu``.  Clean values (``y_clean``) and the config are not part of the layout.
    """
    if not isinstance(dataset, TrajectoryDataset):
        raise TypeError(f"dataset must be a TrajectoryDataset, got {type(dataset).__name__}")
    if dataset.system.get("name") != "burgers":
        raise ValueError(
            f"the PDEBench layout is written for the burgers system only, this dataset is "
            f"{dataset.system.get('name')!r}; use save_h5 instead"
        )
    if len(dataset.state_shape) != 1:
        raise ValueError(f"expected a 1-D field [n, nt, nx], got state shape {dataset.state_shape}")
    params = dataset.system["params"]
    if "nu" not in params:
        raise ValueError(f"the burgers system config has no 'nu' parameter: {params}")
    nx = dataset.state_shape[0]
    length = float(params.get("length", 1.0))
    if dataset.x is not None:
        x = dataset.x.detach().cpu().numpy().astype(np.float32)
    else:
        x = ((np.arange(nx) + 0.5) * (length / nx)).astype(np.float32)
    t = dataset.t.numpy()
    dt = float(t[-1] - t[-2]) if len(t) > 1 else 1.0
    t_coord = np.append(t, t[-1] + dt).astype(np.float32)
    path = Path(path)
    with atomic_path(path) as tmp:
        with write_sealed(tmp) as f:
            f.create_dataset("tensor", data=dataset.y.detach().cpu().numpy().astype(np.float32))
            f.create_dataset("x-coordinate", data=x)
            f.create_dataset("t-coordinate", data=t_coord)
            f.attrs["Nu"] = float(params["nu"]) * math.pi
    return path
