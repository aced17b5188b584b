# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Connection search for shared attention (EAN lottery tickets)
#
# A DIA-ResNet shares one attention unit per stage across all the stage's blocks. *Does every
# block need it?* EAN (arXiv 2011.14058 / 2207.07858) gives each block a bit — connect the
# shared module or not — and searches the bits:
#
# 1. **masks**: `model(x, connection="101100110")` applies the stage's module only where the bit
#    is 1; an unconnected block does not call it at all (for DIA the LSTM state passes the block
#    unchanged);
# 2. **supernet**: train once with a fresh random mask per mini-batch;
# 3. **search**: REINFORCE over masks (policy network, moving-average baseline) against random
#    search with the same number of evaluated masks, reward = accuracy on data *held out of the
#    training set* + a bonus for unconnected blocks;
# 4. **ticket**: retrain the best mask from scratch and compare it with full attention, random
#    masks of equal sparsity and no attention.
#
# The full comparison is `attsolver bench tickets` (results in `benchmarks/results/tickets.md`).
# Set `ATTSOLVER_FAST=1` for the short version CI runs.
#
# *Outputs committed here: a full run (without `ATTSOLVER_FAST`).*

# %%
import warnings
# executed headless (jupytext --execute) without ipywidgets: tqdm's notebook bar falls back to
# the text bar and says so on import; the fallback is what we want
warnings.filterwarnings("ignore", message="IProgress not found")
import os, time
import torch
import matplotlib.pyplot as plt
from attsolver.vision import make_model, load_digits, train_classifier, count_parameters
from attsolver.vision.resnet import attention_parameters
from attsolver.vision.search import (holdout_split, train_supernet, MaskEvaluator, make_reward,
                                     reinforce_search, random_search, random_masks_like, measure_latency)

FAST = os.environ.get("ATTSOLVER_FAST") == "1"
torch.set_num_threads(1)
data = load_digits()
split = holdout_split(data, 0.2, seed=0)   # the search never sees data.test_*
print(data, "\n", split)

# %% [markdown]
# ## 1. Connection masks
#
# ResNet-20 has 3 stages × 3 blocks = 9 bits, numbered stage by stage. A forward hook on the
# shared units counts how often they run.

# %%
torch.manual_seed(0)
model = make_model("resnet20", num_classes=10, in_channels=1, attention="dia", reduction=4).eval()
calls = [0]
for stage in model.stages:
    stage.shared.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
x = data.normalize(data.test_x[:64])
for mask in ("111111111", "101100110", "000000000"):
    calls[0] = 0
    with torch.no_grad():
        model(x, connection=mask)
    print(f"mask {mask}: DIA called {calls[0]} times, attention parameters in use {attention_parameters(model, mask):,}")
try:
    model(x, connection="1011")
except ValueError as e:
    print("ValueError:", e)

# %% [markdown]
# ## 2. Supernet: a random mask per mini-batch
#
# Each bit is Bernoulli(1/2). Masks are scored after re-estimating the BatchNorm statistics for
# that mask from a few training images: the supernet's running statistics are an average over
# random masks and fit no single one.

# %%
torch.manual_seed(0)
supernet = make_model("resnet20", num_classes=10, in_channels=1, attention="dia", reduction=4)
hist = train_supernet(supernet, split, epochs=4 if FAST else 30, seed=0, calibration=128 if FAST else 256)
print(f"{hist.wall_time_s:.0f} s; held-out accuracy, all connected {hist.holdout_acc_full[-1]:.3f}, "
      f"none connected {hist.holdout_acc_none[-1]:.3f}")

# %% [markdown]
# ## 3. Search: REINFORCE vs random search, same budget
#
# `MaskEvaluator` scores each mask once and can keep a JSON-lines log (`log=path`): a search
# that is interrupted resumes from it without re-evaluating finished masks.

# %%
evaluator = MaskEvaluator(supernet, split, calibration=128 if FAST else 256)
reward = make_reward(evaluator, sparsity_bonus=0.003)
budget = 12 if FAST else 48
rl = reinforce_search(reward, 9, budget=budget, seed=0)
rs = random_search(reward, 9, budget=rl.evaluated, seed=0)
for res in (rl, rs):
    print(f"{res.method:9s} ticket {''.join(map(str, res.best_mask))} reward {res.best_reward:.4f} "
          f"({res.evaluated} masks, {res.samples} draws)")
print("REINFORCE's final P(connected) per block:", [round(p, 2) for p in rl.probabilities])
for res in (rl, rs):
    curve = [t["best_reward"] for t in res.trace if t["new"]]
    plt.plot(range(1, len(curve) + 1), curve, label=res.method)
plt.xlabel("distinct masks evaluated"); plt.ylabel("best reward so far"); plt.legend(); plt.show()

# %% [markdown]
# ## 4. Retrain the ticket from scratch
#
# Against full attention, random masks with as many connections, and no attention (one seed
# here; the benchmark uses several and reports mean ± std).

# %%
ticket = rl.best_mask
contenders = {"full": (1,) * 9, "ticket": ticket}
for i, m in enumerate(random_masks_like(ticket, 1 if FAST else 2, seed=1, exclude=[(1,) * 9])):
    contenders[f"random_{i + 1}"] = m
contenders["none"] = None
epochs = 3 if FAST else 20
x_lat = data.normalize(data.test_x[:256])
for name, mask in contenders.items():
    torch.manual_seed(0)
    net = make_model("resnet20", num_classes=10, in_channels=1, attention="none" if mask is None else "dia",
                     reduction=4, connection=mask)
    h = train_classifier(net, data, epochs=epochs, seed=0, progress=False)
    lat = measure_latency(net, x_lat, repeats=5)
    extra = 0 if mask is None else attention_parameters(net)
    print(f"{name:9s} {'-' if mask is None else ''.join(map(str, mask)):9s}  test acc {h.final_test_acc:.3f}  "
          f"extra params {extra:,}  latency {1e3 * lat:.1f} ms")

# %% [markdown]
# On digits, shared DIA barely changes the accuracy of a standard ResNet-20 (see
# `benchmarks/results/vision.md`), so there is little for a ticket to win: read
# `benchmarks/results/tickets.md` for whether the searched ticket beats random masks of the same
# sparsity over several seeds. For CIFAR (GPU):
#
#     attsolver vision search --data DIR/cifar-100-python --dataset cifar100 --model resnet164 \
#         --attention dia --supernet-epochs 164 --milestones 81 122 --budget 200 --device cuda --out search_c100
