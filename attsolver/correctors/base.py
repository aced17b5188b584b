"""The :class:`Corrector` base class: what every learned correction shares.

A corrector ``C`` is added to each classical step inside :func:`attsolver.solve`::

    y_{n+1} = y*_{n+1} + C(t_n, y_n, dy_n, h),    y*_{n+1} = Phi_h(y_n),  dy_n = y*_{n+1} - y_n

and this class provides, for every subclass:

* the *record of what it was trained for* (method, step size, state shape, feature layout,
  dtype) and :meth:`Corrector.check_compatible`, which ``solve`` calls once per solve;
* *normalisation buffers*: per-feature mean/std of the inputs and a per-component output
  scale, set by :func:`attsolver.fit` from the training data, so the network sees O(1)
  inputs and produces O(1) outputs;
* the batched ``forward`` (any batch dimensions, or none) that flattens the state, builds
  the features, normalises them and calls the subclass's :meth:`Corrector.network`;
* atomic :meth:`Corrector.save` and :meth:`Corrector.load` (``weights_only=True``; a plain
  JSON-able config plus a state dict).

A subclass implements ``network(u) -> v`` (``[B, F] -> [B, D]``, its last layer zero
initialised, so an untrained corrector returns exactly zero and ``solve`` reproduces the
classical solution bit for bit) and is registered with :func:`register_corrector`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .._version import __version__

__all__ = [
    "Corrector", "register_corrector", "list_correctors", "get_corrector_class", "load_corrector",
    "read_checkpoint", "CHECKPOINT_FORMAT", "FIT_CHECKPOINT_FORMAT", "SCHEMA_VERSION", "FEATURES",
    "TIME_FEATURES",
]

#: ``format`` of a saved corrector (``Corrector.save``) and of a training checkpoint (``fit``).
CHECKPOINT_FORMAT = "attsolver.corrector"
FIT_CHECKPOINT_FORMAT = "attsolver.fit-checkpoint"
#: Version of both layouts; readers refuse a larger number.
SCHEMA_VERSION = 1

#: Step features a corrector can take, each of the flattened state's size ``D`` except ``h``:
#: ``y`` the state y_n, ``dy`` the classical increment h·Phi, ``phi`` the increment per unit
#: time Phi = dy/h, ``h`` the step (one number).
FEATURES = ("y", "dy", "phi", "h")
#: Time features for non-autonomous systems (one number each): ``t`` the step's start time,
#: and ``cos:<w>`` / ``sin:<w>`` the phase of a forcing of angular frequency ``w`` at that time
#: (e.g. ``("y", "dy", "cos:1.2", "sin:1.2")`` for a Duffing oscillator forced at ``cos(1.2 t)``).
TIME_FEATURES = ("t", "cos:<w>", "sin:<w>")


def _time_feature(name: str) -> tuple[str, float] | None:
    """``("t", 1.0)``, ``("cos", w)``, ``("sin", w)`` for a time feature's name, else ``None``."""
    if name == "t":
        return "t", 1.0
    kind, sep, w = name.partition(":")
    if sep and kind in ("cos", "sin"):
        try:
            omega = float(w)
        except ValueError:
            return None
        if math.isfinite(omega) and omega != 0:
            return kind, omega
    return None

# relative tolerance on the step size: solve() splits intervals into equal steps, which
# differ from the nominal step by rounding only
_STEP_RTOL = 1e-9

_CORRECTORS: dict[str, type[Corrector]] = {}


def register_corrector(cls: type[Corrector]) -> type[Corrector]:
    """Class decorator: make ``cls`` loadable by name from checkpoints (``load_corrector``)."""
    name = cls.__name__
    if name in _CORRECTORS and _CORRECTORS[name] is not cls:
        raise ValueError(f"a corrector class named {name!r} is already registered")
    _CORRECTORS[name] = cls
    return cls


def list_correctors() -> list[str]:
    """Names of the registered corrector classes."""
    return sorted(_CORRECTORS)


def get_corrector_class(name: str) -> type[Corrector]:
    try:
        return _CORRECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown corrector class {name!r}; registered: {', '.join(list_correctors())}"
        ) from None


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _as_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.replace("torch.", ""), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise TypeError(f"dtype must be a real floating torch dtype (or its name), got {dtype!r}")
    return dtype


def _as_state_shape(state_shape: Any) -> tuple[int, ...]:
    if isinstance(state_shape, numbers.Integral) and not isinstance(state_shape, bool):
        state_shape = (int(state_shape),)
    try:
        shape = tuple(state_shape)
    except TypeError:
        raise TypeError(f"state_shape must be an int or a tuple of ints, got {state_shape!r}") from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape):
        raise ValueError(f"state_shape must be a non-empty tuple of positive ints, got {state_shape!r}")
    return tuple(int(s) for s in shape)


def _fmt_steps(steps: np.ndarray) -> str:
    distinct = sorted({f"{s:.6g}" for s in steps}, key=float)  # steps equal up to rounding print once
    shown = ", ".join(distinct[:5])
    return shown + (f", ... ({len(distinct)} distinct)" if len(distinct) > 5 else "")


class Corrector(nn.Module):
    """Base class of the learned corrections applied by :func:`attsolver.solve`.

    Args:
        state_shape: shape of one state without batch dimensions (an int ``d`` for ``(d,)``).
        method: the fixed-step method it corrects (a name from ``list_methods(kind="fixed")``).
        step_size: the step ``h > 0`` it corrects.
        features: which step features the network sees, from :data:`FEATURES`.
        dtype: dtype of parameters and buffers.
        hparams: the subclass's own constructor arguments (JSON-able); with the above they
            form :meth:`config`, from which :meth:`load` rebuilds the module.

    Attributes:
        output_order: ``C`` is multiplied by ``h ** output_order`` (0: no h-scaling;
            Hypersolver: ``p + 1``).
        training_info: a JSON-able dict that :func:`attsolver.fit` fills (data, settings,
            best validation loss); part of :attr:`trained_for` and saved with the model.
    """

    output_order: int = 0
    _default_features: ClassVar[tuple[str, ...]] = ("y",)

    def __init__(self, state_shape: Any, *, method: str, step_size: float,
                 features: tuple[str, ...] | list[str], dtype: Any = torch.float32,
                 hparams: dict[str, Any] | None = None):
        super().__init__()
        from ..steppers import get_method, list_methods

        spec = get_method(method)
        if spec.kind != "fixed":
            raise ValueError(
                f"a corrector corrects a fixed-step method, not the {spec.kind} {method!r}; "
                f"choose one of: {', '.join(list_methods(kind='fixed'))}"
            )
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real) \
                or not math.isfinite(step_size) or step_size <= 0:
            raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
        features = tuple(features)
        bad = [f for f in features if f not in FEATURES and _time_feature(f) is None]
        if bad or not features or len(set(features)) != len(features):
            raise ValueError(
                f"features must be distinct names from {FEATURES} or the time features {TIME_FEATURES} "
                f"(w a non-zero number, e.g. 'cos:1.2'), got {features!r}"
            )
        self.state_shape = _as_state_shape(state_shape)
        self.state_dim = math.prod(self.state_shape)
        self.method = spec.name
        self.order = int(spec.order)
        self.step_size = float(step_size)
        self.features = features
        dtype = _as_dtype(dtype)
        self._trained_dtype = _dtype_name(dtype)
        self._hparams = dict(hparams or {})
        self.training_info: dict[str, Any] = {}
        json.dumps(self._hparams)  # a subclass bug if not JSON-able
        n_in = self.feature_dim
        self.register_buffer("in_mean", torch.zeros(n_in, dtype=dtype))
        self.register_buffer("in_std", torch.ones(n_in, dtype=dtype))
        self.register_buffer("out_scale", torch.ones(self.state_dim, dtype=dtype))

    # ------------------------------------------------------------------ subclass API

    def _check_forward(self, h: float) -> None:
        """Every corrector is trained for forward steps; a backward solve is refused, not guessed."""
        if h <= 0:
            raise ValueError(
                f"{type(self).__name__} was trained for forward steps (h = {self.step_size:g} > 0); "
                f"this solve steps backward (h = {h:g}, t decreasing), which it was not trained for"
            )

    def network(self, u: Tensor) -> Tensor:
        """Normalised features ``[B, feature_dim]`` -> normalised correction ``[B, D]``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ features

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector ``u``: ``D`` per state feature, 1 for ``h`` and each time feature."""
        return sum(self.state_dim if f in ("y", "dy", "phi") else 1 for f in self.features)

    @property
    def uses_time(self) -> bool:
        """Whether a time feature (``t``, ``cos:<w>``, ``sin:<w>``) is among the features."""
        return any(f not in FEATURES for f in self.features)

    def feature_slices(self) -> dict[str, slice]:
        """Where each feature lies in ``u``."""
        out, start = {}, 0
        for f in self.features:
            width = self.state_dim if f in ("y", "dy", "phi") else 1
            out[f] = slice(start, start + width)
            start += width
        return out

    def feature_parts(self, y: Tensor, dy: Tensor, h: float, h_shape: tuple[int, ...],
                      t: Tensor | None = None) -> list[Tensor]:
        """The step's features named in ``features``, in that order: ``y``, ``dy``, ``phi = dy / h``,
        and ``h`` and the time features as tensors of shape ``h_shape`` (constant, or per sample
        when ``t`` holds one time per sample, ``[B]``)."""
        parts = []
        for f in self.features:  # runs at every corrected step: plain branches, no closures
            if f == "y":
                parts.append(y)
            elif f == "dy":
                parts.append(dy)
            elif f == "phi":
                parts.append(dy / h)
            elif f == "h":
                parts.append(y.new_full(h_shape, h))
            else:
                parts.append(self._time_part(f, t, y, h_shape))
        return parts

    def _time_part(self, f: str, t: Tensor | None, y: Tensor, h_shape: tuple[int, ...]) -> Tensor:
        if t is None:
            raise ValueError(
                f"this {type(self).__name__} uses the time feature {f!r} and needs the step's time t; "
                "call it as corrector(t, y, dy, h) with t a tensor (attsolver.solve and fit do)"
            )
        kind, omega = _time_feature(f)
        tt = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        v = tt if kind == "t" else (torch.cos(omega * tt) if kind == "cos" else torch.sin(omega * tt))
        if v.ndim == 0:
            return v.expand(h_shape)
        return v.reshape(len(v), *([1] * (len(h_shape) - 1))).expand(h_shape)

    def compute_features(self, y: Tensor, dy: Tensor, h: float, t: Tensor | None = None) -> Tensor:
        """Raw (not normalised) features ``[B, feature_dim]`` from flat ``y``, ``dy`` ``[B, D]``
        (``t``: the step's time, 0-d or one per sample, for the time features)."""
        parts = self.feature_parts(y, dy, h, (y.shape[0], 1), t)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def output_scale(self, h: float) -> Tensor:
        """The factor between the network's output and ``C``: ``out_scale * h**output_order``, ``[D]``."""
        return self.out_scale * (h ** self.output_order) if self.output_order else self.out_scale

    @torch.no_grad()
    def set_normalization(self, in_mean: Tensor, in_std: Tensor, out_scale: Tensor) -> None:
        """Set the buffers (``[feature_dim]``, ``[feature_dim]``, ``[D]``); ``fit`` calls this."""
        for name, v, n in (("in_mean", in_mean, self.feature_dim), ("in_std", in_std, self.feature_dim),
                           ("out_scale", out_scale, self.state_dim)):
            v = torch.as_tensor(v).reshape(-1)
            if v.numel() != n:
                raise ValueError(f"{name} needs {n} values, got {v.numel()}")
            if not bool(torch.isfinite(v).all()) or (name != "in_mean" and not bool((v > 0).all())):
                raise ValueError(f"{name} must be finite{'' if name == 'in_mean' else ' and positive'}")
            getattr(self, name).copy_(v)

    # ------------------------------------------------------------------ forward

    def train(self, mode: bool = True) -> Corrector:
        """As ``nn.Module.train``; switching to eval mode also makes every spectral cap exact
        (the power iteration used while training can lag by a few per cent)."""
        super().train(mode)
        if not mode:
            from ..nn import refresh_spectral_caps

            refresh_spectral_caps(self)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.out_scale.dtype

    def forward(self, t: Tensor | None, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """The correction for one step, of ``y``'s shape.

        Args:
            t: the step's start time, 0-d (a solve) or one per sample ``[B]`` (training); used
                by the time features only.
            y: states ``[*batch, *state_shape]`` (no batch dimensions allowed).
            dy: the classical increment ``Phi_h(y) - y``, same shape.
            h: the step (a Python float, > 0).
        """
        self._check_forward(h)
        shape = y.shape
        k = len(self.state_shape)
        if tuple(shape[len(shape) - k:]) != self.state_shape:
            raise ValueError(
                f"{type(self).__name__} expects states ending in shape {self.state_shape}, got {tuple(shape)}"
            )
        yb = y.reshape(-1, self.state_dim)
        if self.uses_time and t is not None and t.ndim and t.numel() != yb.shape[0]:
            t = t.reshape(-1).expand(yb.shape[0]) if t.numel() == 1 else t
        u = self.compute_features(yb, dy.reshape(-1, self.state_dim), h, t)
        v = self.network((u - self.in_mean) / self.in_std)
        return (v * self.output_scale(h)).reshape(shape)

    # ------------------------------------------------------------------ what it was trained for

    @property
    def trained_for(self) -> dict[str, Any]:
        """JSON-able record: class, method, order, step size, state shape, feature layout,
        dtype, and (after ``fit``) the data and training settings."""
        record = {
            "class": type(self).__name__,
            "method": self.method,
            "order": self.order,
            "step_size": self.step_size,
            "state_shape": list(self.state_shape),
            "features": list(self.features),
            "feature_layout": "flattened state (C order) per feature, concatenated in this order",
            "dtype": self._trained_dtype,
        }
        record.update(self.training_info)
        return record

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able): ``type(self)(**config)`` rebuilds the module."""
        return {
            "state_shape": list(self.state_shape),
            "method": self.method,
            "step_size": self.step_size,
            "dtype": _dtype_name(self.dtype),
            **self._hparams,
        }

    def _shape_problems(self, y0: Tensor) -> list[str]:
        """What about ``y0``'s shape this corrector cannot take (subclasses for fields override)."""
        k = len(self.state_shape)
        if y0.ndim < k or tuple(y0.shape[y0.ndim - k:]) != self.state_shape:
            return [f"state shape: y0 has shape {tuple(y0.shape)}, which does not end in the trained "
                    f"state shape {self.state_shape}"]
        return []

    def _trained_shape(self) -> str:
        """The trained shape, as the refusal message names it."""
        return f"state shape {self.state_shape}"

    def check_compatible(self, *, method: str, step_sizes: Any, y0: Tensor) -> None:
        """Refuse a solve this corrector was not trained for (``solve`` calls this once).

        Raises:
            ValueError: another method, step size or state shape — the message names each
                mismatch and what the corrector was trained for.
            TypeError: ``y0``'s dtype differs from the corrector's (with the fix).
        """
        problems = []
        if method != self.method:
            problems.append(f"method {method!r} (trained for {self.method!r})")
        steps = np.unique(np.abs(np.atleast_1d(np.asarray(step_sizes, dtype=np.float64))))
        off = steps[np.abs(steps - self.step_size) > _STEP_RTOL * self.step_size]
        if len(off):
            problems.append(
                f"step size {_fmt_steps(off)} (trained for step_size={self.step_size:g}; pass "
                f"step_size={self.step_size:g} and output times whose spacing is a whole multiple of it)"
            )
        problems += self._shape_problems(y0)
        if problems:
            raise ValueError(
                f"this {type(self).__name__} corrector does not fit the solve: " + "; ".join(problems)
                + f". It was trained for method={self.method!r}, step_size={self.step_size:g}, "
                f"{self._trained_shape()}; train another corrector for the new setting"
            )
        if y0.dtype != self.dtype:
            raise TypeError(
                f"y0 is {y0.dtype} but the {type(self).__name__} corrector is {self.dtype}; convert "
                f"one of them (corrector.to({y0.dtype}) or y0.to({self.dtype}))"
            )
        if y0.device != self.out_scale.device:
            raise ValueError(
                f"y0 is on {y0.device} but the corrector on {self.out_scale.device}; move it with "
                f"corrector.to(y0.device)"
            )

    # ------------------------------------------------------------------ save / load

    def checkpoint_dict(self) -> dict[str, Any]:
        """What :meth:`save` writes: plain types and tensors only (loads with ``weights_only=True``)."""

        return {
            "format": CHECKPOINT_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "class": type(self).__name__,
            "config": self.config(),
            "trained_dtype": self._trained_dtype,
            "training_info": json.loads(json.dumps(self.training_info)),
            "trained_for": json.loads(json.dumps(self.trained_for)),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
            "attsolver_version": __version__,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the corrector to ``path`` atomically (temporary file + rename), with a checksum
        of the whole payload verified on load; returns the path."""
        from .._io import save_checkpoint

        return save_checkpoint(path, self.checkpoint_dict())

    @classmethod
    def from_checkpoint_dict(cls, ckpt: dict[str, Any], *, source: str = "checkpoint") -> Corrector:
        """Rebuild a corrector from :meth:`checkpoint_dict` output (or a ``fit`` checkpoint)."""
        _check_format(ckpt, source)
        best = None
        info = None
        if ckpt["format"] == FIT_CHECKPOINT_FORMAT:
            best = ckpt.get("best_state_dict")
            info = ckpt.get("training_info")
            ckpt = ckpt.get("model")
            _check_format(ckpt, f"{source} (its 'model' entry)")
        missing = [k for k in ("class", "config", "state_dict") if k not in ckpt]
        if missing:
            raise ValueError(f"{source} lacks {missing}; it is damaged or was not written by Corrector.save")
        name = ckpt["class"]
        if name == cls.__name__:
            target = cls
        else:
            target = _CORRECTORS.get(name)
            if target is None or not issubclass(target, cls):
                raise ValueError(
                    f"{source} holds a {name} corrector, not a {cls.__name__}; load it with "
                    f"attsolver.correctors.load_corrector(path)"
                    + (f" or {name}.load(path)" if target is not None else "")
                )
        config = dict(ckpt["config"])
        try:
            model = target(**config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: cannot rebuild {name} from its config {config}: {e}") from None
        state = best if best is not None else ckpt["state_dict"]
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{source}: its weights do not fit a {name} built from its config: {e}") from None
        model._trained_dtype = str(ckpt.get("trained_dtype", config.get("dtype", "float32")))
        model.training_info = dict(info if info is not None else ckpt.get("training_info") or {})
        return model.eval()

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location: Any = "cpu") -> Corrector:
        """Read a corrector saved by :meth:`save` (or the best weights of a ``fit`` checkpoint).

        Called on a subclass (``NeurVec.load``) it refuses a checkpoint of another class; on
        ``Corrector`` it returns whatever registered class the file holds.  The module is
        returned in eval mode.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a corrector checkpoint, corrupted or truncated, a newer schema
                version, or another corrector class — the message says which.
        """
        ckpt = read_checkpoint(path, map_location=map_location)
        return cls.from_checkpoint_dict(ckpt, source=str(path))


def read_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with every failure turned into a clear error,
    and the payload's checksum verified (a damaged file is an
    :class:`~attsolver.IntegrityError`, never other weights)."""
    from .._io import load_checkpoint

    return load_checkpoint(path, what="checkpoint", map_location=map_location, check=_check_format)


def _check_format(ckpt: Any, source: str) -> None:
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (CHECKPOINT_FORMAT, FIT_CHECKPOINT_FORMAT):
        raise ValueError(
            f"{source} is not an attsolver corrector checkpoint (no format "
            f"{CHECKPOINT_FORMAT!r} / {FIT_CHECKPOINT_FORMAT!r}); write one with corrector.save(path) "
            "or attsolver.fit(..., checkpoint=path)"
        )
    version = ckpt.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{source} has an invalid schema_version {version!r}; the file is damaged")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{source} was written by a newer attsolver (checkpoint schema version {version}; this "
            f"version reads up to {SCHEMA_VERSION}); upgrade attsolver to load it"
        )


def load_corrector(path: str | os.PathLike, *, map_location: Any = "cpu") -> Corrector:
    """Load any registered corrector (NeurVec, Hypersolver, AttSolver, ...) from ``path``."""
    return Corrector.load(path, map_location=map_location)


def mlp(sizes: list[int], activation: str, *, dtype: torch.dtype, zero_last: bool = True,
        last_activation: bool = False) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``sizes``; the last layer zero-initialised."""
    from ..nn import make_activation

    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=dtype))
        if i < len(sizes) - 2 or last_activation:
            layers.append(make_activation(activation, dtype=dtype))
    if zero_last:
        last = [m for m in layers if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(*layers)


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
