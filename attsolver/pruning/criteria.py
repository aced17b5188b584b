"""The base filter-importance criteria, as torch-pruning importance estimators, and the
per-layer score extraction that the clustering and the blend work on.

A *criterion* scores every output channel ("filter") of a pruning group: the set of layers
torch-pruning's dependency graph couples to one convolution's output channels (that
convolution, its BatchNorm, the next layers' input channels, and, across a residual
addition, every layer that writes to the same sum).  The scores come from torch-pruning's
own importance classes, with its normaliser switched off (our blend normalises per layer):

===========  =====================================================================
``l1``       ``MagnitudeImportance(p=1)``: Σ|w| over each channel's weights (Li et al. 2017)
``l2``       ``MagnitudeImportance(p=2)``: Σ w² over each channel's weights
``fpgm``     ``FPGMImportance``: a filter's summed distance to the layer's other filters;
             near the geometric median = redundant = low score (He et al. 2019)
``bn_scale`` ``BNScaleImportance``: |γ| of the BatchNorm scale (network slimming, Liu et al. 2017)
``taylor``   ``TaylorImportance``: Σ|w · ∂L/∂w|, first-order Taylor estimate of the loss
             change (Molchanov et al. 2019); needs gradients, see :func:`accumulate_gradients`
===========  =====================================================================

``reduction`` says how the scores of a group's layers are combined per channel:
``"mean"`` (torch-pruning's default: the mean over every layer of the group that the
criterion can score) or ``"first"`` (only the group's first scorable layer: for ``l1``, the
classic "L1 norm of the convolution's filter").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._extras import require

__all__ = ["CRITERIA", "NEEDS_GRADIENTS", "list_criteria", "make_importance", "accumulate_gradients",
           "check_prunable", "build_graph", "pruning_groups", "layer_scores", "default_ignored_layers",
           "PruningGroup"]


def _tp():
    return require("torch_pruning", "attsolver.pruning", "pruning")


def _l1(reduction: str):
    return _tp().importance.MagnitudeImportance(p=1, group_reduction=reduction, normalizer=None)


def _l2(reduction: str):
    return _tp().importance.MagnitudeImportance(p=2, group_reduction=reduction, normalizer=None)


def _fpgm(reduction: str):
    return _tp().importance.FPGMImportance(p=2, group_reduction=reduction, normalizer=None)


def _bn_scale(reduction: str):
    return _tp().importance.BNScaleImportance(group_reduction=reduction, normalizer=None)


def _taylor(reduction: str):
    return _tp().importance.TaylorImportance(group_reduction=reduction, normalizer=None)


#: criterion name -> factory ``reduction -> torch_pruning Importance``; one line per criterion
CRITERIA: dict[str, Callable[[str], object]] = {
    "l1": _l1, "l2": _l2, "fpgm": _fpgm, "bn_scale": _bn_scale, "taylor": _taylor,
}
#: criteria that read ``param.grad`` (fill it with :func:`accumulate_gradients` first)
NEEDS_GRADIENTS = frozenset({"taylor"})
_REDUCTIONS = ("mean", "first", "sum", "max")


def list_criteria() -> list[str]:
    """The names of the base criteria, in a fixed order."""
    return list(CRITERIA)


def make_importance(name: str, *, reduction: str = "mean"):
    """torch-pruning's importance estimator for criterion ``name`` (unnormalised scores).

    Raises ``ValueError`` for an unknown name or reduction, listing the choices."""
    if name not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {name!r}; choose one of: {', '.join(CRITERIA)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    return CRITERIA[name](reduction)


def accumulate_gradients(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 256) -> float:
    """Set every parameter's ``.grad`` to the gradient of the mean cross-entropy of ``model``
    on ``(x, y)`` (batches weighted by size; model in eval mode so that BatchNorm uses its
    running statistics and the buffers do not move).  Returns that mean loss."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must hold the same positive number of samples, got {len(x)} and {len(y)}")
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        loss = F.cross_entropy(model(xb), yb, reduction="sum") / len(x)
        loss.backward()
        total += float(loss.detach())
    model.train(was_training)
    return total


def default_ignored_layers(model: nn.Module, example_inputs: Tensor) -> list[nn.Module]:
    """The classifier: every ``nn.Linear`` whose ``out_features`` equals the model's output
    width (its outputs are the classes; pruning them would drop classes)."""
    with torch.no_grad():
        was_training = model.training
        model.eval()
        out = model(example_inputs)
        model.train(was_training)
    width = out.shape[-1]
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == width]


_KNOWN_RESHAPERS = (nn.Flatten, nn.Unflatten, nn.PixelShuffle, nn.PixelUnshuffle)


def check_prunable(model: nn.Module, example_inputs: Tensor) -> None:
    """Raise ``ValueError`` naming the first layer whose channel arithmetic torch-pruning's
    dependency graph cannot follow: a weightless module that changes the channel count of
    a tensor while keeping its rank (e.g. a zero-padding shortcut: channels appended by
    ``F.pad``).  Pruning through such a layer silently gives a network whose shapes no longer
    fit, so it is refused up front."""
    problems: list[str] = []
    hooks = []

    def hook(name):
        def fn(module, inputs, output):
            if problems or not inputs or not isinstance(inputs[0], Tensor) or not isinstance(output, Tensor):
                return
            a, b = inputs[0], output
            if a.ndim == b.ndim >= 2 and a.shape[1] != b.shape[1]:
                problems.append(f"layer {name!r} ({type(module).__name__}) changes the channels "
                                f"{a.shape[1]} -> {b.shape[1]} without weights")
        return fn

    for name, module in model.named_modules():
        leaf = next(module.children(), None) is None
        weightless = next(module.parameters(recurse=False), None) is None
        if leaf and weightless and not isinstance(module, _KNOWN_RESHAPERS):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(example_inputs)
            model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    if problems:
        raise ValueError(
            f"torch-pruning's dependency graph cannot handle this model: {problems[0]}; it cannot keep "
            "that layer consistent when channels are removed. Replace it with a layer that has weights "
            "(for a CifarResNet: shortcut='B', 1x1 projection shortcuts) or leave the model unpruned")


def build_graph(model: nn.Module, example_inputs: Tensor):
    """torch-pruning's ``DependencyGraph`` of ``model`` (after :func:`check_prunable`)."""
    check_prunable(model, example_inputs)
    was_training = model.training
    model.eval()
    try:
        return _tp().DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    finally:
        model.train(was_training)


@dataclass
class PruningGroup:
    """One pruning group: ``name`` of its root layer, torch-pruning's ``group`` (all channels)
    and its channel count."""

    name: str
    group: object
    channels: int


def pruning_groups(model: nn.Module, example_inputs: Tensor, *, ignored_layers: Sequence[nn.Module] | None = None,
                   graph=None) -> list[PruningGroup]:
    """The groups torch-pruning would prune (each with all its channels), named by their root
    layer, in the graph's order.  ``ignored_layers`` default: :func:`default_ignored_layers`."""
    graph = graph if graph is not None else build_graph(model, example_inputs)
    if ignored_layers is None:
        ignored_layers = default_ignored_layers(model, example_inputs)
    ignored = [m for layer in ignored_layers for m in layer.modules()]
    names = {m: n for n, m in model.named_modules()}
    out = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]):
        root = group[0].dep.target.module
        out.append(PruningGroup(names.get(root, type(root).__name__), group, len(group[0].idxs)))
    return out


def layer_scores(model: nn.Module, example_inputs: Tensor, criteria: Sequence[str] | None = None, *,
                 reduction: str = "mean", ignored_layers: Sequence[nn.Module] | None = None,
                 ) -> dict[str, dict[str, np.ndarray]]:
    """Per pruning group (named by its root layer), each criterion's score of every channel:
    ``{group: {criterion: float64 array [channels]}}``.  Groups a criterion cannot score
    (``taylor`` without gradients, ``bn_scale`` without BatchNorm) are left out for it.

    Criteria in :data:`NEEDS_GRADIENTS` read ``param.grad``: call
    :func:`accumulate_gradients` first, else they raise ``ValueError``."""
    criteria = list_criteria() if criteria is None else list(criteria)
    importances = {c: make_importance(c, reduction=reduction) for c in criteria}
    if any(c in NEEDS_GRADIENTS for c in criteria):
        convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        if any(m.weight.grad is None for m in convs):
            raise ValueError(f"criteria {sorted(NEEDS_GRADIENTS & set(criteria))} need gradients: call "
                             "accumulate_gradients(model, x, y) on training data first")
    out: dict[str, dict[str, np.ndarray]] = {}
    for pg in pruning_groups(model, example_inputs, ignored_layers=ignored_layers):
        row = {}
        for c, imp in importances.items():
            s = imp(pg.group)
            if s is not None:
                row[c] = s.detach().double().cpu().numpy()
        out[pg.name] = row
    return out
