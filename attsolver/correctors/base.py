"""The :class:`Corrector` module: a layout times a head, and what every corrector shares.

A corrector ``C`` is added to each classical step inside :func:`attsolver.solve`::

    y_{n+1} = y*_{n+1} + C(t_n, y_n, dy_n, h),    y*_{n+1} = Phi_h(y_n),  dy_n = y*_{n+1} - y_n

It is composed of

* a *layout* (:mod:`.layouts`: dense, lattice, periodic grid): how a state becomes the
  network's inputs, the normalisation statistics, what the corrector was trained for and which
  states it can take;
* a *head* (:mod:`.heads`: NeurVec, Hypersolver, AttSolver): the network and its h-scaling,
  its modules installed on this module (their state-dict names are the head's: ``net.0.weight``);
* the fast evaluation forms (:mod:`.evaluators`) that exist for its exact (layout, head) pair.

This class holds what they share: the record of what it was trained for (method, step size,
the layout's shape, dtype) and :meth:`Corrector.check_compatible`, which ``solve`` calls once
per solve; the normalisation buffers and the one :meth:`Corrector.set_normalization` that
``fit`` calls; the batched ``forward``; atomic :meth:`Corrector.save` and
:meth:`Corrector.load` (``weights_only=True``; a JSON-able config plus a state dict); and the
registry of corrector classes that a checkpoint names.  Every corrector starts as an exact
zero correction (the head's last map is zero-initialised), so ``solve`` reproduces the
classical solution bit for bit.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._io import load_checkpoint, save_checkpoint
from .._validate import is_real
from .._version import __version__
from ..integrate.error_bounds import ErrorBounds
from ..integrate.guard import TrainingDomain
from ..nn import refresh_spectral_caps
from ..steppers import get_method, list_methods
from .evaluators import fast_forms
from .heads import Head, as_head
from .layouts import FEATURES, TIME_FEATURES, DenseLayout, Layout, get_layout

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

# relative tolerance on the step size: solve() splits intervals into equal steps, which
# differ from the nominal step by rounding only
_STEP_RTOL = 1e-9

_CORRECTORS: dict[str, type[Corrector]] = {}
_UNLISTED: set[str] = set()


def register_corrector(cls: type[Corrector], *, listed: bool = True) -> type[Corrector]:
    """Class decorator: make ``cls`` loadable by name from checkpoints (``load_corrector``).

    ``listed=False``: loadable, but not among :func:`list_correctors` (the classes that host a
    layout for any head, whose constructors need a head or a subclass)."""
    name = cls.__name__
    if name in _CORRECTORS and _CORRECTORS[name] is not cls:
        raise ValueError(f"a corrector class named {name!r} is already registered")
    _CORRECTORS[name] = cls
    if not listed:
        _UNLISTED.add(name)
    return cls


def list_correctors() -> list[str]:
    """Names of the registered corrector classes (each a constructor ``cls(state_shape, *, method,
    step_size, ...)``); :func:`attsolver.correctors.names` lists what ``create`` builds."""
    return sorted(n for n in _CORRECTORS if n not in _UNLISTED)


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


def _fmt_steps(steps: np.ndarray) -> str:
    distinct = sorted({f"{s:.6g}" for s in steps}, key=float)  # steps equal up to rounding print once
    shown = ", ".join(distinct[:5])
    return shown + (f", ... ({len(distinct)} distinct)" if len(distinct) > 5 else "")


def layout_attribute(name: str, doc: str, *, settable: bool = False) -> property:
    """The layout's attribute ``name`` under the same name on the corrector (a usage flag: settable)."""
    def get(self):
        return getattr(self.layout, name)

    def set_(self, value):
        setattr(self.layout, name, bool(value))

    return property(get, set_ if settable else None, doc=doc)


def head_features(features: Any, head: Head | None) -> tuple[str, ...]:
    """The features a corrector reads: its head's (``features``, if given, must agree)."""
    if head is None:
        return tuple(features) if features is not None else ("y",)
    if features is not None and tuple(features) != tuple(head.features):
        raise ValueError(f"features {tuple(features)!r} differ from the ones the {head.name} head reads, "
                         f"{tuple(head.features)!r}")
    return tuple(head.features)


class Corrector(nn.Module):
    """A learned correction applied by :func:`attsolver.solve`: a layout times a head.

    Args:
        state_shape: shape of one state without batch dimensions (an int ``d`` for ``(d,)``);
            with the features it makes the dense layout unless ``layout`` is given.
        method: the fixed-step method it corrects (a name from ``list_methods(kind="fixed")``).
        step_size: the step ``h > 0`` it corrects.
        features: which step features the network sees (default: the head's; see :data:`FEATURES`).
        dtype: dtype of parameters and buffers.
        hparams: the constructor arguments beyond the above (JSON-able); with them they form
            :meth:`config`, from which :meth:`load` rebuilds the module.  Default: the layout's
            and the head's configs.
        head: the network (a :class:`~attsolver.correctors.heads.Head` or its config); without
            one a subclass defines :meth:`network`.
        layout: a :class:`~attsolver.correctors.layouts.Layout` (or its config) instead of the
            dense layout of ``state_shape``.

    Attributes:
        layout, head_spec: the parts.
        output_order: ``C`` is multiplied by ``h ** output_order`` (0: no h-scaling;
            Hypersolver: ``p + 1``).
        training_info: a JSON-able dict that :func:`attsolver.fit` fills (data, settings,
            best validation loss); part of :attr:`trained_for` and saved with the model.
    """

    #: the layout a class builds from its constructor's arguments (``for_system`` reads it)
    layout_type: type[Layout] = DenseLayout
    #: ``C`` is multiplied by ``h ** output_order`` (a head sets it; a subclass without one may)
    output_order: int = 0

    def __init__(self, state_shape: Any = None, *, method: str, step_size: float, features: Any = None,
                 dtype: Any = torch.float32, hparams: dict[str, Any] | None = None,
                 head: Head | dict[str, Any] | None = None, layout: Layout | dict[str, Any] | None = None):
        super().__init__()
        spec = get_method(method)
        if spec.kind != "fixed":
            raise ValueError(
                f"a corrector corrects a fixed-step method, not the {spec.kind} {method!r}; "
                f"choose one of: {', '.join(list_methods(kind='fixed'))}"
            )
        if not is_real(step_size) or not math.isfinite(step_size) or step_size <= 0:
            raise ValueError(f"step_size must be a positive finite number, got {step_size!r}")
        head = as_head(head)
        if layout is None:
            layout = DenseLayout(state_shape, head_features(features, head))
        elif isinstance(layout, dict):
            kw = dict(layout)
            layout = get_layout(kw.pop("name"))(state_shape, head_features(features, head), **kw)
        self.layout = layout
        self.head_spec = head
        self.method = spec.name
        self.order = int(spec.order)
        self.step_size = float(step_size)
        dtype = _as_dtype(dtype)
        self._trained_dtype = _dtype_name(dtype)
        self._hparams = dict(hparams or {})
        # a composition without hparams of its own is saved as its parts' configs
        self._parts_in_config = hparams is None and head is not None
        self.training_info: dict[str, Any] = {}
        #: what it saw in training (``fit`` records it; ``solve(..., guard=...)`` scores against it)
        self.domain: TrainingDomain | None = None
        #: split-conformal error bounds (``attsolver.calibrate`` sets them; ``solve(...,
        #: return_error_bounds=True)`` returns them)
        self.error_bounds: ErrorBounds | None = None
        json.dumps(self._hparams)  # a subclass bug if not JSON-able
        layout.install(self, dtype)
        if head is not None:
            self.output_order = head.output_order(self.order)
            head.build(self, layout, dtype)
        # the fast forms evaluate the head's network: not for a class with a network of its own
        self._fast = fast_forms(layout, head) if type(self).network is Corrector.network else None

    def _layout_config(self) -> dict[str, Any]:
        """The layout's constructor arguments that this class takes (and always records)."""
        return {}

    def _parts_config(self) -> dict[str, Any]:
        """The layout's (other than dense) and the head's configs, for a composition."""
        config = {} if type(self.layout) is DenseLayout else {"layout": self.layout.config()}
        return {**config, "head": self.head_spec.config()}

    @classmethod
    def for_system(cls, system: Any, **kwargs: Any) -> Corrector:
        """Build for ``system``: the state shape (and a lattice's or grid's geometry) come from it;
        ``kwargs`` go to the constructor."""
        state_shape, kw = cls.layout_type.from_system(system, kwargs, cls.__name__)
        return cls(state_shape, **kw)

    # ------------------------------------------------------------------ the layout's description

    state_shape = layout_attribute("state_shape", "Shape of one state, without batch dimensions.")
    state_dim = layout_attribute("state_dim", "``D``, the number of components of one state.")
    features = layout_attribute("features", "The step features the network sees.")
    feature_dim = layout_attribute("feature_dim", "Length of the per-component feature vector: ``D`` per state "
                                   "feature, 1 for ``h`` and each time feature.")
    uses_time = layout_attribute("uses_time", "Whether a time feature (``t``, ``cos:<w>``, ``sin:<w>``) is among "
                                 "the features.")

    def feature_slices(self) -> dict[str, slice]:
        """Where each feature lies in the per-component feature vector."""
        return self.layout.feature_slices()

    def compute_features(self, y: Tensor, dy: Tensor, h: float, t: Tensor | None = None) -> Tensor:
        """Raw (not normalised) per-component features ``[B, feature_dim]`` from flat ``y``,
        ``dy`` ``[B, D]`` (``t``: the step's time, 0-d or one per sample, for the time features);
        ``fit`` computes its statistics on them."""
        return self.layout.compute_features(y, dy, h, t, type(self).__name__)

    # ------------------------------------------------------------------ network and scales

    def network(self, u: Tensor) -> Tensor:
        """Normalised features -> normalised correction (the head's network)."""
        if self.head_spec is None:
            raise NotImplementedError(f"{type(self).__name__} has no head: give one, or define network")
        return self.head_spec.network(self, u)

    def channel_scale(self, h: float) -> Tensor:
        """The buffer-shaped factor between the network's output and ``C``:
        ``out_scale * h**output_order``."""
        return self.out_scale * (h ** self.output_order) if self.output_order else self.out_scale

    def output_scale(self, h: float) -> Tensor:
        """The factor between the network's output and ``C`` per state component, ``[D]``
        (``fit`` normalises its losses with it)."""
        return self.layout.spread_scale(self, self.channel_scale(h))

    @torch.no_grad()
    def set_normalization(self, in_mean: Tensor, in_std: Tensor, out_scale: Tensor) -> None:
        """Set the normalisation buffers; ``fit`` calls this.

        Accepts the buffers' own sizes or, as ``fit`` passes them, per-component statistics
        (``[feature_dim]``, ``[feature_dim]``, ``[D]``), which a lattice or grid layout pools
        exactly into its per-channel buffers."""
        stats = [torch.as_tensor(v, dtype=torch.float64).reshape(-1).cpu() for v in (in_mean, in_std, out_scale)]
        stats = self.layout.pool(self, stats)
        for name, v in zip(("in_mean", "in_std", "out_scale"), stats):
            buffer = getattr(self, name)
            if v.numel() != buffer.numel():
                raise ValueError(self.layout.count_error(name, buffer.numel(), v.numel()))
            if not bool(torch.isfinite(v).all()) or (name != "in_mean" and not bool((v > 0).all())):
                raise ValueError(f"{name} must be finite{'' if name == 'in_mean' else ' and positive'}")
            buffer.copy_(v.to(self.dtype))

    # ------------------------------------------------------------------ forward

    def train(self, mode: bool = True) -> Corrector:
        """As ``nn.Module.train``; switching to eval mode also makes every spectral cap exact
        (the power iteration used while training can lag by a few per cent)."""
        super().train(mode)
        if not mode:
            refresh_spectral_caps(self)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.out_scale.dtype

    def _check_forward(self, h: float) -> None:
        """Every corrector is trained for forward steps; a backward solve is refused, not guessed."""
        if h <= 0:
            raise ValueError(
                f"{type(self).__name__} was trained for forward steps (h = {self.step_size:g} > 0); "
                f"this solve steps backward (h = {h:g}, t decreasing), which it was not trained for"
            )

    def forward(self, t: Tensor | None, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """The correction for one step, of ``y``'s shape.

        Args:
            t: the step's start time, 0-d (a solve) or one per sample ``[B]`` (training); used
                by the time features only.
            y: states ``[*batch, *state_shape]`` (a lattice or grid layout also takes another
                length along its lattice or grid).
            dy: the classical increment ``Phi_h(y) - y``, same shape.
            h: the step (a Python float, > 0).
        """
        self._check_forward(h)
        fast = self._fast
        if fast is not None:
            form = fast.choose(self, y, dy)
            if form is not None:
                return form(self, y, dy, h)
        return self.layout.forward(self, t, y, dy, h)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_folded", None)  # the fast forms' cache (of weak references, which do not pickle)
        return state

    # ------------------------------------------------------------------ what it was trained for

    @property
    def trained_for(self) -> dict[str, Any]:
        """JSON-able record: class, method, order, step size, state shape, feature layout,
        dtype, (after ``fit``) the data and training settings, and the layout's geometry."""
        record = {
            "class": type(self).__name__,
            "method": self.method,
            "order": self.order,
            "step_size": self.step_size,
            "state_shape": list(self.state_shape),
            "features": list(self.features),
            "feature_layout": self.layout.feature_layout,
            "dtype": self._trained_dtype,
        }
        record.update(self.training_info)
        record.update(self.layout.record())
        return record

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able): ``type(self)(**config)`` rebuilds the module."""
        return {
            "state_shape": list(self.state_shape),
            "method": self.method,
            "step_size": self.step_size,
            "dtype": _dtype_name(self.dtype),
            **self._layout_config(),
            **self._hparams,
            **(self._parts_config() if self._parts_in_config else {}),
        }

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
        problems += self.layout.shape_problems(y0)
        if problems:
            raise ValueError(
                f"this {type(self).__name__} corrector does not fit the solve: " + "; ".join(problems)
                + f". It was trained for method={self.method!r}, step_size={self.step_size:g}, "
                f"{self.layout.trained_shape()}; train another corrector for the new setting"
            )
        y0 = self.layout.checked_state(y0, self.dtype)
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
        if self._parts_in_config:
            self.head_spec.check_rebuildable()
        # the training domain only when recorded: a file without one reads as before
        domain = {} if self.domain is None else {"domain": self.domain.to_dict()}
        if self.error_bounds is not None:
            domain["error_bounds"] = self.error_bounds.to_dict()
        return {
            **domain,
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
        target = _target_class(cls, name, source)
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
        if ckpt.get("domain") is not None:
            model.domain = TrainingDomain.from_dict(ckpt["domain"])
        if ckpt.get("error_bounds") is not None:
            model.error_bounds = ErrorBounds.from_dict(ckpt["error_bounds"])
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


def _target_class(cls: type[Corrector], name: str, source: str) -> type[Corrector]:
    """The class a checkpoint names, if ``cls`` may load it."""
    if name == cls.__name__:
        return cls
    target = _CORRECTORS.get(name)
    if target is None or not issubclass(target, cls):
        raise ValueError(
            f"{source} holds a {name} corrector, not a {cls.__name__}; load it with "
            f"attsolver.correctors.load_corrector(path)"
            + (f" or {name}.load(path)" if target is not None else "")
        )
    return target


def read_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with every failure turned into a clear error,
    and the payload's checksum verified (a damaged file is an
    :class:`~attsolver.IntegrityError`, never other weights)."""
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


register_corrector(Corrector, listed=False)
