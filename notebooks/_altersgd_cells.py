"""The AlterSGD half of notebooks/06_pruning_and_altersgd.ipynb (appended by
cells_06_pruning_and_altersgd.py).  Self-contained: its own imports; ATTSOLVER_FAST=1 keeps
it to a few seconds."""

ALTERSGD_CELLS = [
    ("md", """
# Part 2 — AlterSGD: alternating descent and ascent for flat minima

AlterSGD (arXiv 2107.05804) trains with plain SGD until the training loss "tends to
converge", then alternates a descent step and an ascent step.  Why that flattens: a pair
with equal rates η at `w` and `w − η g(w)` moves the weights by

    Δ = −η g(w) + η g(w − η g(w)) = −η² H g + O(η³) = −η² ∇(½‖∇L‖²) + O(η³),

a gradient step of size η² on the squared gradient norm.  To leading order the loss
changes by −η² gᵀHg and ½‖∇L‖² by −η² ‖Hg‖².  `attsolver.optim` has `AlterSGD`, a
minimal `SAM` to compare with, and `perturbed_loss_increase`, a flatness measure.
"""),
    ("code", """
import math, os, time
import torch
from torch.nn import functional as F
from attsolver.optim import AlterSGD, SAM, perturbed_loss_increase

FAST = os.environ.get("ATTSOLVER_FAST") == "1"
torch.set_num_threads(1)
torch.manual_seed(0)
"""),
    ("md", """
## 1. The pair, checked numerically

On a smooth non-quadratic function, one descent/ascent pair divided by η² approaches
`−H g` (autograd's Hessian-vector product) as η shrinks; the error falls like η.
"""),
    ("code", """
def f(w):
    return torch.log(torch.cosh(3 * w[0] - w[1])) + 0.25 * (w ** 4).sum() + 0.5 * w[0] * w[1] ** 2

w0 = torch.tensor([0.8, -0.6], dtype=torch.float64)
w = w0.clone().requires_grad_(True)
g = torch.autograd.grad(f(w), w, create_graph=True)[0]
hg = torch.autograd.grad(g, w, grad_outputs=g.detach())[0]
for eta in (1e-2, 1e-3, 1e-4):
    v = w0.clone().requires_grad_(True)
    opt = AlterSGD([v], lr=eta, trigger="manual")
    opt.start_alternating()                       # descent first, then ascent
    for _ in range(2):
        def closure():
            opt.zero_grad(); loss = f(v); loss.backward(); return loss
        opt.step(closure)
    rel = float(((v.detach() - w0) / eta ** 2 + hg).norm() / hg.norm())
    print(f"eta={eta:g}: |pair/eta^2 + Hg| / |Hg| = {rel:.2e}")
"""),
    ("md", """
## 2. The trigger

Losses are averaged over windows of `window` observations; a window *improves* when its
mean falls below `best − max(rel_tol·best, abs_tol)`.  After `patience` windows without
improvement the optimizer alternates, until `reset_trigger()` (a new task).  The loss
reaches the optimizer through `step(closure)` (the closure returns it) or `observe(loss)`.
The trigger state travels with `state_dict()`.
"""),
    ("code", """
p = torch.zeros(1, requires_grad=True)
opt = AlterSGD([p], lr=0.1, window=3, rel_tol=0.1, patience=2)
scripted = [10, 10, 10, 8, 8, 8, 7.5, 7.5, 7.5, 7.4, 7.4, 7.4]   # window means 10, 8, 7.5, 7.4
for i, loss in enumerate(scripted):
    if opt.observe(loss):
        print(f"fired on loss #{i + 1}; window means {opt.window_means}")
        break
state = opt.state_dict()["altersgd"]
print({k: state[k] for k in ("alternating", "next_is_ascent", "best", "bad_windows")})
try:
    AlterSGD([p], lr=-0.1)
except ValueError as e:
    print("ValueError:", e)
"""),
    ("md", """
## 3. A small continual-learning run

Permuted digits (domain-incremental): every task is all ten digits under its own pixel
permutation; an MLP learns the tasks one after the other with SGD, AlterSGD or SAM (same
lr, momentum and epochs; AlterSGD's window is half an epoch here, so that it fires within
the short fast-mode tasks).  After each task: average accuracy over the tasks so far and
forgetting (best earlier accuracy minus current, averaged over the earlier tasks).  One
seed here; the committed benchmark (`attsolver bench continual`,
`benchmarks/results/continual.md`) runs both variants with ten seeds.
"""),
    ("code", """
from sklearn.datasets import load_digits

d = load_digits()
x = torch.tensor(d.data, dtype=torch.float32)
x = (x - x.mean()) / x.std()
y = torch.tensor(d.target)
g = torch.Generator().manual_seed(0)
idx = torch.randperm(len(y), generator=g)
tr, te = idx[:1400], idx[1400:]
n_tasks, epochs = (3, 6) if FAST else (5, 10)
perms = [torch.randperm(64, generator=g) for _ in range(n_tasks)]

def make(method, model, steps):
    common = dict(lr=0.02, momentum=0.9)
    if method == "sgd":
        return torch.optim.SGD(model.parameters(), **common)
    if method == "altersgd":
        return AlterSGD(model.parameters(), **common, window=steps // 2, rel_tol=0.05, abs_tol=0.02, patience=2)
    return SAM(model.parameters(), rho=0.05, **common)

def run(method, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 10))
    bs, steps = 32, math.ceil(len(tr) / 32)
    opt = make(method, model, steps)
    order_g = torch.Generator().manual_seed(seed)
    acc, fired = [], []
    for k, perm in enumerate(perms):
        if isinstance(opt, AlterSGD):
            opt.reset_trigger()
        for _ in range(epochs):
            order = tr[torch.randperm(len(tr), generator=order_g)]
            for s in range(steps):
                b = order[s * bs:(s + 1) * bs]
                def closure():
                    opt.zero_grad()
                    loss = F.cross_entropy(model(x[b][:, perm]), y[b])
                    loss.backward()
                    return loss
                opt.step(closure)
        fired.append(getattr(opt, "trigger_step", None))
        with torch.no_grad():
            acc.append([float((model(x[te][:, p]).argmax(1) == y[te]).float().mean()) for p in perms])
    xb, yb = x[tr][:512][:, perms[-1]], y[tr][:512]
    flat = perturbed_loss_increase(model, lambda m: F.cross_entropy(m(xb), yb), [0.1], samples=8)[0.1]
    return acc, fired, flat

for method in ("sgd", "altersgd", "sam"):
    t0 = time.perf_counter()
    acc, fired, flat = run(method)
    T = len(acc)
    avg = sum(acc[-1][:T]) / T
    forget = sum(max(acc[l][j] for l in range(j, T - 1)) - acc[-1][j] for j in range(T - 1)) / (T - 1)
    extra = f", trigger fired at step {fired}" if method == "altersgd" else ""
    print(f"{method:8s} average accuracy {100 * avg:5.1f}%  forgetting {100 * forget:5.1f} pp  "
          f"flatness (dL at r=0.1) {flat:.2e}  ({time.perf_counter() - t0:.1f} s{extra})")
"""),
    ("md", """
One seed and a few epochs decide nothing; see `benchmarks/results/continual.md` for the
measured comparison over ten seeds (paired against SGD), including where AlterSGD does not
reduce forgetting.  The derivation and the design choices (ascent without momentum,
weight decay on every step) are in `docs/altersgd.md`.
"""),
]
