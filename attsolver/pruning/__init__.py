"""Pruning by blended criteria (Blending Pruning Criteria, arXiv 2107.05033) on torch-pruning.

Base criteria (L1, L2, FPGM, BN scale, Taylor) are torch-pruning's importance classes; per
layer their rank correlations cluster them; one representative per cluster is blended,
``score = Σ α_i · normalise(s_i)``, as a torch-pruning ``Importance``; an evolutionary search
picks the α's by the held-out accuracy of the pruned, BN-recalibrated network.

    from attsolver.pruning import (accumulate_gradients, layer_scores, cluster_criteria,
                                   calibrate_blend, prune_model)
    accumulate_gradients(model, x_train, y_train)          # for the Taylor criterion
    clusters = cluster_criteria(layer_scores(model, x_train[:1]))
    blend, search = calibrate_blend(model, clusters.representatives, pruning_ratio=0.3,
                                    example_inputs=x_train[:1], calib_x=x_train,
                                    heldout_x=x_held, heldout_y=y_held)
    prune_model(model, blend, pruning_ratio=0.3, example_inputs=x_train[:1])

The pruning mechanics (dependency graph, consistent channel removal) are torch-pruning's.
"""

import importlib

from .._extras import require

# Every name below needs torch-pruning (the `pruning` extra), so they load on first access:
# `import attsolver.pruning` (and the `attsolver prune` parser) work without it, and the
# first use of a name without it raises an ImportError naming `pip install 'attsolver[pruning]'`.
_WHERE = {
    "blend": ("NORMALISATIONS", "BlendedImportance", "normalise_scores"),
    "cluster": ("CriteriaClusters", "cluster_criteria", "correlation_matrices", "rank_correlation"),
    "criteria": ("CRITERIA", "NEEDS_GRADIENTS", "accumulate_gradients", "build_graph", "check_prunable",
                 "default_ignored_layers", "layer_scores", "list_criteria", "make_importance", "pruning_groups"),
    "evolve": ("EvolutionResult", "evolve"),
    "prune": ("PruneReport", "accuracy", "calibrate_blend", "check_ratio", "clone_with_grads", "compare_latency",
              "heldout_split", "measure_latency", "model_cost", "prune_model", "ratio_for_reduction",
              "recalibrate_bn"),
    "saved": ("save_pruned_model", "load_pruned_model"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require("torch_pruning", "attsolver.pruning", "pruning")
    # load every submodule first, then bind the names: importing a submodule sets the package
    # attribute of its own name, which would shadow the function `evolve` with the module
    modules = {m: importlib.import_module(f".{m}", __name__) for m in _WHERE}
    globals().update({n: getattr(modules[m], n) for n, m in _MODULE_OF.items()})
    return globals()[name]


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))

__all__ = [
    "CRITERIA", "NEEDS_GRADIENTS", "list_criteria", "make_importance", "accumulate_gradients", "check_prunable",
    "build_graph", "pruning_groups", "layer_scores", "default_ignored_layers",
    "BlendedImportance", "normalise_scores", "NORMALISATIONS",
    "rank_correlation", "correlation_matrices", "cluster_criteria", "CriteriaClusters",
    "evolve", "EvolutionResult",
    "prune_model", "PruneReport", "model_cost", "ratio_for_reduction", "recalibrate_bn", "accuracy",
    "heldout_split", "calibrate_blend", "clone_with_grads", "measure_latency", "compare_latency", "check_ratio",
    "save_pruned_model", "load_pruned_model",
]
