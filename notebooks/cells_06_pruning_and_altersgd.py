"""Cells of notebooks/06_pruning_and_altersgd.ipynb: the pruning half (here) and the
AlterSGD half (``ALTERSGD_CELLS`` of the sibling ``_altersgd_cells.py``, owned by the
AlterSGD author; an empty list until it exists)."""

import importlib.util
from pathlib import Path

NAME = "06_pruning_and_altersgd.ipynb"

PRUNING_CELLS = [
    ("md", """
# Pruning by blended criteria, and AlterSGD

**Part 1 — pruning.** Which filters of a trained CNN can go? Five classic criteria answer
differently: L1 and L2 norms of the filter, FPGM (distance to the layer's geometric median),
the BatchNorm scale |γ|, and the first-order Taylor estimate |w·∂L/∂w|. Following *Blending
Pruning Criteria* (arXiv 2107.05033) we

1. score every filter of a ResNet-20 with each criterion (torch-pruning's importance classes);
2. cluster the criteria by the rank correlation of their scores, layer by layer, and keep one
   representative per cluster;
3. blend the representatives, `score = Σ α_i · normalise(s_i)`, as a torch-pruning `Importance`,
   and let an evolutionary algorithm choose the α's by the accuracy of the pruned, BatchNorm-
   recalibrated network on data held out of the training set;
4. prune with each single criterion and with the blend, fine-tune identically, compare.

The pruning itself (the dependency graph that keeps residual additions consistent) is
torch-pruning's. Set `ATTSOLVER_FAST=1` for the short version CI runs.
"""),
    ("code", """
import os, copy, time
import numpy as np
import torch
import matplotlib.pyplot as plt
from attsolver.vision import make_model, load_digits, train_classifier
from attsolver.vision.data import ImageData
from attsolver import pruning as P

FAST = os.environ.get("ATTSOLVER_FAST") == "1"
torch.set_num_threads(1)
data = load_digits()
keep, held = P.heldout_split(data.train_y, 0.2, seed=0)   # never the test set
tr = ImageData("digits", data.train_x[keep], data.train_y[keep], data.test_x, data.test_y, 10, flip=False)
x_tr, y_tr = tr.normalize(tr.train_x), tr.train_y
x_ho, y_ho = tr.normalize(data.train_x[held]), data.train_y[held]
x_te, y_te = tr.normalize(data.test_x), data.test_y
print(len(keep), "training,", len(held), "held-out,", len(y_te), "test images")
"""),
    ("md", """
## 1. A base network

ResNet-20 with 1x1 projection shortcuts (`shortcut="B"`): torch-pruning cannot follow the
parameter-free zero-padding shortcut, and says so — see the last cell of this part.
"""),
    ("code", """
torch.manual_seed(0)
base = make_model("resnet20", num_classes=10, in_channels=1, shortcut="B")
hist = train_classifier(base, tr, epochs=4 if FAST else 20, seed=0, progress=False)
example = x_tr[:1]
flops0, params0 = P.model_cost(base, example)
print(f"test accuracy {P.accuracy(base, x_te, y_te):.4f}; {params0:,} parameters, {flops0 / 1e6:.2f}M FLOPs")
"""),
    ("md", """
## 2. Scores per layer and the criteria's clusters

`layer_scores` returns, for every pruning group (named by its root convolution), each
criterion's score of every channel. Taylor needs gradients: `accumulate_gradients` fills
`.grad` with the gradient of the training loss.
"""),
    ("code", """
P.accumulate_gradients(base, x_tr, y_tr)
scores = P.layer_scores(base, example)
clusters = P.cluster_criteria(scores, list(P.CRITERIA), method="spearman", threshold=0.3)
print("clusters:", clusters.clusters, "-> representatives:", clusters.representatives)

fig, ax = plt.subplots(figsize=(4.2, 3.6))
im = ax.imshow(clusters.mean, vmin=-1, vmax=1, cmap="coolwarm")
ax.set_xticks(range(len(clusters.criteria)), clusters.criteria, rotation=45)
ax.set_yticks(range(len(clusters.criteria)), clusters.criteria)
ax.set_title("mean Spearman ρ over layers")
fig.colorbar(im)
plt.show()
"""),
    ("md", """
## 3. Calibrating the blend

The fitness of α: prune a copy at the channel ratio that removes half of the FLOPs, re-estimate
the BatchNorm statistics on training images, measure accuracy on the held-out images. The first
population contains every single criterion (one-hot α), so the search can only improve on the
best of them — on the held-out data it is scored on.
"""),
    ("code", """
ratio, reached = P.ratio_for_reduction(base, example, 0.5)
print(f"channel ratio {ratio:.3f} removes {reached:.1%} of the FLOPs")
t0 = time.perf_counter()
blend, search = P.calibrate_blend(base, clusters.representatives, pruning_ratio=ratio, example_inputs=example,
                                  calib_x=x_tr, heldout_x=x_ho, heldout_y=y_ho,
                                  population=4 if FAST else 8, generations=2 if FAST else 6, seed=0)
print(blend, f"held-out accuracy {search.best_fitness:.4f}, {search.evaluations} evaluations, "
      f"{time.perf_counter() - t0:.0f} s")
print([round(h["best"], 4) for h in search.history])
"""),
    ("md", """
## 4. Single criteria against the blend

Every variant prunes the same trained network to the same architecture, recalibrates BN and is
fine-tuned the same way. One seed here; the committed benchmark
(`attsolver bench pruning`, `benchmarks/results/pruning.md`) averages several and also prunes
to 75% fewer FLOPs.
"""),
    ("code", """
results = {}
for name, imp in [*[(c, c) for c in P.CRITERIA], ("blend", blend)]:
    m = P.clone_with_grads(base)
    rep = P.prune_model(m, imp, pruning_ratio=ratio, example_inputs=example)
    m.zero_grad(set_to_none=True)
    P.recalibrate_bn(m, x_tr)
    recal = P.accuracy(m, x_te, y_te)
    train_classifier(m, tr, epochs=1 if FAST else 8, lr=0.01, milestones=[4], seed=0, progress=False)
    results[name] = (recal, P.accuracy(m, x_te, y_te), rep.params_after)
    print(f"{name:9s} params {rep.params_after:7,d}  after BN recal. {recal:.4f}  fine-tuned {results[name][1]:.4f}")
"""),
    ("code", """
# a model torch-pruning's dependency graph cannot handle gets a clear error naming the layer
try:
    P.prune_model(make_model("resnet20", num_classes=10, in_channels=1), "l1", pruning_ratio=0.3,
                  example_inputs=example)
except ValueError as e:
    print("ValueError:", e)
"""),
]


def _altersgd_cells() -> list:
    """``ALTERSGD_CELLS`` from notebooks/_altersgd_cells.py, or ``[]`` while it does not exist."""
    path = Path(__file__).resolve().parent / "_altersgd_cells.py"
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location("_altersgd_cells", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(getattr(mod, "ALTERSGD_CELLS", []))


ALTERSGD_CELLS = _altersgd_cells()
CELLS = PRUNING_CELLS + ALTERSGD_CELLS
