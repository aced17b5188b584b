"""Write the tutorial notebooks from the cell sources below (so they diff as code).

    python notebooks/build_notebooks.py

CI executes them (``make test`` runs pytest with ``--nbmake``) with ATTSOLVER_FAST=1,
which shortens training; run them yourself without it for the full-length version.
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent


def md(text):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text):
    return nbf.v4.new_code_cell(text.strip())


QUICKSTART = [
    md("""
# attsolver quick start

1. solve Lorenz-63 with a classical method and check it against a high-accuracy reference;
2. generate a small, noisy training set;
3. train an **AttSolver** corrector for a coarse RK4 step;
4. compare coarse, corrected and fine solutions on initial conditions the corrector never saw.

Set `ATTSOLVER_FAST=1` for the short version that CI runs.
"""),
    code("""
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
"""),
    md("""
## 1. Solve

`attsolver.solve(f, y0, t, method=..., step_size=...)` uses torchdiffeq's conventions: batch
dimensions first, result `[len(t), *y0.shape]`.
"""),
    code("""
y0 = torch.tensor([[1.0, 1.0, 1.0], [-5.0, 3.0, 20.0]], dtype=torch.float64)
t = torch.linspace(0, 2, 41, dtype=torch.float64)
ref = attsolver.solve(system, y0, t, method="scipy_dop853", options={"rtol": 1e-12, "atol": 1e-12})
for h in (0.01, 0.005):
    y = attsolver.solve(system, y0, t, method="rk4", step_size=h)
    print(f"rk4 h={h}: shape {tuple(y.shape)}, max error {float((y - ref).abs().max()):.2e}")
"""),
    md("""
## 2. A small noisy data set

24 trajectories on the attractor (after a spin-up), observed every 0.05 time units with
relative noise 1e-3 (`y_obs = y + 1e-3 · s ⊙ ε`, `s` the per-component standard deviation).
"""),
    code("""
train = generate_trajectories(system, 24, t_final=4.0, dt=0.05, spin_up=5.0,
                              noise_level=1e-3, seed=0, progress=False)
test = generate_trajectories(system, 8, t_final=4.0, dt=0.05, spin_up=5.0, seed=123, progress=False)
print(train.y.shape, "noise level", train.noise_level)
"""),
    md("""
## 3. Train an AttSolver corrector for RK4 at h = 0.05

The corrector is zero-initialised: untrained, it reproduces plain RK4 exactly.
"""),
    code("""
h = 0.05
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
"""),
    md("## 4. Coarse vs corrected vs fine on held-out initial conditions"),
    code("""
truth = test.y_true.transpose(0, 1)          # [time, trajectory, 3]

def rel_err(y):
    return ((y - truth).norm(dim=-1) / truth.norm(dim=-1)).mean(dim=1)   # per time

runs = {}
with torch.no_grad():
    for label, kw in {"coarse rk4 h=0.05": dict(step_size=h),
                      "corrected rk4 h=0.05": dict(step_size=h, corrector=model),
                      "fine rk4 h=0.0125": dict(step_size=h / 4)}.items():
        start = time.perf_counter()
        y = attsolver.solve(system, y0_test, t_test, method="rk4", **kw)
        runs[label] = (y, time.perf_counter() - start)
horizon = 40  # two time units, about 1.8 Lyapunov times
for label, (y, sec) in runs.items():
    print(f"{label:22s} mean rel. error to t=2: {float(rel_err(y)[:horizon].mean()):.2e}   {sec * 1e3:.1f} ms")
coarse_err = float(rel_err(runs["coarse rk4 h=0.05"][0])[:horizon].mean())
corrected_err = float(rel_err(runs["corrected rk4 h=0.05"][0])[:horizon].mean())
assert corrected_err < coarse_err, "the corrector should beat the coarse solver it was trained for"
"""),
    md("""
Read the timings as well as the errors.  The corrector makes the coarse step far more
accurate, but Lorenz-63's right-hand side costs a few microseconds, so the corrector's
network is more expensive than the extra RK4 steps it saves: here the fine solver at four
times the steps is both more accurate and about as fast.  Learned correctors pay off when
`f` is expensive (large systems, PDEs) or the step is limited by something else; the
benchmark suites measure where that happens, against the best classical alternative.
"""),
    code("""
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for label, (y, _) in runs.items():
    axes[0].plot(t_test, y[:, 0, 0], label=label)
    axes[1].semilogy(t_test[1:], rel_err(y)[1:], label=label)
axes[0].plot(t_test, truth[:, 0, 0], "k:", label="reference")
axes[0].set(xlabel="t", ylabel="x", title="one held-out trajectory")
axes[1].set(xlabel="t", ylabel="relative L2 error", title="mean over 8 held-out trajectories")
axes[0].legend(fontsize=8); axes[1].legend(fontsize=8)
fig.tight_layout()
"""),
    md("""
## Save and reload

A corrector records what it was trained for; `solve` refuses it for another method, step
or state shape.
"""),
    code("""
import tempfile, pathlib
path = pathlib.Path(tempfile.mkdtemp()) / "attsolver_lorenz.pt"
model.save(path)
loaded = attsolver.load_corrector(path)
try:
    attsolver.solve(system, y0_test, t_test, method="euler", step_size=h, corrector=loaded)
except ValueError as e:
    print("refused:", e)
"""),
]

BURGERS = [
    md("""
# Burgers on a coarse grid with a learned convolutional corrector

1. set up a fine pseudo-spectral reference and its restriction to a coarse grid;
2. generate PDEBench-style training data (and write / read PDEBench's HDF5 layout);
3. see how far the classical coarse solver is from the reference, and how finer grids do;
4. train an **AttSolver-conv** corrector (periodic convolutions + a channel gate) and test it
   on held-out fields of the training family and of a family it never saw;
5. look at space-time images, and at what the corrector refuses.

`ATTSOLVER_FAST=1` (what CI runs) uses a 256-point reference and a 32-point coarse grid;
without it, the benchmark's set-up: 1024 and 64 points at PDEBench's smallest viscosity.
"""),
    code("""
import os, time, math, tempfile, pathlib
import torch
import matplotlib.pyplot as plt
import attsolver
from attsolver.correctors import AttSolverConv
from attsolver.data import read_pdebench, write_pdebench
from attsolver.pde_setup import burgers_setup, nrmse

FAST = os.environ.get("ATTSOLVER_FAST") == "1"
torch.set_num_threads(1)
if FAST:
    setup = burgers_setup(pdebench_nu=0.01, fine_nx=256, coarse_nx=32, step_ratio=8)
else:
    setup = burgers_setup(pdebench_nu=0.001)   # fine 1024 points, coarse 64, h = 0.01 and 0.01/32
print(setup)
"""),
    md("""
## 1. Data

`setup.generate` solves on the fine grid with ETDRK4, keeps the Fourier modes the coarse grid
can hold and samples them on the coarse points.  The training family is PDEBench's
(`"pdebench"`: two random sine modes, sometimes windowed or sign-flipped); `"pulses"` (Gaussian
pulses of random sign) is never used for training.
"""),
    code("""
start = time.perf_counter()
train = setup.generate(16 if FAST else 32, 0.5 if FAST else 1.0, seed=0)
tests = {fam: setup.generate(6 if FAST else 16, 0.5 if FAST else 2.0, family=fam, seed=100 + i)
         for i, fam in enumerate(setup.families)}
print(f"{time.perf_counter() - start:.1f} s; training data {tuple(train.y.shape)}, system {train.system}")
"""),
    md("""
PDEBench stores the viscosity as `Nu = pi * nu` (its files solve `u_t + (u^2/2)_x = (Nu/pi) u_xx`).
`write_pdebench` / `read_pdebench` use that layout and convert, so PDEBench's own files can be
read the same way (restrict them to the coarse grid with `attsolver.pde_setup.restrict`).
"""),
    code("""
path = pathlib.Path(tempfile.mkdtemp()) / "burgers_pdebench_layout.hdf5"
write_pdebench(tests["pdebench"], path)
back = read_pdebench(path)
print("Nu in the file:", back.config["pdebench_nu"], "-> nu =", back.system["params"]["nu"], "=", setup.nu)
"""),
    md("## 2. The classical solver on the coarse grid and on finer grids"),
    code("""
test = tests["pdebench"]
truth = test.y.transpose(0, 1)                     # [time, field, x] on the coarse grid

def prolong(u, nx):                                # spectral interpolation onto a finer grid
    return torch.fft.irfft(torch.fft.rfft(u), n=nx) * (nx / u.shape[-1])

def classical(nx, step):
    with torch.no_grad():
        y = setup.coarse_solve(prolong(test.y[:, 0], nx), test.t, nx=nx, step_size=step)
    return attsolver.pde_setup.restrict(y, setup.coarse_nx)

for r in (1, 2, 4):
    nx = setup.coarse_nx * r
    step = setup.coarse_step / r                   # finer grids need smaller steps (CFL)
    start = time.perf_counter()
    y = classical(nx, step)
    print(f"{nx:4d} points, h={step:g}: nRMSE {float(nrmse(y, truth)[1:].mean()):.2e}  "
          f"({time.perf_counter() - start:.2f} s)")
"""),
    md("""
The spectral solver converges very fast as the grid is refined: a 4x finer grid is orders of
magnitude more accurate than the coarse one.  That is the bar a learned coarse solver has to
clear (see `benchmarks/results/pde.md` for the measured comparison).

## 3. Train AttSolver-conv

Untrained, the corrector returns exactly zero.  `fit` trains it on one-step residuals; a short
second phase trains through `solve` on 4-step windows.
"""),
    code("""
torch.manual_seed(0)
model = AttSolverConv.for_system(setup.coarse_system(), method="etdrk4", step_size=setup.coarse_step,
                                 dtype=torch.float64)
print(sum(p.numel() for p in model.parameters()), "parameters, receptive field", model.receptive_field, "points")
assert torch.equal(model(None, test.y[:, 0], test.y[:, 0], setup.coarse_step), torch.zeros_like(test.y[:, 0]))
start = time.perf_counter()
attsolver.fit(model, train, epochs=30, lr=3e-3, batch_size=64 if FAST else 128, seed=0, progress=False)
if not FAST:
    attsolver.fit(model, train, epochs=5, lr=1e-3, batch_size=64, rollout_steps=4, seed=0, progress=False)
print(f"trained in {time.perf_counter() - start:.1f} s")
"""),
    code("""
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
results = {}
for ax, (fam, data) in zip(axes, tests.items()):
    truth_f = data.y.transpose(0, 1)
    with torch.no_grad():
        coarse = setup.coarse_solve(data.y[:, 0], data.t)
        corrected = setup.coarse_solve(data.y[:, 0], data.t, corrector=model)
    for label, y in (("coarse ETDRK4", coarse), ("AttSolver-conv", corrected)):
        e = nrmse(y, truth_f).mean(dim=1)
        results[(fam, label)] = float(e[1:].mean())
        ax.semilogy(data.t[1:], e[1:], label=label)
    ax.set(xlabel="t", ylabel="nRMSE", title=f"{fam} initial conditions" + ("" if fam == "pdebench" else " (never seen)"))
    ax.legend()
fig.tight_layout()
for k, v in results.items():
    print(f"{k[0]:9s} {k[1]:15s} nRMSE {v:.3e}")
assert results[("pdebench", "AttSolver-conv")] < results[("pdebench", "coarse ETDRK4")]
"""),
    code("""
with torch.no_grad():
    one = test.y[:1, 0]
    coarse = setup.coarse_solve(one, test.t)[:, 0]
    corrected = setup.coarse_solve(one, test.t, corrector=model)[:, 0]
fine = test.y[0]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
extent = [0, setup.length, float(test.t[-1]), 0]
for ax, (title, field) in zip(axes, [("fine reference (restricted)", fine), ("coarse ETDRK4", coarse),
                                     ("corrected", corrected)]):
    ax.imshow(field.numpy(), aspect="auto", extent=extent, cmap="RdBu_r", vmin=-fine.abs().max(), vmax=fine.abs().max())
    ax.set(title=title, xlabel="x")
axes[0].set_ylabel("t")
fig.tight_layout()
"""),
    md("""
## 4. What the corrector refuses

The convolutions run at any grid size and commute with shifts, but the stencils were learned
for one grid spacing: on another grid `solve` refuses the model unless you allow it.
"""),
    code("""
shift = 5
c = model(None, test.y[:, 3], test.y[:, 3] * 0, setup.coarse_step)
c_rolled = model(None, test.y[:, 3].roll(shift, -1), test.y[:, 3] * 0, setup.coarse_step)
print("equivariant:", torch.allclose(c_rolled, c.roll(shift, -1), atol=1e-12))
finer = prolong(test.y[:, 0], 2 * setup.coarse_nx)
try:
    setup.coarse_solve(finer, test.t, corrector=model)
except ValueError as e:
    print("refused:", str(e)[:160], "...")
"""),
]


ATTENTION = [
    md("""
# Attention modules: one gate, two domains

The "residual network = dynamical system" view, seen from the vision side:

1. the attention modules of `attsolver.nn` — SE, IEBN's gate and the DIA unit (a modified LSTM
   shared by the blocks of a stage) — on feature vectors `[B, C]` and feature maps `[B, C, H, W]`;
2. parameter counts of the CIFAR ResNet-164 variants against the published table;
3. a few epochs of ResNet-20 on scikit-learn's 8x8 digits with and without attention;
4. the same gates inside an **AttSolver** corrector for a coarse Lorenz-63 step.

Set `ATTSOLVER_FAST=1` for the short version that CI runs (under a minute).
"""),
    code("""
import os, time
import torch
import attsolver
from attsolver.nn import list_attention, make_attention, SqueezeExcitation, IEBatchNorm

FAST = os.environ.get("ATTSOLVER_FAST") == "1"
torch.set_num_threads(1)
torch.manual_seed(0)
print("gates:", list_attention())
"""),
    md("""
## 1. The modules on vectors and on maps

A gate maps its input to `a ∈ (0, 1)` per sample and channel, shaped to broadcast against the
input: `[B, C]` stays `[B, C]`, a map `[B, C, H, W]` is pooled (global average) and gives
`[B, C, 1, 1]`. The DIA unit is *stateful*: `forward(x, state)` returns the gate and the new
LSTM state `(h, c)`; a ResNet stage calls the same unit once per block, carrying the state.
"""),
    code("""
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
    print(f"block {block}: mean gate {float(a.mean()):.4f}")

# the layers built on the gates
print(SqueezeExcitation(16, reduction=4)(maps).shape, IEBatchNorm(16)(maps).shape)
"""),
    md("""
## 2. ResNet-164 parameter counts against the published table

DIANet (arXiv 1905.10671) reports, on CIFAR-100: ResNet-164 1.73M, SE-ResNet-164 1.93M,
DIA-ResNet-164 1.95M. SE is one module per block (reduction 16); DIA one unit per stage,
shared (reduction 4), so its cost does not grow with the depth.
"""),
    code("""
from attsolver.vision import count_parameters, make_model

published = {"none": 1.73, "se": 1.93, "dia": 1.95}
for att in ("none", "se", "shared_se", "dia", "iebn"):
    n = count_parameters(make_model("resnet164", num_classes=100, attention=att))
    ref = published.get(att)
    print(f"{att:10s} {n:>10,d} = {n / 1e6:.2f}M" + (f"   published {ref}M" if ref else ""))
"""),
    md("""
## 3. A few epochs on digits

ResNet-20 (basic blocks, 16/32/64 channels) on the 8x8 digits that ship with scikit-learn:
SGD 0.9, lr 0.1 with step decay, crop augmentation. The committed benchmark
(`attsolver bench vision`, `benchmarks/results/vision.md`) runs 24 epochs and 5 seeds per
module; here one seed and a few epochs, so differences are not significant.
"""),
    code("""
from attsolver.vision import CifarResNet, load_digits, train_classifier

data = load_digits()
epochs = 6 if FAST else 24
choices = ("none", "dia") if FAST else ("none", "se", "shared_se", "dia", "iebn")
for att in choices:
    torch.manual_seed(0)
    model = CifarResNet(20, data.num_classes, in_channels=data.in_channels, attention=att, reduction=4)
    t0 = time.perf_counter()
    hist = train_classifier(model, data, epochs=epochs, batch_size=128, seed=0, progress=False)
    print(f"{att:10s} {count_parameters(model):>8,d} params: test accuracy {100 * hist.final_test_acc:.2f}% "
          f"after {epochs} epochs ({time.perf_counter() - t0:.1f} s)")
"""),
    md("""
## 4. The same gate inside an AttSolver corrector

A corrector adds a learned term to each coarse step, `y_{n+1} = Φ_h(y_n) + C(y_n, Φ_h(y_n) − y_n)`.
AttSolver's body is an MLP; with `attention="dia"` its layers become residual layers that
share **one** DIA unit, its state carried from layer to layer within each call and reset at
the next (docs/method.md, "Residual body with a shared gate") — the analogue of one unit per
ResNet stage. No state crosses solver steps, so one-step training applies unchanged, and the
zero-initialised head makes the untrained corrector exactly the classical solver.
"""),
    code("""
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
print(f"coarse RK4 h={h}: relative L2 error {rollout_error():.4f}")
for att in ("none", "se", "dia"):
    torch.manual_seed(0)
    model = AttSolver(3, method="rk4", step_size=h, attention=att, depth=3)
    t0 = time.perf_counter()
    attsolver.fit(model, train, epochs=20 if FAST else 60, lr=3e-3, batch_size=128, progress=False, seed=0)
    extra = sum(p.numel() for p in model.gate.parameters()) if model.gate is not None else 0
    print(f"AttSolver {att:4s} (residual body: {model.residual!s:5s}, gate params {extra:>6,d}): "
          f"error {rollout_error(model.double().eval()):.4f}  ({time.perf_counter() - t0:.1f} s)")
"""),
    md("""
The full comparison — every module in both domains, with several seeds, one table — is
`attsolver bench ablation` (`benchmarks/results/ablation.md`, quoted in the README).
"""),
]


def _extra_notebooks():
    """Notebooks whose cells live in their own ``notebooks/cells_*.py`` (one per subpackage).

    Each such module defines ``NAME`` (the .ipynb file name) and ``CELLS``, a list of
    ``("md" | "code", source)`` pairs.
    """
    import importlib.util

    out = []
    for path in sorted(HERE.glob("cells_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        cells = []
        for kind, source in mod.CELLS:
            if kind not in ("md", "code"):
                raise ValueError(f"{path.name}: cell kind must be 'md' or 'code', got {kind!r}")
            cells.append(md(source) if kind == "md" else code(source))
        out.append((mod.NAME, cells))
    return out


def notebooks():
    """Every tutorial notebook as (file name, cells), in the order of their numbers."""
    built_in = [("01_quickstart.ipynb", QUICKSTART), ("02_burgers.ipynb", BURGERS),
                ("03_attention_modules.ipynb", ATTENTION)]
    return sorted(built_in + _extra_notebooks())


def main():
    for name, cells in notebooks():
        nb = nbf.v4.new_notebook()
        nb.cells = cells
        for i, cell in enumerate(cells):  # stable ids: a rebuild changes only what changed
            cell.id = f"{name[:2]}-cell-{i:02d}"
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbf.write(nb, HERE / name)


if __name__ == "__main__":
    main()
