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
# # Latent classifier guidance
#
# A DDPM on the latent codes of a frozen generator, time-conditioned latent classifiers, and
# classifier-guided **generation** and **sequential editing** (2304.12536), compared with latent
# arithmetic (InterFaceGAN).  The generator is an offline stand-in for StyleGAN: a small VAE
# on procedurally rendered shapes whose attributes are known exactly, so an independent
# image classifier can check every result against the truth.
#
# Set `ATTSOLVER_FAST=1` for the short version that CI runs (smaller, under-trained models and
# fewer steps: expect rougher samples and lower accuracies than the benchmark's).
#
# *Outputs committed here: a full run (without `ATTSOLVER_FAST`).*

# %%
import os, time
import torch
import matplotlib.pyplot as plt
from attsolver.guidance import (LatentDDPM, LatentGuidance, LogisticDirections, NoiseSchedule,
                                TimeLatentClassifier, attribute_agreement, sequential_arithmetic,
                                train_ddpm, train_latent_classifier)
from attsolver.guidance.shapes import ATTRIBUTES, CLASS_NAMES, build_shapes_demo, make_shapes

FAST = os.environ.get("ATTSOLVER_FAST") == "1"
torch.set_num_threads(1)
t_start = time.perf_counter()

# %% [markdown]
# ## 1. The generator and its latent space
#
# `build_shapes_demo` renders images, trains the VAE and the independent judge (a CNN trained on
# *other* rendered images).  The latent space is a `LatentSpace(dim, decode, encode)` — the only
# thing the guidance code sees.  A StyleGAN's W space plugs in the same way (see
# `docs/guidance.md`).

# %%
demo = build_shapes_demo(n_train=3000 if FAST else 6000, vae_epochs=6 if FAST else 16,
                         judge_steps=300 if FAST else 800, seed=0)
space = demo.space
print(space, "latents:", tuple(demo.z_train.shape))
x, lab = make_shapes(8, seed=7)
fig, ax = plt.subplots(2, 8, figsize=(8, 2.2))
for i in range(8):
    ax[0, i].imshow(x[i, 0], cmap="gray", vmin=0, vmax=1); ax[0, i].axis("off")
    ax[1, i].imshow(space.decode(space.encode(x[i:i + 1]))[0, 0], cmap="gray", vmin=0, vmax=1); ax[1, i].axis("off")
ax[0, 0].set_title("real / VAE reconstruction", loc="left", fontsize=8)
plt.show()

# %% [markdown]
# ## 2. Latent DDPM and time-conditioned latent classifiers
#
# The DDPM is an MLP ε-predictor with a sinusoidal time embedding on a linear schedule; the
# classifier has one head per attribute and is trained on noised latents `z_t ~ q(z_t | z_0)`.
# The linear schedule is used on purpose: the cosine schedule's clipped last step (ᾱ ≈ 2e-9)
# amplifies the ε-model's errors in DDIM's first step (see `docs/guidance.md`).

# %%
schedule = NoiseSchedule.linear(1000)
ddpm = LatentDDPM(space.dim, schedule, hidden=128, depth=2)
losses = train_ddpm(ddpm, demo.z_train, steps=1500 if FAST else 3000)
clf = TimeLatentClassifier(space.dim, ATTRIBUTES, hidden=128, depth=2)
closs = train_latent_classifier(clf, schedule, demo.z_train, demo.labels_train, steps=800 if FAST else 2000)
lin = LogisticDirections(ATTRIBUTES).fit(demo.z_train, demo.labels_train)
print(f"DDPM loss {sum(losses[-50:]) / 50:.3f}, classifier loss {sum(closs[-50:]) / 50:.3f}")
lcg = LatentGuidance(ddpm, clf, space)

# %% [markdown]
# ## 3. Guided generation
#
# `generate(n, targets, scales)` runs DDIM with
# ε̂ = ε_θ − √(1−ᾱ_t) Σ_k λ_k ∇ log p(c_k | z_t, t).  The judge checks the decoded images.

# %%
n = 8
targets = {"shape": 1, "size": 1, "position": 0, "fill": 1}   # large outlined circle on the left
z = lcg.generate(n, targets, scales=2.0, steps=30 if FAST else 50, generator=torch.Generator().manual_seed(0))
imgs = space.decode(z)
print("judge agreement with the targets:",
      attribute_agreement(demo.judge.predict(imgs), {k: torch.full((n,), v) for k, v in targets.items()}))
fig, ax = plt.subplots(1, n, figsize=(8, 1.2))
for i in range(n):
    ax[i].imshow(imgs[i, 0], cmap="gray", vmin=0, vmax=1); ax[i].axis("off")
plt.show()

# %% [markdown]
# ## 4. Sequential editing of real images
#
# Encode, invert with DDIM to t₀, denoise with guidance — one attribute after another.  The
# preservation terms (source pull λ_s, hold-the-other-attributes λ_h) can each be switched off;
# latent arithmetic is the linear baseline.

# %%
x_src, lab_src = make_shapes(4, seed=11)
z_src = space.encode(x_src)
edits = [("shape", (lab_src["shape"] + 1) % 3), ("size", 1 - lab_src["size"]), ("fill", 1 - lab_src["fill"])]
kw = dict(t0=500, steps=15 if FAST else 25)
runs = {
    "LCG + preservation": lcg.edit_sequential(z_src, edits, 10.0, source_scale=0.05, hold_scale=5.0, **kw),
    "LCG, none": lcg.edit_sequential(z_src, edits, 10.0, **kw),
    "latent arithmetic": sequential_arithmetic(lin, z_src, edits),
}
fig, ax = plt.subplots(len(runs) * 4, 1 + len(edits), figsize=(4, 10))
for r, (name, zs) in enumerate(runs.items()):
    for i in range(4):
        row = [space.decode(z_src[i:i + 1])] + [space.decode(z[i:i + 1]) for z in zs]
        for j, img in enumerate(row):
            a = ax[r * 4 + i, j]; a.imshow(img[0, 0], cmap="gray", vmin=0, vmax=1); a.set_xticks([]); a.set_yticks([])
        ax[r * 4 + i, 0].set_ylabel(name if i == 0 else "", fontsize=6)
for j, (a, _) in enumerate(edits):
    ax[0, j + 1].set_title("+" + a, fontsize=8)
plt.tight_layout(); plt.show()
for name, zs in runs.items():
    pred = demo.judge.predict(space.decode(zs[-1]))
    ok = torch.stack([pred[a] == t for a, t in edits]).float().mean()
    kept = (pred["position"] == lab_src["position"]).float().mean()
    print(f"{name:22s} edited attributes right: {100 * ok:.0f}%   position kept: {100 * kept:.0f}%")
print(f"total {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# The benchmark (`attsolver bench guidance`) runs this at full size over several seeds; its
# results are in `benchmarks/results/guidance.md`.
