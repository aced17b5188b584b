"""Pruning a network with a criterion (or a blend), and what the calibration needs around it:
a held-out split of the training data, BatchNorm recalibration, accuracy, the channel ratio
that reaches a target FLOP/parameter reduction, the evolutionary calibration of α, latency.

The pruning itself is torch-pruning's: ``BasePruner`` builds the dependency graph and
removes the lowest-scoring channels of every group (``pruning_ratio`` of each group's
channels: *local* pruning, so at a given ratio every criterion yields the same
architecture and only the choice of channels differs).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .blend import BlendedImportance
from .criteria import CRITERIA, NEEDS_GRADIENTS, _tp, check_prunable, default_ignored_layers, make_importance
from .evolve import EvolutionResult, evolve

__all__ = ["prune_model", "PruneReport", "model_cost", "ratio_for_reduction", "recalibrate_bn", "accuracy",
           "heldout_split", "calibrate_blend", "clone_with_grads", "measure_latency", "compare_latency", "check_ratio"]


def check_ratio(name: str, value) -> float:
    """``value`` as a float in [0, 1), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (0.0 <= float(value) < 1.0):
        raise ValueError(f"{name} must be a number in [0, 1) (the fraction removed; 1 would remove everything), "
                         f"got {value!r}")
    return float(value)


def model_cost(model: nn.Module, example_inputs: Tensor) -> tuple[float, int]:
    """``(FLOPs, parameters)`` of one forward pass on ``example_inputs``, as torch-pruning's
    ``count_ops_and_params`` counts them (multiply-accumulates counted once)."""
    flops, params = _tp().utils.count_ops_and_params(model, example_inputs)
    return float(flops), int(params)


@dataclass
class PruneReport:
    """What :func:`prune_model` did: the cost before and after, and the removed channels."""

    pruning_ratio: float
    flops_before: float
    flops_after: float
    params_before: int
    params_after: int
    history: list = field(default_factory=list)

    @property
    def flops_reduction(self) -> float:
        return 1.0 - self.flops_after / self.flops_before

    @property
    def params_reduction(self) -> float:
        return 1.0 - self.params_after / self.params_before


def _importance(criterion):
    if isinstance(criterion, str):
        return make_importance(criterion)
    if callable(criterion):
        return criterion
    raise TypeError(f"criterion must be a criterion name ({', '.join(CRITERIA)}) or a torch-pruning Importance, "
                    f"got {type(criterion).__name__}")


def prune_model(model: nn.Module, criterion, *, pruning_ratio: float, example_inputs: Tensor,
                ignored_layers: Sequence[nn.Module] | None = None, global_pruning: bool = False) -> PruneReport:
    """Remove ``pruning_ratio`` of the channels of every prunable group of ``model``, in
    place, keeping the channels ``criterion`` scores highest.

    Args:
        criterion: a name from :data:`CRITERIA` or a torch-pruning importance (e.g. a
            :class:`BlendedImportance`).  ``taylor`` needs ``param.grad`` filled.
        pruning_ratio: fraction of each group's channels removed, in [0, 1).
        example_inputs: a batch of inputs for tracing, e.g. ``x[:1]``.
        ignored_layers: left unpruned (default: the classifier, see
            :func:`default_ignored_layers`).
        global_pruning: rank all groups together instead of each group alone.

    Raises ``ValueError`` for a ratio outside [0, 1) and for a model the dependency graph
    cannot handle (naming the layer).  Afterwards the model is checked to run.
    """
    ratio = check_ratio("pruning_ratio", pruning_ratio)
    importance = _importance(criterion)
    check_prunable(model, example_inputs)
    if ignored_layers is None:
        ignored_layers = default_ignored_layers(model, example_inputs)
    needs_grad = (criterion in NEEDS_GRADIENTS) if isinstance(criterion, str) else (
        isinstance(criterion, BlendedImportance) and any(criterion.alphas.get(c, 0) > 0 for c in NEEDS_GRADIENTS))
    if needs_grad and any(p.grad is None for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                          for p in [m.weight]):
        raise ValueError("the taylor criterion needs gradients: call accumulate_gradients(model, x, y) first")
    was_training = model.training
    model.eval()
    flops0, params0 = model_cost(model, example_inputs)
    report = PruneReport(ratio, flops0, flops0, params0, params0)
    if ratio > 0:
        pruner = _tp().pruner.BasePruner(model, example_inputs, importance=importance, pruning_ratio=ratio,
                                         ignored_layers=list(ignored_layers), global_pruning=global_pruning)
        pruner.step()
        report.history = pruner.pruning_history()
        report.flops_after, report.params_after = model_cost(model, example_inputs)
        names = []
        hooks = [m.register_forward_pre_hook(lambda mod, inp, n=n: names.append(n))
                 for n, m in model.named_modules() if next(m.children(), None) is None]
        try:
            with torch.no_grad():
                model(example_inputs)
        except RuntimeError as e:
            raise ValueError(f"the pruned model no longer runs: layer {names[-1] if names else '?'!r} fails "
                             f"({str(e).splitlines()[0]}); torch-pruning could not keep the model consistent") from None
        finally:
            for h in hooks:
                h.remove()
    model.train(was_training)
    return report


def ratio_for_reduction(model: nn.Module, example_inputs: Tensor, target: float, *, metric: str = "flops",
                        tol: float = 1e-3) -> tuple[float, float]:
    """The smallest channel ratio whose pruning removes at least ``target`` of the FLOPs (or
    parameters) of ``model``, by bisection on pruned copies; returns ``(ratio, reduction
    reached)``.  The architecture after local pruning does not depend on the criterion, so
    the ratio holds for every criterion."""
    target = check_ratio("target", target)
    if metric not in ("flops", "params"):
        raise ValueError(f"metric must be 'flops' or 'params', got {metric!r}")

    def reduction(r: float) -> float:
        m = copy.deepcopy(model)
        rep = prune_model(m, "l1", pruning_ratio=r, example_inputs=example_inputs)
        return rep.flops_reduction if metric == "flops" else rep.params_reduction

    if target == 0.0:
        return 0.0, 0.0
    lo, hi = 0.0, 0.9  # beyond, torch-pruning empties whole groups and skips them
    if reduction(hi) < target:
        raise ValueError(f"even a channel ratio of {hi} removes less than {target:.0%} of the {metric}; "
                         "lower the target")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if reduction(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi, reduction(hi)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: Tensor, *, batch_size: int = 256) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on ``x``: momentum ``None``,
    PyTorch's cumulative average, so each becomes the plain mean of the per-batch statistics
    (not an exponential average biased to the last batches); the rest of the model fixed.  Returns the model in eval
    mode.  After pruning, the statistics of the surviving channels' inputs have changed."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``(x, y)``, in [0, 1]."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    model.train(was)
    return correct / len(y)


def heldout_split(y: Tensor, fraction: float = 0.2, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Indices ``(keep, heldout)`` of a stratified split of training labels ``y``: ``fraction``
    of every class held out (for fitness / calibration; never the test set)."""
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
        raise ValueError(f"heldout fraction must lie in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    yn = y.cpu().numpy()
    held = []
    for c in np.unique(yn):
        idx = np.flatnonzero(yn == c)
        held.append(rng.permutation(idx)[: max(1, int(round(fraction * len(idx))))])
    mask = np.zeros(len(yn), dtype=bool)
    mask[np.concatenate(held)] = True
    return torch.from_numpy(np.flatnonzero(~mask)), torch.from_numpy(np.flatnonzero(mask))


def clone_with_grads(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters carry copies of the original's ``.grad``
    (``copy.deepcopy`` drops them; the Taylor criterion reads them)."""
    clone = copy.deepcopy(model)
    for p, q in zip(model.parameters(), clone.parameters()):
        q.grad = None if p.grad is None else p.grad.detach().clone()
    return clone


def calibrate_blend(model: nn.Module, criteria: Sequence[str], *, pruning_ratio: float, example_inputs: Tensor,
                    calib_x: Tensor, heldout_x: Tensor, heldout_y: Tensor, normalisation: str = "minmax",
                    population: int = 8, generations: int = 5, mutation_sigma: float = 0.1,
                    crossover_rate: float = 0.7, elite: int = 2, seed: int = 0, log: str | Path | None = None,
                    progress=None) -> tuple[BlendedImportance, EvolutionResult]:
    """Search the α's of a blend of ``criteria`` with :func:`evolve`; the fitness of α is the
    held-out accuracy of a copy of ``model`` pruned by ``BlendedImportance(α)`` at
    ``pruning_ratio`` and then BatchNorm-recalibrated on ``calib_x`` (training images, not the
    held-out ones).  ``model`` is not changed; for ``taylor`` its ``.grad`` must be filled.
    Returns the best blend and the search's record."""
    check_ratio("pruning_ratio", pruning_ratio)
    criteria = list(criteria)
    if not criteria:
        raise ValueError("criteria must name at least one criterion")

    def fitness(alpha: np.ndarray) -> float:
        m = clone_with_grads(model)
        prune_model(m, BlendedImportance(alpha.tolist(), criteria, normalisation=normalisation),
                    pruning_ratio=pruning_ratio, example_inputs=example_inputs)
        recalibrate_bn(m, calib_x)
        return accuracy(m, heldout_x, heldout_y)

    res = evolve(fitness, len(criteria), population=population, generations=generations,
                 mutation_sigma=mutation_sigma, crossover_rate=crossover_rate, elite=elite, seed=seed, log=log,
                 progress=progress)
    return BlendedImportance(res.best.tolist(), criteria, normalisation=normalisation), res


@torch.no_grad()
def measure_latency(model: nn.Module, x: Tensor, *, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time (seconds) of one forward pass of ``model`` (eval mode) on ``x``."""
    was = model.training
    model.eval()
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    model.train(was)
    return statistics.median(times)


@torch.no_grad()
def compare_latency(models: dict[str, nn.Module], x: Tensor, *, repeats: int = 30, warmup: int = 3,
                    clock: str = "wall") -> dict[str, float]:
    """The fastest of ``repeats`` forward passes (seconds) of each model on ``x``, timed in
    turn (model a, b, c, a, b, c, ...) so that a busy machine slows all of them alike; the
    minimum is the least disturbed by other processes.  ``clock="process"`` times with the
    process's CPU time (``time.process_time``) instead of the wall clock: on a machine shared
    with other jobs it leaves out the time spent waiting for a core (use one torch thread)."""
    if clock not in ("wall", "process"):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    timer = time.perf_counter if clock == "wall" else time.process_time
    for m in models.values():
        m.eval()
        for _ in range(warmup):
            m(x)
    best = {k: float("inf") for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            t0 = timer()
            m(x)
            best[k] = min(best[k], timer() - t0)
    return best

