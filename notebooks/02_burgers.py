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
# # Burgers on a coarse grid with a learned convolutional corrector
#
# 1. set up a fine pseudo-spectral reference and its restriction to a coarse grid;
# 2. generate PDEBench-style training data (and write / read PDEBench's HDF5 layout);
# 3. see how far the classical coarse solver is from the reference, and how finer grids do;
# 4. train an **AttSolver-conv** corrector (periodic convolutions + a channel gate) and test it
#    on held-out fields of the training family and of a family it never saw;
# 5. look at space-time images, and at what the corrector refuses.
#
# `ATTSOLVER_FAST=1` (what CI runs) uses a 256-point reference and a 32-point coarse grid;
# without it, the benchmark's set-up: 1024 and 64 points at PDEBench's smallest viscosity.
#
# *Outputs committed here: a full run (without `ATTSOLVER_FAST`).*

# %%
import warnings
# executed headless (jupytext --execute) without ipywidgets: tqdm's notebook bar falls back to
# the text bar and says so on import; the fallback is what we want
warnings.filterwarnings("ignore", message="IProgress not found")
import os, time, math, tempfile, pathlib
import torch
import matplotlib.pyplot as plt
import attsolver
from attsolver.correctors import AttSolverConv
from attsolver.data import read_pdebench, write_pdebench
from attsolver.data.coarse_fine import burgers_setup
from attsolver.evaluate.metrics import nrmse
from attsolver.systems.grid import prolong, restrict

FAST = os.environ.get("ATTSOLVER_FAST") == "1"
torch.set_num_threads(1)
if FAST:
    setup = burgers_setup(pdebench_nu=0.01, fine_nx=256, coarse_nx=32, step_ratio=8)
else:
    setup = burgers_setup(pdebench_nu=0.001)   # fine 1024 points, coarse 64, h = 0.01 and 0.01/32
print(setup)

# %% [markdown]
# ## 1. Data
#
# `setup.generate` solves on the fine grid with ETDRK4, keeps the Fourier modes the coarse grid
# can hold and samples them on the coarse points.  The training family is PDEBench's
# (`"pdebench"`: two random sine modes, sometimes windowed or sign-flipped); `"pulses"` (Gaussian
# pulses of random sign) is never used for training.

# %%
start = time.perf_counter()
train = setup.generate(16 if FAST else 32, 0.5 if FAST else 1.0, seed=0)
tests = {fam: setup.generate(6 if FAST else 16, 0.5 if FAST else 2.0, family=fam, seed=100 + i)
         for i, fam in enumerate(setup.families)}
print(f"{time.perf_counter() - start:.1f} s; training data {tuple(train.y.shape)}, system {train.system}")

# %% [markdown]
# PDEBench stores the viscosity as `Nu = pi * nu` (its files solve `u_t + (u^2/2)_x = (Nu/pi) u_xx`).
# `write_pdebench` / `read_pdebench` use that layout and convert, so PDEBench's own files can be
# read the same way (restrict them to the coarse grid with `attsolver.systems.grid.restrict`).

# %%
path = pathlib.Path(tempfile.mkdtemp()) / "burgers_pdebench_layout.hdf5"
write_pdebench(tests["pdebench"], path)
back = read_pdebench(path)
print("Nu in the file:", back.config["pdebench_nu"], "-> nu =", back.system["params"]["nu"], "=", setup.nu)

# %% [markdown]
# ## 2. The classical solver on the coarse grid and on finer grids

# %%
test = tests["pdebench"]
truth = test.y.transpose(0, 1)                     # [time, field, x] on the coarse grid

def classical(nx, step):
    with torch.no_grad():
        y = setup.coarse_solve(prolong(test.y[:, 0], nx), test.t, nx=nx, step_size=step)
    return restrict(y, setup.coarse_nx)

for r in (1, 2, 4):
    nx = setup.coarse_nx * r
    step = setup.coarse_step / r                   # finer grids need smaller steps (CFL)
    start = time.perf_counter()
    y = classical(nx, step)
    print(f"{nx:4d} points, h={step:g}: nRMSE {float(nrmse(y, truth, reduce='none')[1:].mean()):.2e}  "
          f"({time.perf_counter() - start:.2f} s)")

# %% [markdown]
# The spectral solver converges very fast as the grid is refined: a 4x finer grid is orders of
# magnitude more accurate than the coarse one.  That is the bar a learned coarse solver has to
# clear (see `benchmarks/results/pde.md` for the measured comparison).
#
# ## 3. Train AttSolver-conv
#
# Untrained, the corrector returns exactly zero.  `fit` trains it on one-step residuals; a short
# second phase trains through `solve` on 4-step windows.

# %%
torch.manual_seed(0)
model = AttSolverConv.for_system(setup.coarse_system(), method="etdrk4", step_size=setup.coarse_step,
                                 dtype=torch.float64)
print(sum(p.numel() for p in model.parameters()), "parameters, receptive field", model.receptive_field, "points")
assert torch.equal(model(None, test.y[:, 0], test.y[:, 0], setup.coarse_step), torch.zeros_like(test.y[:, 0]))
start = time.perf_counter()
# fit's end-of-fit check is printed below with its numbers (history.summary()); raised as a
# Python warning it would print only its verdict, under this kernel's temporary file name.
# Here it flags the first step, where the corrector is worse than an almost exact classical
# step, while from a quarter of the horizon on the corrected solve is the more accurate one.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", attsolver.FitCheckWarning)
    history = attsolver.fit(model, train, epochs=30, lr=3e-3, batch_size=64 if FAST else 128, seed=0,
                            progress=False)
    if not FAST:
        history = attsolver.fit(model, train, epochs=5, lr=1e-3, batch_size=64, rollout_steps=4, seed=0,
                                progress=False)
print(f"trained in {time.perf_counter() - start:.1f} s")
print(history.summary())

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
results = {}
for ax, (fam, data) in zip(axes, tests.items()):
    truth_f = data.y.transpose(0, 1)
    with torch.no_grad():
        coarse = setup.coarse_solve(data.y[:, 0], data.t)
        corrected = setup.coarse_solve(data.y[:, 0], data.t, corrector=model)
    for label, y in (("coarse ETDRK4", coarse), ("AttSolver-conv", corrected)):
        e = nrmse(y, truth_f, reduce="none").mean(dim=1)
        results[(fam, label)] = float(e[1:].mean())
        ax.semilogy(data.t[1:], e[1:], label=label)
    ax.set(xlabel="t", ylabel="nRMSE", title=f"{fam} initial conditions" + ("" if fam == "pdebench" else " (never seen)"))
    ax.legend()
fig.tight_layout()
for k, v in results.items():
    print(f"{k[0]:9s} {k[1]:15s} nRMSE {v:.3e}")
assert results[("pdebench", "AttSolver-conv")] < results[("pdebench", "coarse ETDRK4")]

# %%
with torch.no_grad():
    one = test.y[:1, 0]
    coarse = setup.coarse_solve(one, test.t)[:, 0]
    corrected = setup.coarse_solve(one, test.t, corrector=model)[:, 0]
fine = test.y[0]
fig, axes = plt.subplots(2, 3, figsize=(13, 7), layout="constrained")
extent = [0, setup.length, float(test.t[-1]), 0]
vmax = float(fine.abs().max())
for ax, (title, field) in zip(axes[0], [("fine reference (restricted)", fine), ("coarse ETDRK4", coarse),
                                        ("corrected", corrected)]):
    im = ax.imshow(field.numpy(), aspect="auto", extent=extent, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set(title=title, xlabel="x", ylabel="t")
fig.colorbar(im, ax=axes[0].tolist(), label="u(x, t)")
err_coarse, err_corrected = (coarse - fine).abs(), (corrected - fine).abs()
emax = float(torch.maximum(err_coarse.max(), err_corrected.max()))
axes[1, 0].plot(test.t, (err_coarse.pow(2).mean(-1).sqrt() / fine.pow(2).mean(-1).sqrt()).numpy(), label="coarse")
axes[1, 0].plot(test.t, (err_corrected.pow(2).mean(-1).sqrt() / fine.pow(2).mean(-1).sqrt()).numpy(), label="corrected")
axes[1, 0].set(title="nRMSE over time (this trajectory)", xlabel="t", ylabel="nRMSE", yscale="log")
axes[1, 0].legend()
for ax, (title, err) in zip(axes[1, 1:], [("|coarse − fine|", err_coarse), ("|corrected − fine|", err_corrected)]):
    im_err = ax.imshow(err.numpy(), aspect="auto", extent=extent, cmap="magma", vmin=0, vmax=emax)
    ax.set(title=title, xlabel="x", ylabel="t")
fig.colorbar(im_err, ax=axes[1, 1:].tolist(), label="absolute error")
plt.show()

# %% [markdown]
# ## 4. What the corrector refuses
#
# The convolutions run at any grid size and commute with shifts, but the stencils were learned
# for one grid spacing: on another grid `solve` refuses the model unless you allow it.

# %%
shift = 5
c = model(None, test.y[:, 3], test.y[:, 3] * 0, setup.coarse_step)
c_rolled = model(None, test.y[:, 3].roll(shift, -1), test.y[:, 3] * 0, setup.coarse_step)
print("equivariant:", torch.allclose(c_rolled, c.roll(shift, -1), atol=1e-12))
finer = prolong(test.y[:, 0], 2 * setup.coarse_nx)
try:
    setup.coarse_solve(finer, test.t, corrector=model)
except ValueError as e:
    print("refused:", str(e)[:160], "...")
