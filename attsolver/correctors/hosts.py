"""The corrector classes of the lattice and grid layouts.

:class:`LocalCorrector` and :class:`ConvCorrector` are :class:`~attsolver.correctors.Corrector`
with a :class:`~attsolver.correctors.layouts.LatticeLayout` or
:class:`~attsolver.correctors.layouts.GridLayout` built from their constructor's arguments: the
base classes of today's local and convolutional correctors, the hosts of any head on those
layouts (``create("hypersolver-conv")``), and the classes ``isinstance`` checks and user
subclasses name.  They add no evaluation of their own: the layout, the head and the evaluators
do the work; here are the layout's attributes under their usual names.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Corrector, head_features, layout_attribute, register_corrector
from .heads import Head, as_head
from .layouts import GridLayout, LatticeLayout, PeriodicConv1d, PeriodicConv2d

__all__ = ["LocalCorrector", "ConvCorrector"]


class LocalCorrector(Corrector):
    """A corrector on a lattice: one network shared by every site (see
    :class:`~attsolver.correctors.layouts.LatticeLayout`).

    Args:
        state_shape: shape of one state; its axis ``lattice_axis`` is the lattice.
        method, step_size: the classical step it corrects.
        features: step features (default: the head's); each state feature gives ``C`` input
            channels, ``h`` one.
        periodic: ``True`` for a ring, ``False`` for a chain with fixed ends.  No default.
        lattice_axis, blocks, window: the lattice (see the layout).
        allow_other_size: let ``solve`` use the model on a lattice of another length (a usage
            flag, not saved: a loaded model refuses other lengths until it is set again).
        mixed_precision: accept states of another floating dtype, computing the correction in
            the model's dtype (a usage flag, not saved).
        dtype: parameter dtype.
        hparams: a subclass's own constructor arguments (without them the head's config is saved).
        head: the network (a :class:`~attsolver.correctors.heads.Head` or its config); without
            one a subclass defines :meth:`network` (the reference form is then used throughout).

    Attributes:
        sites: ``n``, the number of sites of the training lattice.
        state_channels: ``C``, channels per site of one state feature.
        in_channels: input channels (``C`` per state feature, 1 for ``h``).
    """

    layout_type = LatticeLayout

    def __init__(self, state_shape: Any, *, method: str, step_size: float, features: Any = None, periodic: bool,
                 lattice_axis: int = -1, blocks: int = 1, window: int = 5, allow_other_size: bool = False,
                 mixed_precision: bool = False, dtype: Any = torch.float32, hparams: dict[str, Any] | None = None,
                 head: Head | dict[str, Any] | None = None):
        head = as_head(head)
        lattice = LatticeLayout(state_shape, head_features(features, head), periodic=periodic,
                                lattice_axis=lattice_axis, blocks=blocks, window=window,
                                allow_other_size=allow_other_size, mixed_precision=mixed_precision)
        super().__init__(method=method, step_size=step_size, dtype=dtype, hparams=hparams, head=head, layout=lattice)

    def _layout_config(self) -> dict[str, Any]:
        return self.layout.saved()

    def _parts_config(self) -> dict[str, Any]:
        return {"head": self.head_spec.config()}

    sites = layout_attribute("sites", "``n``, the number of sites of the training lattice.")
    state_channels = layout_attribute("state_channels", "``C``, channels per site of one state feature.")
    in_channels = layout_attribute("in_channels", "Input channels (``C`` per state feature, 1 for ``h``).")
    site_features = layout_attribute("site_features", "Inputs of the per-site network: ``in_channels * window``.")
    periodic = layout_attribute("periodic", "A ring (``True``) or a chain with fixed ends.")
    lattice_axis = layout_attribute("lattice_axis", "The state axis of the sites (non-negative).")
    blocks = layout_attribute("blocks", "Channels stacked along the lattice axis.")
    window = layout_attribute("window", "Sites the network sees at each site.")
    allow_other_size = layout_attribute("allow_other_size", "Usage flag: run on another lattice length.",
                                         settable=True)
    mixed_precision = layout_attribute("mixed_precision", "Usage flag: accept states of another floating dtype.",
                                        settable=True)

    def _forward(self, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """The reference (GEMM) form, with autograd, whatever the fast forms could do."""
        return self.layout.forward(self, None, y, dy, h)

    def fusable(self) -> bool:
        """Whether the elementwise form can evaluate this model (under ``torch.compile``
        ``forward`` then uses it)."""
        return self._fast is not None and self._fast.parts.fusable(self)

    def foldable(self) -> bool:
        """Whether the folded form can evaluate this model (the eager path without autograd uses it then)."""
        return self._fast is not None and self._fast.parts.foldable(self)

    def pointwise_forward(self, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """``forward``'s correction as elementwise arithmetic on the lattice (the form used under
        ``torch.compile``; see :mod:`attsolver.correctors.evaluators`)."""
        if self._fast is None:
            raise NotImplementedError(f"{type(self).__name__} has no elementwise form: its network is not a "
                                      "head's that the fast forms know")
        return self._fast.elementwise(self, y, dy, h)


class ConvCorrector(Corrector):
    """A corrector of periodic 1-D fields ``[..., nx]`` or 2-D fields ``[..., n, n]`` (see
    :class:`~attsolver.correctors.layouts.GridLayout`).

    ``fit`` passes per-grid-point statistics, which :meth:`set_normalization` pools over the
    grid into one mean and standard deviation per channel and one output scale.

    Args:
        state_shape: ``(nx,)`` (or ``nx``), or ``(n, n)`` in 2-D: the grid trained on.
        method, step_size: the classical step it corrects.
        features: step features (default: the head's), each one input channel.
        domain_length: period of the domain; with ``nx`` it fixes the grid spacing
            ``dx = domain_length / nx`` that the learned stencils belong to.
        allow_other_grid: let ``solve`` use the model on fields of another length (a usage flag,
            not saved: a loaded model refuses other grids until it is set again).
        kernel_size: odd stencil of the network's convolutions.
        dtype: parameter dtype.
        hparams: a subclass's own constructor arguments (without them the kernel size and the
            head's config are saved).
        head: the network, or none (a subclass defines :meth:`network`).

    Attributes:
        grid_spacing: ``dx`` it was built (trained) for.
        allow_other_grid: see above.
    """

    layout_type = GridLayout

    def __init__(self, state_shape: Any, *, method: str, step_size: float, features: Any = None,
                 domain_length: float = 1.0, allow_other_grid: bool = False, kernel_size: int = 5,
                 dtype: Any = torch.float32, hparams: dict[str, Any] | None = None,
                 head: Head | dict[str, Any] | None = None):
        head = as_head(head)
        grid = GridLayout(state_shape, head_features(features, head), domain_length=domain_length,
                          allow_other_grid=allow_other_grid, kernel_size=kernel_size, who=type(self).__name__)
        super().__init__(method=method, step_size=step_size, dtype=dtype, hparams=hparams, head=head, layout=grid)

    def _layout_config(self) -> dict[str, Any]:
        return {"domain_length": self.layout.domain_length}

    def _parts_config(self) -> dict[str, Any]:
        return {"kernel_size": self.layout.kernel_size, "head": self.head_spec.config()}

    nx = layout_attribute("nx", "Grid points of the training grid.")
    grid_spacing = layout_attribute("grid_spacing", "``dx = domain_length / nx`` of the training grid.")
    domain_length = layout_attribute("domain_length", "Period of the domain.")
    spatial_dims = layout_attribute("spatial_dims", "1 or 2.")
    conv = layout_attribute("conv", "The periodic convolution class of this dimension.")
    in_channels = layout_attribute("in_channels", "One input channel per feature.")
    allow_other_grid = layout_attribute("allow_other_grid", "Usage flag: run on fields of another length.",
                                         settable=True)

    @property
    def receptive_field(self) -> int:
        """Grid points that influence one output value (odd)."""
        convs = [m for m in self.modules() if isinstance(m, (PeriodicConv1d, PeriodicConv2d))]
        return 1 + sum(2 * m.wrap for m in convs)

    def channels(self, y: Tensor, dy: Tensor, h: float) -> Tensor:
        """Raw (not normalised) input channels ``[B, C_in, X]`` from fields ``[B, X]`` (2-D:
        ``[B, C_in, Y, X]`` from ``[B, Y, X]``)."""
        return self.layout.channels(y, dy, h, type(self).__name__)


register_corrector(LocalCorrector, listed=False)
register_corrector(ConvCorrector, listed=False)
