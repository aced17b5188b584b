"""Today's corrector classes: constructors that compose a layout with a head.

Each class is one (layout, head) pair with the constructor, defaults and config it has always
had, so that code, command lines and checkpoints that name it keep working (a checkpoint
records the class and its config; the parameter names are the head's).  Nothing here
evaluates anything: see :mod:`.layouts`, :mod:`.heads` and :mod:`.evaluators`.

=================  ================  =====================
head               dense layout      lattice / grid layout
=================  ================  =====================
NeurVec            NeurVec           LocalNeurVec / NeurVecConv
Hypersolver        Hypersolver       LocalHypersolver / (``create("hypersolver-conv")``)
AttSolver          AttSolver         LocalAttSolver / AttSolverConv
=================  ================  =====================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .base import Corrector, register_corrector
from .heads import AttSolverHead, HypersolverHead, NeurVecHead
from .hosts import ConvCorrector, LocalCorrector

__all__ = ["NeurVec", "Hypersolver", "AttSolver", "LocalNeurVec", "LocalHypersolver", "LocalAttSolver",
           "NeurVecConv", "AttSolverConv"]


@register_corrector
class NeurVec(Corrector):
    """``C = s ⊙ N(norm(y_n))`` with ``N`` one wide hidden layer ``D -> width -> D``, no h-scaling.

    As in NeurVec's reference code the default activation is the learnable rational
    activation (seven shared scalars, :class:`attsolver.nn.Rational`); ``s`` is the
    per-component output scale (``out_scale``) that ``fit`` sets from the training residuals.
    One model corrects one (method, step size).

    Parameters: ``D*width + width + width*D + D`` (+7 for the rational activation).

    Args:
        state_shape: shape of one state (``D = prod(state_shape)``).
        method, step_size: the classical step it corrects.
        width: hidden units (NeurVec: 1024).
        activation: ``"rational"`` (default) or ``"tanh"``, ``"gelu"``, ...
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, width: int = 1024,
                 activation: str = "rational", dtype: Any = torch.float32):
        head = NeurVecHead(width=width, activation=activation)
        super().__init__(state_shape, method=method, step_size=step_size, dtype=dtype, hparams=head.hparams(),
                         head=head)


@register_corrector
class Hypersolver(Corrector):
    """``C = h^{p+1} s ⊙ g(norm([y_n, Phi_n, h]))`` with ``Phi_n = dy_n / h`` and ``p`` the
    method's order (from the method registry).

    ``g`` approximates the leading local-error coefficient, so the corrected step keeps the
    ``h^{p+1}`` scaling of the local error; ``s`` (``out_scale``) is set by ``fit`` from the
    residuals divided by ``h^{p+1}``.  ``g`` is an MLP ``2D+1 -> hidden... -> D``.

    Args:
        state_shape: shape of one state (``D = prod(state_shape)``).
        method, step_size: the classical step it corrects.
        hidden: hidden layer widths of ``g`` (default two of 64).
        activation: hidden activation (default ``"tanh"``).
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, hidden: Sequence[int] = (64, 64),
                 activation: str = "tanh", dtype: Any = torch.float32):
        head = HypersolverHead(hidden=hidden, activation=activation)
        super().__init__(state_shape, method=method, step_size=step_size, dtype=dtype, hparams=head.hparams(),
                         head=head)


@register_corrector
class AttSolver(Corrector):
    """``C = s ⊙ (W_o m + b_o)``, ``m = combine(z, a)``, ``z = body(u)``, ``a = gate(src)``.

    * ``u``: normalised step features (default ``y_n`` and the classical increment ``dy_n = hΦ``);
    * ``body``: MLP ``F -> width (-> width ...)`` with an activation after every layer; with
      the default ``tanh`` the body features are bounded, ``z in (-1, 1)^width``;
    * ``gate``: an attention module from :mod:`attsolver.nn` (default ``"se"``, reduction 4)
      giving ``a in (0, 1)^width``, its linear maps' spectral norms capped at
      ``lipschitz_cap`` (default 1, so the SE gate is 1/4-Lipschitz); its input ``src`` is
      the body output (``attention_input="body"``), all features (``"features"``) or one
      feature (``"y"``, ``"dy"``, ...);
    * ``combine``: ``"add"`` (default) ``m = z + a`` or ``"mul"`` (AttNS-m) ``m = z ⊙ a``;
      ``attention="none"`` gives ``m = z`` (the ablation without a gate);
    * ``W_o, b_o``: zero-initialised head; ``s`` the output scale set by ``fit``.

    With a tanh body, ``|C_i| <= s_i (2 ||W_o[i]||_1 + |b_o,i|)`` for every input: the
    correction is bounded, so a state far outside the training data cannot make it explode.

    **Residual body with a shared gate** (``residual=True``; the default, and the only form,
    for a stateful gate such as ``"dia"``): the body's ``depth`` layers become residual
    layers and *one* gate is shared by all of them, as one DIA unit is shared by the blocks
    of a ResNet stage::

        r_l = act(L_l(x_{l-1}))  (x_{-1} = u),   (a_l, s_l) = gate(src_l, s_{l-1}),  s_{-1} = 0
        x_0 = combine(r_0, a_0),   x_l = x_{l-1} + combine(r_l, a_l),   C = s ⊙ (W_o x_{depth-1} + b_o)

    ``src_l`` is ``r_l`` (``attention_input="body"``) or the chosen features.  A stateful
    gate's state is carried from layer to layer *within one call* and starts at zero at
    every call, so no state crosses solver steps and one-step training applies unchanged.
    A stateless gate (``"se"``) used this way is the layer-shared ``shared_se`` of the
    vision models.  The parameter count is that of the plain form (the same layers, one
    gate), whatever the depth; the bound becomes ``s_i (2 depth ||W_o[i]||_1 + |b_o,i|)``.

    Args:
        state_shape: shape of one state (``D = prod(state_shape)``).
        method, step_size: the classical step it corrects.
        features: step features the body sees (from ``"y", "dy", "phi", "h"``).
        width: body width ``W`` (= gate channels).
        depth: number of body layers (>= 1).
        activation: body activation (default ``"tanh"``).
        attention: a gate name from ``attsolver.nn.list_attention()`` or ``"none"``.
        attention_input: ``"body"``, ``"features"``, or one name in ``features``.
        combine: a name in :data:`COMBINES`.
        lipschitz_cap: spectral-norm cap of the gate's linear maps, or ``None``.
        reduction: SE bottleneck ratio.
        attention_kwargs: further keyword arguments for the gate (JSON-able).
        residual: residual body with the gate shared by every layer (above); ``None``
            (default): ``True`` for a stateful gate, else ``False`` (the plain form).
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float,
                 features: Sequence[str] = ("y", "dy"), width: int = 128, depth: int = 2,
                 activation: str = "tanh", attention: str = "se", attention_input: str = "body",
                 combine: str = "add", lipschitz_cap: float | None = 1.0, reduction: int = 4,
                 attention_kwargs: dict[str, Any] | None = None, residual: bool | None = None,
                 dtype: Any = torch.float32):
        head = AttSolverHead(features=features, width=width, depth=depth, activation=activation,
                             attention=attention, attention_input=attention_input, combine=combine,
                             lipschitz_cap=lipschitz_cap, reduction=reduction, attention_kwargs=attention_kwargs,
                             residual=residual)
        super().__init__(state_shape, method=method, step_size=step_size, dtype=dtype, hparams=head.hparams(),
                         head=head)


@register_corrector
class LocalNeurVec(LocalCorrector):
    """NeurVec, local: ``C_i = s ⊙ N(y_{i-r..i+r})`` at every site ``i``, one hidden layer
    ``C*window -> width -> C`` shared by all sites, no h-scaling.

    Parameters: ``C window width + width + width C + C`` (+7 for the rational activation),
    whatever the number of sites.  The defaults (window 5, width 8; one hidden layer for each
    family) keep the per-site work near that of a few evaluations of a stencil right-hand
    side: the measured costs are in benchmarks/results/speed_correctors.md.

    Args:
        state_shape, method, step_size: as every corrector.
        periodic, lattice_axis, blocks, window, allow_other_size, mixed_precision: see
            :class:`LocalCorrector`.
        width: hidden units.
        activation: default ``"rational"`` (NeurVec's learnable rational activation).
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, periodic: bool, lattice_axis: int = -1,
                 blocks: int = 1, window: int = 5, width: int = 8, activation: str = "rational",
                 allow_other_size: bool = False, mixed_precision: bool = False, dtype: Any = torch.float32):
        head = NeurVecHead(width=width, activation=activation)
        super().__init__(state_shape, method=method, step_size=step_size, periodic=periodic,
                         lattice_axis=lattice_axis, blocks=blocks, window=window, allow_other_size=allow_other_size,
                         mixed_precision=mixed_precision, dtype=dtype, hparams=head.hparams(), head=head)


@register_corrector
class LocalHypersolver(LocalCorrector):
    """Hypersolver, local: ``C_i = h^{p+1} s ⊙ g([y, Phi, h] on sites i-r..i+r)``, ``g`` an MLP
    ``(2C+1) window -> hidden... -> C`` shared by all sites.

    Args:
        state_shape, method, step_size: as every corrector.
        periodic, lattice_axis, blocks, window, allow_other_size, mixed_precision: see
            :class:`LocalCorrector`.
        hidden: hidden layer widths of ``g``.
        activation: hidden activation (default ``"tanh"``, as the dense Hypersolver).
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, periodic: bool, lattice_axis: int = -1,
                 blocks: int = 1, window: int = 5, hidden: Sequence[int] = (8,), activation: str = "tanh",
                 allow_other_size: bool = False, mixed_precision: bool = False, dtype: Any = torch.float32):
        head = HypersolverHead(hidden=hidden, activation=activation)
        super().__init__(state_shape, method=method, step_size=step_size, periodic=periodic,
                         lattice_axis=lattice_axis, blocks=blocks, window=window, allow_other_size=allow_other_size,
                         mixed_precision=mixed_precision, dtype=dtype, hparams=head.hparams(), head=head)


@register_corrector
class LocalAttSolver(LocalCorrector):
    """AttSolver, local: the dense AttSolver's network (body, bounded gate, combine,
    zero-initialised head) applied at every site to the window of ``[y, dy]`` there; the
    gate acts per site (``a_i in (0, 1)^width`` from the site's body features).

    Parameters: body ``F width + width (+ (depth-1)(width^2 + width))`` with
    ``F = len(features) C window``, the gate's, and the head ``width C + C`` — none depends on
    the number of sites.

    Args:
        state_shape, method, step_size: as every corrector.
        periodic, lattice_axis, blocks, window, allow_other_size, mixed_precision: see
            :class:`LocalCorrector`.
        features, width, depth, activation, attention, attention_input, combine: as
            :class:`~attsolver.correctors.AttSolver` (``attention_input`` is ``"body"`` or ``"features"``).
        lipschitz_cap, reduction, attention_kwargs, residual: as :class:`~attsolver.correctors.AttSolver`.
        dtype: parameter dtype.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, periodic: bool, lattice_axis: int = -1,
                 blocks: int = 1, window: int = 5, features: Sequence[str] = ("y", "dy"),
                 width: int = 8, depth: int = 1, activation: str = "tanh", attention: str = "se",
                 attention_input: str = "body", combine: str = "add", lipschitz_cap: float | None = 1.0,
                 reduction: int = 4, attention_kwargs: dict[str, Any] | None = None, residual: bool | None = None,
                 allow_other_size: bool = False, mixed_precision: bool = False, dtype: Any = torch.float32):
        head = AttSolverHead(features=features, width=width, depth=depth, activation=activation,
                             attention=attention, attention_input=attention_input, combine=combine,
                             lipschitz_cap=lipschitz_cap, reduction=reduction, attention_kwargs=attention_kwargs,
                             residual=residual)
        super().__init__(state_shape, method=method, step_size=step_size, periodic=periodic,
                         lattice_axis=lattice_axis, blocks=blocks, window=window, allow_other_size=allow_other_size,
                         mixed_precision=mixed_precision, dtype=dtype, hparams=head.hparams(), head=head)


@register_corrector
class NeurVecConv(ConvCorrector):
    """NeurVec with a periodic convolutional body: ``C = sigma * K2 * rho(K1 * norm(u_n))``.

    The field analogue of NeurVec's one wide hidden layer: a convolution ``1 -> width``
    channels (kernel ``kernel_size``), NeurVec's learnable rational activation, and a
    zero-initialised convolution ``width -> 1``; the input is the field only (``y``), no
    ``h``-scaling.  Receptive field ``2 kernel_size - 1`` points.

    Parameters: ``width (2 kernel_size + 1) + 1`` (+7 rational coefficients), whatever ``nx``.

    Args:
        state_shape: ``(nx,)`` of the training grid.
        method, step_size: the classical step it corrects.
        width: hidden channels.
        kernel_size: odd stencil width of both convolutions.
        activation: default ``"rational"`` (NeurVec's); any name of :func:`attsolver.nn.make_activation`.
        domain_length, allow_other_grid, dtype: see :class:`ConvCorrector`.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float, width: int = 32, kernel_size: int = 5,
                 activation: str = "rational", domain_length: float = 1.0, allow_other_grid: bool = False,
                 dtype: Any = torch.float32):
        head = NeurVecHead(width=width, activation=activation)
        super().__init__(state_shape, method=method, step_size=step_size, domain_length=domain_length,
                         allow_other_grid=allow_other_grid, kernel_size=kernel_size, dtype=dtype,
                         hparams={"width": head.width, "kernel_size": kernel_size, "activation": activation},
                         head=head)


@register_corrector
class AttSolverConv(ConvCorrector):
    """AttSolver with a periodic convolutional body and a channel gate over its feature maps.

    ``z = B(u)``: ``depth`` periodic convolutions (``C_in -> width -> ... -> width``, kernel
    ``kernel_size``) with ``activation`` after each;
    ``a = A(z)``: an attention module of :mod:`attsolver.nn` (default SE, its linear maps'
    spectral norms capped at ``lipschitz_cap``) applied to the maps ``[B, width, X]``: it
    pools over space, giving one gate value in ``(0, 1)`` per sample and channel;
    ``m = z + a`` (``combine="add"``) or ``z ⊙ a`` (``"mul"``, AttNS-m) or ``m = z``
    (``attention="none"``); ``C = sigma * K_o * m`` with ``K_o`` a zero-initialised
    convolution ``width -> 1`` of kernel ``head_kernel``.

    Defaults (width 16, depth 3, kernel 5, GELU; receptive field 13 points; 2,933 parameters
    with the SE gate) were chosen on Burgers at Nu = 0.001 (64 points, h = 0.01, 32
    trajectories, 30 one-step epochs): GELU reached a held-out nRMSE of 0.085 against tanh's
    0.155 at width 32 (the coarse solver: 0.80), and width 16 cost half the time of width 32
    for 0.088.  With ``activation="tanh"`` the correction is bounded for every input, as for
    the ODE AttSolver (``|C| <= sigma (2 ||K_o||_1 + |b_o|)``); with GELU it is not.

    Args:
        state_shape: ``(nx,)`` of the training grid.
        method, step_size: the classical step it corrects.
        features: input channels (default the field and the classical increment).
        width: feature maps (= gate channels).
        depth: body convolutions (>= 1).
        kernel_size: odd stencil of the body convolutions.
        head_kernel: odd stencil of the output convolution.
        activation: body activation.
        attention: a gate name from :func:`attsolver.nn.list_attention` or ``"none"``.
        combine: ``"add"`` or ``"mul"`` (see :data:`attsolver.correctors.COMBINES`).
        lipschitz_cap: spectral-norm cap of the gate's linear maps, or ``None``.
        reduction: SE bottleneck ratio.
        attention_kwargs: further gate options (JSON-able).
        domain_length, allow_other_grid, dtype: see :class:`ConvCorrector`.
    """

    def __init__(self, state_shape: Any, *, method: str, step_size: float,
                 features: Sequence[str] = ("y", "dy"), width: int = 16, depth: int = 3,
                 kernel_size: int = 5, head_kernel: int = 1, activation: str = "gelu", attention: str = "se",
                 combine: str = "add", lipschitz_cap: float | None = 1.0, reduction: int = 4,
                 attention_kwargs: dict[str, Any] | None = None, domain_length: float = 1.0,
                 allow_other_grid: bool = False, dtype: Any = torch.float32):
        head = AttSolverHead(features=features, width=width, depth=depth, activation=activation,
                             attention=attention, combine=combine, lipschitz_cap=lipschitz_cap, reduction=reduction,
                             attention_kwargs=attention_kwargs, head_kernel=head_kernel)
        hp = {"features": list(head.features), "width": head.width, "depth": head.depth,
              "kernel_size": kernel_size, "head_kernel": head_kernel, "activation": activation,
              "attention": attention, "combine": combine, "lipschitz_cap": lipschitz_cap, "reduction": reduction,
              "attention_kwargs": dict(head.attention_kwargs)}
        super().__init__(state_shape, method=method, step_size=step_size, domain_length=domain_length,
                         allow_other_grid=allow_other_grid, kernel_size=kernel_size, dtype=dtype, hparams=hp,
                         head=head)
