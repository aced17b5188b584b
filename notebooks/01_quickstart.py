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
# # attsolver quick start
#
# 1. solve Lorenz-63 with a classical method and check it against a high-accuracy reference;
# 2. generate a small, noisy training set;
# 3. train an **AttSolver** corrector for a coarse RK4 step;
# 4. compare coarse, corrected and fine solutions on initial conditions the corrector never saw.
#
# Set `ATTSOLVER_FAST=1` for the short version that CI runs.
#
# *Outputs committed here: a full run (without `ATTSOLVER_FAST`).*

# %%
import os, time
import torch
import matplotlib
import matplotlib.pyplot as plt
import attsolver
from attsolver.systems import Lorenz63
from attsolver.data import generate_trajectories

FAST = os.environ.get("ATTSOLVER_FAST") == "1"
torch.set_num_threads(1)
system = Lorenz63()
print(attsolver.list_methods())

# %% [markdown]
# ## 1. Solve
#
# `attsolver.solve(f, y0, t, method=..., step_size=...)` uses torchdiffeq's conventions: batch
# dimensions first, result `[len(t), *y0.shape]`.

# %%
y0 = torch.tensor([[1.0, 1.0, 1.0], [-5.0, 3.0, 20.0]], dtype=torch.float64)
t = torch.linspace(0, 2, 41, dtype=torch.float64)
ref = attsolver.solve(system, y0, t, method="scipy_dop853", options={"rtol": 1e-12, "atol": 1e-12})
for h in (0.01, 0.005):
    y = attsolver.solve(system, y0, t, method="rk4", step_size=h)
    print(f"rk4 h={h}: shape {tuple(y.shape)}, max error {float((y - ref).abs().max()):.2e}")

# %% [markdown]
# ## 2. A small noisy data set
#
# 24 trajectories on the attractor (after a spin-up), observed every 0.1 time units with
# relative noise 1e-3 (`y_obs = y + 1e-3 · s ⊙ ε`, `s` the per-component standard deviation).

# %%
train = generate_trajectories(system, 24, t_final=4.0, dt=0.1, spin_up=5.0,
                              noise_level=1e-3, seed=0, progress=False)
test = generate_trajectories(system, 8, t_final=4.0, dt=0.1, spin_up=5.0, seed=123, progress=False)
print(train.y.shape, "noise level", train.noise_level)

# %% [markdown]
# ## 3. Train an AttSolver corrector for RK4 at h = 0.1
#
# The step is coarse on purpose: RK4's one-step error at h = 0.1 stands well above the
# observation noise, so there is something to learn (at h = 0.05 it is about the noise level,
# and `fit` warns that the targets are noise-dominated).
#
# The corrector is zero-initialised: untrained, it reproduces plain RK4 exactly.

# %%
h = 0.1
model = attsolver.AttSolver(system.state_shape, method="rk4", step_size=h, dtype=torch.float64)
t_test = test.t
y0_test = test.y_true[:, 0]
with torch.no_grad():
    assert torch.equal(attsolver.solve(system, y0_test, t_test, method="rk4", step_size=h, corrector=model),
                       attsolver.solve(system, y0_test, t_test, method="rk4", step_size=h))
start = time.perf_counter()
history = attsolver.fit(model, train, epochs=25 if FAST else 150, lr=3e-3, seed=0, progress=False)
print(f"trained in {time.perf_counter() - start:.1f} s, best epoch {history.best_epoch}")
model.eval();

# %% [markdown]
# ## 4. Coarse vs corrected vs fine on held-out initial conditions

# %%
truth = test.y_true.transpose(0, 1)          # [time, trajectory, 3]

def rel_err(y):
    return ((y - truth).norm(dim=-1) / truth.norm(dim=-1)).mean(dim=1)   # per time

runs = {}
with torch.no_grad():
    for label, kw in {"coarse rk4 h=0.1": dict(step_size=h),
                      "corrected rk4 h=0.1": dict(step_size=h, corrector=model),
                      "fine rk4 h=0.025": dict(step_size=h / 4)}.items():
        start = time.perf_counter()
        y = attsolver.solve(system, y0_test, t_test, method="rk4", **kw)
        runs[label] = (y, time.perf_counter() - start)
horizon = 20  # two time units, about 1.8 Lyapunov times
for label, (y, sec) in runs.items():
    print(f"{label:22s} mean rel. error to t=2: {float(rel_err(y)[:horizon].mean()):.2e}   {sec * 1e3:.1f} ms")
coarse_err = float(rel_err(runs["coarse rk4 h=0.1"][0])[:horizon].mean())
corrected_err = float(rel_err(runs["corrected rk4 h=0.1"][0])[:horizon].mean())
assert corrected_err < coarse_err, "the corrector should beat the coarse solver it was trained for"

# %% [markdown]
# Read the timings as well as the errors.  The corrector makes the coarse step far more
# accurate, but Lorenz-63's right-hand side costs a few microseconds, so the corrector's
# network is more expensive than the extra RK4 steps it saves: here the fine solver at four
# times the steps is both more accurate and about as fast.  Learned correctors pay off when
# `f` is expensive (large systems, PDEs) or the step is limited by something else; the
# benchmark suites measure where that happens, against the best classical alternative.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for label, (y, _) in runs.items():
    axes[0].plot(t_test, y[:, 0, 0], label=label)
    axes[1].semilogy(t_test[1:], rel_err(y)[1:], label=label)
axes[0].plot(t_test, truth[:, 0, 0], "k:", label="reference")
axes[0].set(xlabel="t", ylabel="x", title="one held-out trajectory")
axes[1].set(xlabel="t", ylabel="relative L2 error", title="mean over 8 held-out trajectories")
axes[0].legend(fontsize=8); axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 5. Does it pay? `attsolver.compare`
#
# The timings above are one run each.  `attsolver.compare` asks the question properly: it runs
# the corrected coarse solve and the classical ladders (RK4 at h/k, dopri5 over tolerances) on
# held-out data, times every contender in the steady state (warm-up excluded, interleaved
# rounds), reads off the classical work-precision front the time needed to reach the corrected
# solver's accuracy, and states the speed-up in one line.  Its reference must be far more
# accurate than any contender, so the held-out set here is generated with 256 reference steps
# per output interval.

# %%
from attsolver.evaluate.plots import plot_work_precision

held_out = generate_trajectories(system, 8, t_final=2.0, dt=h, spin_up=5.0, refine=256, seed=321,
                                 progress=False)
result = attsolver.compare(system, data=held_out, corrector=model, rounds=2 if FAST else 5, progress=False)
print(result.verdict_line)
plot_work_precision(result);

# %% [markdown]
# ## Save and reload
#
# A corrector records what it was trained for; `solve` refuses it for another method, step
# or state shape.

# %%
import tempfile, pathlib
path = pathlib.Path(tempfile.mkdtemp()) / "attsolver_lorenz.pt"
model.save(path)
loaded = attsolver.load_corrector(path)
try:
    attsolver.solve(system, y0_test, t_test, method="euler", step_size=h, corrector=loaded)
except ValueError as e:
    print("refused:", e)
