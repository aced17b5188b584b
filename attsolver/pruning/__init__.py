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

from .blend import NORMALISATIONS, BlendedImportance, normalise_scores
from .cluster import CriteriaClusters, cluster_criteria, correlation_matrices, rank_correlation
from .criteria import (CRITERIA, NEEDS_GRADIENTS, accumulate_gradients, build_graph, check_prunable,
                       default_ignored_layers, layer_scores, list_criteria, make_importance, pruning_groups)
from .evolve import EvolutionResult, evolve
from .prune import (PruneReport, accuracy, calibrate_blend, check_ratio, clone_with_grads, compare_latency,
                    heldout_split, measure_latency, model_cost, prune_model, ratio_for_reduction, recalibrate_bn)

__all__ = [
    "CRITERIA", "NEEDS_GRADIENTS", "list_criteria", "make_importance", "accumulate_gradients", "check_prunable",
    "build_graph", "pruning_groups", "layer_scores", "default_ignored_layers",
    "BlendedImportance", "normalise_scores", "NORMALISATIONS",
    "rank_correlation", "correlation_matrices", "cluster_criteria", "CriteriaClusters",
    "evolve", "EvolutionResult",
    "prune_model", "PruneReport", "model_cost", "ratio_for_reduction", "recalibrate_bn", "accuracy",
    "heldout_split", "calibrate_blend", "clone_with_grads", "measure_latency", "compare_latency", "check_ratio",
]
