"""The :class:`TrajectoryDataset`: a set of (possibly noisy) trajectories of one system on
one time grid, with the configuration that produced it."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._validate import is_integer, nonnegative_number
from ..systems import make_system

__all__ = ["TrajectoryDataset"]

# how many offending trajectory indices an error message lists before "..."
_MAX_LISTED = 10


def _listed(indices: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in indices[:_MAX_LISTED])
    return shown + (f", ... ({len(indices)} in all)" if len(indices) > _MAX_LISTED else "")


def _as_float_tensor(name: str, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {value.dtype}; convert it with .double()")
        return value
    try:
        out = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a tensor (or array), got {type(value).__name__} ({e})") from None
    if not out.is_floating_point():
        out = out.double()
    return out


def _check_json(name: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{name} must be JSON-serialisable (it is stored in data files): {e}; "
            "use plain numbers, strings, lists and dicts"
        ) from None


@dataclass(eq=False)
class TrajectoryDataset:
    """``n`` trajectories of one system sampled on a common time grid.

    Attributes:
        t: times, 1-D float64 tensor ``[nt]``, strictly increasing.
        y: observed values ``[n, nt, *state]`` (noisy when ``noise_level > 0``).
        system: ``{"name": ..., "params": {...}}`` as from :meth:`System.config`;
            ``attsolver.systems.make_system(**system)`` rebuilds the system.
        y_clean: the noise-free values, same shape as ``y``, or ``None`` (no clean values
            known, or ``noise_level == 0`` so that ``y`` is itself clean; see :attr:`y_true`).
        x: spatial grid of a 1-D PDE field ``[state[-1]]``, else ``None``.
        noise_level: relative noise level sigma of ``y`` (see :mod:`attsolver.data.noise`, docs/guide/data.md), ``>= 0``.
        config: everything that produced the data (generator arguments, seed, source file,
            library version); JSON-serialisable.

    Shapes and finiteness are checked on construction: a trajectory with NaN/inf values is
    a ``ValueError`` that names its index.
    """

    t: Tensor
    y: Tensor
    system: dict[str, Any]
    y_clean: Tensor | None = None
    x: Tensor | None = None
    noise_level: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        t = _as_float_tensor("t", self.t).to(torch.float64)
        if t.ndim != 1 or len(t) == 0:
            raise ValueError(f"t must be 1-D with at least one time, got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("t contains NaN or infinite values")
        if len(t) > 1 and not bool((t[1:] > t[:-1]).all()):
            raise ValueError("t must be strictly increasing")
        self.t = t

        y = _as_float_tensor("y", self.y)
        if y.ndim < 3:
            raise ValueError(
                f"y must have shape [n_trajectories, n_times, *state] (at least 3-D), got "
                f"{tuple(y.shape)}; for a single trajectory use y.unsqueeze(0), for a scalar "
                "state y.unsqueeze(-1)"
            )
        if y.shape[0] == 0:
            raise ValueError("y holds no trajectories (its first dimension is 0)")
        if y.shape[1] != len(t):
            raise ValueError(
                f"y has {y.shape[1]} times (shape {tuple(y.shape)}) but t has {len(t)}; "
                "y must be [n_trajectories, len(t), *state]"
            )
        self.y = y
        self._check_finite("y", y)

        if self.y_clean is not None:
            yc = _as_float_tensor("y_clean", self.y_clean)
            if yc.shape != y.shape:
                raise ValueError(f"y_clean has shape {tuple(yc.shape)} but y has {tuple(y.shape)}; they must match")
            if yc.dtype != y.dtype:
                yc = yc.to(y.dtype)
            self._check_finite("y_clean", yc)
            self.y_clean = yc

        if self.x is not None:
            x = _as_float_tensor("x", self.x)
            if x.ndim != 1 or len(x) != y.shape[-1]:
                raise ValueError(
                    f"x must be the 1-D spatial grid with one point per field value "
                    f"({y.shape[-1]}), got shape {tuple(x.shape)}"
                )
            self.x = x

        self.noise_level = nonnegative_number("noise_level", self.noise_level, type_error=False)

        if not isinstance(self.system, dict) or not isinstance(self.system.get("name"), str) \
                or not isinstance(self.system.get("params", {}), dict):
            raise ValueError(
                f"system must be a dict {{'name': str, 'params': dict}} as System.config() "
                f"returns, got {self.system!r}"
            )
        self.system = {"name": self.system["name"], "params": dict(self.system.get("params", {}))}
        _check_json("system", self.system)
        if not isinstance(self.config, dict):
            raise TypeError(f"config must be a dict, got {type(self.config).__name__}")
        _check_json("config", self.config)

    @classmethod
    def from_arrays(cls, t: Any, y: Any, *, noise_level: float | None = None, y_clean: Any = None,
                    name: str = "custom", params: dict[str, Any] | None = None, x: Any = None,
                    config: dict[str, Any] | None = None) -> TrajectoryDataset:
        """Wrap measured or externally simulated trajectories (NumPy arrays, lists or tensors).

        Args:
            t: the common times, 1-D ``[nt]`` strictly increasing; a 2-D ``[n, nt]`` array is
                accepted when every row is the same grid.
            y: values ``[n, nt, *state]`` (a single trajectory ``[nt, *state]`` needs
                ``y[None]``); a list of per-trajectory arrays must have equal lengths.
            noise_level: the relative observation noise of ``y`` if known (recorded, and
                ``fit``'s noise check uses it); ``None`` records it as unknown and treats
                ``y`` as the reference values (``noise_level = 0``).
            y_clean: the noise-free values, if known.
            name, params: the system's name and parameters recorded with the data.
            x: spatial grid of a 1-D field, if any.
            config: anything else to record (JSON-able).

        Raises:
            ValueError: ragged trajectories or per-trajectory times that differ, times that
                are not strictly increasing, NaN/inf rows (their indices named), shapes that
                do not match — each with the fix.
        """
        if isinstance(y, (list, tuple)) and y and not isinstance(y[0], numbers.Number):
            lengths = [len(v) for v in y]
            if len(set(lengths)) > 1:
                raise ValueError(
                    f"y is ragged: its trajectories have {sorted(set(lengths))} time points; resample them "
                    "onto one common grid t (e.g. numpy.interp) or cut them to a common length"
                )
            y = torch.stack([torch.as_tensor(v) for v in y])
        yt = _as_float_tensor("y", y)
        if isinstance(t, (list, tuple)) and t and isinstance(t[0], (list, tuple)) \
                and len({len(r) for r in t}) > 1:
            raise ValueError("t is ragged (trajectories with different numbers of times); resample them onto "
                             "one common grid")
        tt = _as_float_tensor("t", t).to(torch.float64)
        if tt.ndim == 2:
            if tt.shape[0] != yt.shape[0]:
                raise ValueError(f"t has {tt.shape[0]} rows but y has {yt.shape[0]} trajectories")
            if not bool(torch.isclose(tt, tt[:1].expand_as(tt), rtol=1e-9, atol=1e-12).all()):
                bad = (~torch.isclose(tt, tt[:1].expand_as(tt), rtol=1e-9, atol=1e-12)).any(dim=1)
                raise ValueError(
                    f"t differs between trajectories (e.g. index(es) {_listed(bad.nonzero().flatten().tolist())} "
                    "do not share trajectory 0's times); resample them onto one common grid"
                )
            tt = tt[0]
        if tt.ndim != 1:
            raise ValueError(f"t must be 1-D [n_times] (or [n, n_times] with equal rows), got shape {tuple(tt.shape)}")
        if not bool(torch.isfinite(tt).all()):
            raise ValueError("t contains NaN or infinite values; give finite times")
        if len(tt) > 1 and not bool((tt[1:] > tt[:-1]).all()):
            i = int((~(tt[1:] > tt[:-1])).nonzero()[0, 0])
            raise ValueError(
                f"t must be strictly increasing, but t[{i}]={float(tt[i]):g} >= t[{i + 1}]={float(tt[i + 1]):g}; "
                "sort by time (order = t.argsort(); y = y[:, order]) and drop repeated times"
            )
        if yt.ndim >= 1 and yt.ndim < 3:
            raise ValueError(
                f"y must be [n_trajectories, n_times, *state], got shape {tuple(yt.shape)}; for one trajectory "
                "pass y[None], for a scalar state y[..., None]"
            )
        ok = torch.isfinite(yt.reshape(yt.shape[0], -1)).all(dim=1)
        if not bool(ok.all()):
            bad = (~ok).nonzero().flatten().tolist()
            raise ValueError(
                f"y has NaN or infinite values in trajectory index(es) {_listed(bad)}; drop those rows before "
                "from_arrays (keep = numpy.isfinite(y).reshape(len(y), -1).all(1); y = y[keep]) or fill the gaps"
            )
        cfg = dict(config or {})
        cfg.setdefault("generator", "TrajectoryDataset.from_arrays")
        cfg["noise_level_known"] = noise_level is not None
        return cls(t=tt, y=yt, system={"name": name, "params": dict(params or {})}, y_clean=y_clean, x=x,
                   noise_level=0.0 if noise_level is None else noise_level, config=cfg)

    @staticmethod
    def _check_finite(name: str, y: Tensor) -> None:
        # in chunks of trajectories, so a multi-GB set does not need a same-sized mask
        flat = y.reshape(y.shape[0], -1)
        step = max(1, (1 << 24) // max(1, flat.shape[1]))
        ok = torch.cat([torch.isfinite(flat[i:i + step]).all(dim=1) for i in range(0, len(flat), step)])
        if not bool(ok.all()):
            bad = (~ok).nonzero().flatten().tolist()
            raise ValueError(
                f"{name} has NaN or infinite values in trajectory index(es) {_listed(bad)}; "
                "drop them (dataset.subset(...) on the others) or regenerate with a smaller step"
            )

    # ------------------------------------------------------------------ views

    def __len__(self) -> int:
        return self.y.shape[0]

    def __repr__(self) -> str:
        return (
            f"TrajectoryDataset(system={self.system['name']!r}, n={len(self)}, nt={self.n_times}, "
            f"state={self.state_shape}, t=[{float(self.t[0]):g}, {float(self.t[-1]):g}], "
            f"noise_level={self.noise_level:g}, dtype={self.dtype})"
        )

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one state, ``y.shape[2:]``."""
        return tuple(self.y.shape[2:])

    @property
    def n_times(self) -> int:
        return len(self.t)

    @property
    def dtype(self) -> torch.dtype:
        return self.y.dtype

    @property
    def y_true(self) -> Tensor:
        """The noise-free values: ``y_clean``, or ``y`` itself when ``noise_level == 0``."""
        if self.y_clean is not None:
            return self.y_clean
        if self.noise_level == 0:
            return self.y
        raise ValueError(
            f"this dataset holds noisy observations (noise_level={self.noise_level:g}) "
            "without their clean values"
        )

    def _replace(self, **changes: Any) -> TrajectoryDataset:
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        kw["config"] = copy.deepcopy(self.config)
        kw["system"] = copy.deepcopy(self.system)
        kw.update(changes)
        return TrajectoryDataset(**kw)

    def subset(self, indices: Sequence[int] | Tensor, *, note: dict[str, Any] | None = None) -> TrajectoryDataset:
        """The trajectories at ``indices`` (in that order), as a new dataset.

        ``note`` (JSON-serialisable) is recorded under ``config["subset"]``.
        """
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(idx) == 0:
            raise ValueError("subset needs at least one index")
        if bool(((idx < -len(self)) | (idx >= len(self))).any()):
            raise IndexError(f"subset indices must lie in [0, {len(self)}), got {idx.tolist()[:_MAX_LISTED]}")
        cfg = copy.deepcopy(self.config)
        if note is not None:
            cfg["subset"] = note
        return self._replace(
            y=self.y[idx],
            y_clean=None if self.y_clean is None else self.y_clean[idx],
            config=cfg,
        )

    def split(self, sizes: Sequence[float] | Sequence[int], *, seed: int = 0,
              shuffle: bool = True) -> tuple[TrajectoryDataset, ...]:
        """Split the trajectories into disjoint parts, e.g. ``train, val = ds.split([0.8, 0.2])``.

        Args:
            sizes: fractions (floats in (0, 1], summing to at most 1; when they sum to 1 the
                last part takes the rounding remainder) or counts (positive ints, summing to
                at most ``len(self)``).
            seed: seed of the random permutation (``torch.Generator``); the same seed gives
                the same split.
            shuffle: ``False`` keeps the stored order (first parts take the first trajectories).

        Raises:
            ValueError: a part would get no trajectory, or the counts exceed the dataset.
        """
        sizes = list(sizes)
        n = len(self)
        if not sizes:
            raise ValueError("split needs at least one size")
        if all(is_integer(s) for s in sizes):
            counts = [int(s) for s in sizes]
            if any(c < 1 for c in counts):
                raise ValueError(f"split counts must be positive integers, got {sizes}")
            if sum(counts) > n:
                raise ValueError(
                    f"too few trajectories: split {sizes} needs {sum(counts)} but the dataset has "
                    f"{n}; generate more (n >= {sum(counts)}) or ask for fewer"
                )
        else:
            fr = [float(s) for s in sizes]
            if any(not (0 < f <= 1) for f in fr):
                raise ValueError(f"split fractions must lie in (0, 1], got {sizes}")
            total = sum(fr)
            if total > 1 + 1e-9:
                raise ValueError(f"split fractions sum to {total:g} > 1: {sizes}")
            counts = [int(math.floor(f * n + 1e-9)) for f in fr]
            if abs(total - 1) <= 1e-9:
                counts[-1] = n - sum(counts[:-1])
            if any(c < 1 for c in counts):
                need = max(math.ceil(1 / f - 1e-9) for f in fr)
                raise ValueError(
                    f"too few trajectories: {n} cannot be split into fractions {sizes} with at "
                    f"least one trajectory per part (counts would be {counts}); generate at least "
                    f"{need} trajectories or give counts instead of fractions"
                )
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        else:
            order = torch.arange(n)
        parts, start = [], 0
        for k, c in enumerate(counts):
            idx = order[start:start + c]
            start += c
            note = {"of_n": n, "sizes": sizes, "part": k, "seed": int(seed), "shuffle": bool(shuffle)}
            parts.append(self.subset(idx, note=note))
        return tuple(parts)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> TrajectoryDataset:
        """A copy with ``y``, ``y_clean`` and ``x`` in ``dtype`` / on ``device`` (``t`` stays float64)."""
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")

        def conv(v):
            return None if v is None else v.to(dtype=dtype or v.dtype, device=device or v.device)

        return self._replace(y=conv(self.y), y_clean=conv(self.y_clean), x=conv(self.x),
                             t=self.t.to(device=device or self.t.device))

    def make_system(self):
        """Rebuild the system from ``self.system`` and check that its state shape matches ``y``."""
        system = make_system(**self.system)
        shape = tuple(system.state_shape)
        if shape != self.state_shape:
            raise ValueError(
                f"system {self.system['name']!r} with params {self.system['params']} has state "
                f"shape {shape} but the data has {self.state_shape}"
            )
        return system
