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
# # Attention modules: one gate, two domains
#
# The "residual network = dynamical system" view, seen from the vision side:
#
# 1. the attention modules of `attsolver.nn` — SE, IEBN's gate and the DIA unit (a modified LSTM
#    shared by the blocks of a stage) — on feature vectors `[B, C]` and feature maps `[B, C, H, W]`;
# 2. parameter counts of the CIFAR ResNet-164 variants against the published table;
# 3. a few epochs of ResNet-20 on scikit-learn's 8x8 digits with and without attention;
# 4. the same gates inside an **AttSolver** corrector for a coarse Lorenz-63 step.
#
# Set `ATTSOLVER_FAST=1` for the short version that CI runs (under a minute).
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
import attsolver
from attsolver.nn import list_attention, make_attention, SqueezeExcitation, IEBatchNorm

FAST = os.environ.get("ATTSOLVER_FAST") == "1"
torch.set_num_threads(1)
torch.manual_seed(0)
print("gates:", list_attention())

# %% [markdown]
# ## 1. The modules on vectors and on maps
#
# A gate maps its input to `a ∈ (0, 1)` per sample and channel, shaped to broadcast against the
# input: `[B, C]` stays `[B, C]`, a map `[B, C, H, W]` is pooled (global average) and gives
# `[B, C, 1, 1]`. The DIA unit is *stateful*: `forward(x, state)` returns the gate and the new
# LSTM state `(h, c)`; a ResNet stage calls the same unit once per block, carrying the state.

# %%
vec = torch.randn(8, 16)
maps = torch.randn(8, 16, 5, 5)
for name in ("se", "iebn", "dia"):
    gate = make_attention(name, 16, reduction=4)
    for x in (vec, maps):
        a = (gate(x)[0] if gate.stateful else gate(x)).detach()
        print(f"{name:4s} input {tuple(x.shape)!s:15s} -> gate {tuple(a.shape)!s:15s} "
              f"in ({float(a.min()):.3f}, {float(a.max()):.3f}); {sum(p.numel() for p in gate.parameters())} params")

# DIA: one unit, three blocks, the state carried from block to block
dia = make_attention("dia", 16, reduction=4)
state = None
for block in range(3):
    a, state = dia(maps + block, state)
    print(f"block {block}: mean gate {float(a.detach().mean()):.4f}")

# the layers built on the gates
print(SqueezeExcitation(16, reduction=4)(maps).shape, IEBatchNorm(16)(maps).shape)

# %% [markdown]
# ## 2. ResNet-164 parameter counts against the published table
#
# DIANet (arXiv 1905.10671) reports, on CIFAR-100: ResNet-164 1.73M, SE-ResNet-164 1.93M,
# DIA-ResNet-164 1.95M. SE is one module per block (reduction 16); DIA one unit per stage,
# shared (reduction 4), so its cost does not grow with the depth.

# %%
from attsolver.vision import count_parameters, make_model

published = {"none": 1.73, "se": 1.93, "dia": 1.95}
for att in ("none", "se", "shared_se", "dia", "iebn"):
    n = count_parameters(make_model("resnet164", num_classes=100, attention=att))
    ref = published.get(att)
    print(f"{att:10s} {n:>10,d} = {n / 1e6:.2f}M" + (f"   published {ref}M" if ref else ""))

# %% [markdown]
# ## 3. A few epochs on digits
#
# ResNet-20 (basic blocks, 16/32/64 channels) on the 8x8 digits that ship with scikit-learn:
# SGD 0.9, lr 0.1 with step decay, crop augmentation. The committed benchmark
# (`attsolver bench vision`, `benchmarks/results/vision.md`) runs 24 epochs and 5 seeds per
# module; here one seed and a few epochs, so differences are not significant.

# %%
from attsolver.vision import CifarResNet, load_digits, train_classifier

data = load_digits()
epochs = 6 if FAST else 24
choices = ("none", "dia") if FAST else ("none", "se", "shared_se", "dia", "iebn")
curves = {}
for att in choices:
    torch.manual_seed(0)
    model = CifarResNet(20, data.num_classes, in_channels=data.in_channels, attention=att, reduction=4)
    t0 = time.perf_counter()
    hist = train_classifier(model, data, epochs=epochs, batch_size=128, seed=0, progress=False)
    curves[att] = [100 * a for a in hist.test_acc]
    print(f"{att:10s} {count_parameters(model):>8,d} params: test accuracy {100 * hist.final_test_acc:.2f}% "
          f"after {epochs} epochs ({time.perf_counter() - t0:.1f} s)")

fig, ax = plt.subplots(figsize=(6, 3.5))
for att, acc in curves.items():
    ax.plot(range(1, len(acc) + 1), acc, marker="o", ms=3, label=att)
ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="ResNet-20 on digits, one seed", ylim=(0, 100))
ax.legend(title="attention")
fig.tight_layout()

# %% [markdown]
# ## 4. The same gate inside an AttSolver corrector
#
# A corrector adds a learned term to each coarse step, `y_{n+1} = Φ_h(y_n) + C(y_n, Φ_h(y_n) − y_n)`.
# AttSolver's body is an MLP; with `attention="dia"` its layers become residual layers that
# share **one** DIA unit, its state carried from layer to layer within each call and reset at
# the next (docs/method.md, "Residual body with a shared gate") — the analogue of one unit per
# ResNet stage. No state crosses solver steps, so one-step training applies unchanged, and the
# zero-initialised head makes the untrained corrector exactly the classical solver.

# %%
from attsolver.correctors import AttSolver
from attsolver.data import generate_trajectories

system = attsolver.systems.make_system("lorenz63")
h = 0.1
n_train = 8 if FAST else 16
train = generate_trajectories(system, n_train, t_final=10.0, dt=h, spin_up=10.0, refine=32,
                              noise_level=1e-2, seed=0, progress=False)
test = generate_trajectories(system, 16, t_final=2.5, dt=h, spin_up=10.0, refine=256, seed=123, progress=False)

def rollout_error(corrector=None):
    with torch.no_grad():
        y = attsolver.solve(system, test.y[:, 0], test.t, method="rk4", step_size=h, corrector=corrector)
    y = y.transpose(0, 1)
    return float(((y - test.y).flatten(1).norm(dim=1) / test.y.flatten(1).norm(dim=1)).mean())

untrained = AttSolver(3, method="rk4", step_size=h, attention="dia", depth=3, dtype=torch.float64)
with torch.no_grad():
    same = torch.equal(attsolver.solve(system, test.y[:, 0], test.t, method="rk4", step_size=h),
                       attsolver.solve(system, test.y[:, 0], test.t, method="rk4", step_size=h,
                                       corrector=untrained))
print("untrained corrector == classical RK4:", same)
errors = {"classical RK4": rollout_error()}
print(f"coarse RK4 h={h}: relative L2 error {errors['classical RK4']:.4f}")
for att in ("none", "se", "dia"):
    torch.manual_seed(0)
    model = AttSolver(3, method="rk4", step_size=h, attention=att, depth=3)
    t0 = time.perf_counter()
    attsolver.fit(model, train, epochs=20 if FAST else 60, lr=3e-3, batch_size=128, progress=False, seed=0)
    extra = sum(p.numel() for p in model.gate.parameters()) if model.gate is not None else 0
    errors[f"AttSolver {att}"] = rollout_error(model.double().eval())
    print(f"AttSolver {att:4s} (residual body: {model.residual!s:5s}, gate params {extra:>6,d}): "
          f"error {errors[f'AttSolver {att}']:.4f}  ({time.perf_counter() - t0:.1f} s)")

fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(list(errors), list(errors.values()), color=["0.6"] + ["C0"] * (len(errors) - 1))
ax.set(xlabel=f"mean relative L2 error over t ∈ [0, 2.5] (16 held-out trajectories, h={h})", xlim=(0, None))
ax.invert_yaxis()
fig.tight_layout()

# %% [markdown]
# The full comparison — every module in both domains, with several seeds, one table — is
# `attsolver bench ablation` (`benchmarks/results/ablation.md`, quoted in the README).
