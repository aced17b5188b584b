"""The expensive-vector-field case: solving a trained neural ODE, classical vs corrected.

When ``f`` is itself a neural network, one evaluation of ``f`` can cost far more than a
small corrector, and a corrected low-order step may beat RK4 at equal accuracy (Poli et al.
2020, hypersolvers).  This suite measures it, start to finish, in one run, on two problems:

* ``lorenz96``: ``f_theta: R^40 -> R^40`` (MLP 40 -> 512 -> 512 -> 40, tanh, 304k
  parameters) fitted to Lorenz-96 (N = 40, F = 8); 64 held-out attractor states, T = 1,
  outputs every 0.1.
* ``vdp``: ``f_theta: R^2 -> R^2`` (MLP 2 -> 544 -> 544 -> 2, tanh, 299k parameters)
  fitted to the Van der Pol oscillator (mu = 1) — the low-dimensional neural ODE of the
  tutorials, whose corrector input is small while ``f`` is expensive; 256 states, T = 5
  (about three quarters of the Van der Pol period), outputs every 0.5.  Every step, classical or
  corrected, must land on the output times, so the output interval caps the steps: on the
  finer grid of the first problem even the cheapest RK4 run is already accurate.

The protocol, the same for both:

1. **The neural ODE** ``f_theta`` is fitted by derivative matching on generated states
   (nothing is downloaded).  From then on it is the problem: only its own flow matters.
2. **The problem.**  ``y' = f_theta(y)`` from held-out states, outputs up to ``T``;
   the reference is dopri5 at rtol 1e-10 of the same network in float64.  Every contender
   runs in float32 (a neural-ODE user's precision).  Error: relative L2 over the outputs
   of each trajectory, mean over the batch.
3. **Classical contenders.**  Euler, midpoint and RK4 over step refinements; dopri5 over
   tolerances — all with the same ``f_theta``.
4. **Corrected contenders** (the hypersolver protocol): Euler and midpoint at several base
   steps ``h``, corrected by each dense corrector family (NeurVec, Hypersolver, AttSolver)
   trained with :func:`attsolver.fit` on one-step targets ``y(t+h) - Phi_h(y(t))`` of the
   neural ODE itself: states sampled on trajectories of ``f_theta`` (from other initial
   states than the test set's), one accurate reference step each (RK4 with ``h/8``
   substeps, float64).  Training is a one-off cost, reported apart (as in Poli et al. 2020).
   The local correctors do not apply: ``f_theta`` couples every component.
5. **torchdyn's HyperEuler** (``torchdyn.numerics.HyperEuler``, the hypersolver's reference
   implementation): ``x + h f(x) + h^2 g(t, x)`` with a hypernet ``g`` of the Hypersolver's
   size (two hidden layers of 64, tanh) trained on the same targets, solved with
   ``torchdyn.numerics.odeint``.  torchdyn 1.0.6's metadata pulls torchvision and
   pytorch-lightning, which this project must not install; its numerics need neither::

       pip install --no-deps -c requirements/constraints.txt -r requirements/torchdyn.txt

   (torchdyn, torchcde, torchsde, trampoline; see that file).  Without torchdyn the
   contender is skipped with a note.
6. **Equal accuracy.**  Each corrected solver's error is located on the classical runs
   (log-log interpolation, :func:`attsolver.evaluate.metrics.cost_at_accuracy`, the lowest of the
   Pareto front of all of them and each method's own ladder, :func:`classical_cost_at`);
   the speed-up is the classical wall time there over the corrected one, and the same
   comparison is also counted in evaluations of ``f`` (noise-free, corrector cost left out).  Wall times are the
   shortest of interleaved rounds, one thread, steady state (a warm-up call first); every
   output is checked finite.

    python benchmarks/neural_ode.py [--quick] [--problems lorenz96 vdp] [--out benchmarks/results]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import matplotlib.ticker
import torch
from torch import nn

import attsolver
from attsolver.correctors import AttSolver, Hypersolver, NeurVec
from attsolver.data import TrajectoryDataset, generate_trajectories
from attsolver.evaluate.metrics import cost_at_accuracy, relative_l2
from attsolver.systems import Lorenz96

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Run, figure, parser, pm, provenance_lines, read_report, timings, write_report  # noqa: E402

PROG = "python benchmarks/neural_ode.py"
FAMILIES = {"NeurVec": (NeurVec, {}), "Hypersolver": (Hypersolver, {}), "AttSolver-add": (AttSolver, {})}
TORCHDYN_INSTALL = "pip install --no-deps -c requirements/constraints.txt -r requirements/torchdyn.txt"


class NeuralVectorField(nn.Module):
    """``f_theta(t, y) = s ⊙ MLP((y - mu) / sd)``, an autonomous neural vector field.

    ``mu``, ``sd``, ``s`` are buffers fitted from the training states and derivatives, so the
    network sees and produces O(1) values.  Any batch shape ``[..., dim]``.
    """

    def __init__(self, dim: int, hidden: int = 512, depth: int = 2, dtype: torch.dtype = torch.float32):
        super().__init__()
        sizes = [dim] + [hidden] * depth + [dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b, dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        self.register_buffer("mu", torch.zeros(dim, dtype=dtype))
        self.register_buffer("sd", torch.ones(dim, dtype=dtype))
        self.register_buffer("scale", torch.ones(dim, dtype=dtype))

    def forward(self, t, y):
        return self.net((y - self.mu) / self.sd) * self.scale


def train_vector_field(states: torch.Tensor, derivs: torch.Tensor, *, hidden: int, steps: int, seed: int,
                       batch: int = 256, lr: float = 2e-3) -> tuple[NeuralVectorField, dict]:
    """Derivative matching: minimise ``|f_theta(y) - f(y)|^2 / s^2`` over the sampled states."""
    torch.manual_seed(seed)
    model = NeuralVectorField(states.shape[-1], hidden)
    x, d = states.float(), derivs.float()
    with torch.no_grad():
        model.mu.copy_(x.mean(0))
        model.sd.copy_(x.std(0))
        model.scale.copy_(d.std(0))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.02 * lr)
    g = torch.Generator().manual_seed(seed)
    n_val = len(x) // 10
    xv, dv, xt, dt_ = x[:n_val], d[:n_val], x[n_val:], d[n_val:]
    started = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(xt), (batch,), generator=g)
        loss = ((model(None, xt[idx]) - dt_[idx]) / model.scale).square().mean()
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(
                f"training the neural vector field: the loss became non-finite at step {step}; lower the "
                f"learning rate (lr={lr:g})"
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        val = float(((model(None, xv) - dv).norm() / dv.norm()))
    info = {"n_params": sum(p.numel() for p in model.parameters()), "train_steps": steps,
            "train_time_s": time.perf_counter() - started, "val_relative_error": val}
    model.requires_grad_(False)  # from here on an inference-only vector field
    return model.eval(), info


def checked_solve(f, y0, t, **kw):
    """``attsolver.solve`` whose non-finite failure names the neural vector field as the suspect."""
    with torch.no_grad():
        f0 = f(t[0], y0)
    if not bool(torch.isfinite(f0).all()):
        bad = int((~torch.isfinite(f0)).reshape(len(y0), -1).any(-1).sum()) if y0.ndim > 1 else 1
        raise attsolver.NonFiniteSolutionError(
            f"solving the neural ODE: the network f returned non-finite values at t={float(t[0]):g} for {bad} "
            "initial state(s), before any step (damaged weights, or inputs far outside its training range)",
            step=0, time=float(t[0]), partial=y0[None])
    try:
        with torch.no_grad():
            return attsolver.solve(f, y0, t, **kw)
    except attsolver.NonFiniteSolutionError as e:
        raise attsolver.NonFiniteSolutionError(
            f"solving the neural ODE: {e}. With a neural f this means the network's output (or the "
            "coarse step through it) left the range it was trained on; use a smaller step or retrain f",
            step=e.step, time=e.time, partial=e.partial,
        ) from None


# --------------------------------------------------------------------------- the problems

PROBLEMS = {
    # corrected: the (method, base step) pairs given a corrector; ladders: first step of each
    # classical ladder, refined by each k of `ks`
    "lorenz96": {"batch": 64, "t_final": 1.0, "dt_out": 0.1, "hidden": 512, "n_corr": 16384,
                 "corrected": [("euler", 0.02), ("euler", 0.05), ("euler", 0.1), ("midpoint", 0.05),
                               ("midpoint", 0.1)],
                 "ladders": {"euler": (0.02, [1, 2, 4, 8, 16]), "midpoint": (0.05, [1, 2, 4, 8, 16]),
                             "rk4": (0.1, [1, 2, 4, 8, 16])}},
    "vdp": {"batch": 256, "t_final": 5.0, "dt_out": 0.5, "hidden": 544, "n_corr": 8192,
            "corrected": [("euler", 0.25), ("euler", 0.5), ("midpoint", 0.25), ("midpoint", 0.5)],
            "ladders": {"euler": (0.1, [1, 2, 4, 8]), "midpoint": (0.5, [1, 2, 4, 8, 16]),
                        "rk4": (0.5, [1, 2, 4, 8, 16])}},
}
RTOLS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7]


def van_der_pol(y: torch.Tensor, mu: float = 1.0) -> torch.Tensor:
    """``x' = v, v' = mu (1 - x^2) v - x`` on ``[..., 2]``."""
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, mu * (1 - x * x) * v - x], dim=-1)


def _float64_copy(f32: NeuralVectorField) -> NeuralVectorField:
    dim, hidden = f32.mu.numel(), f32.net[0].out_features
    f64 = NeuralVectorField(dim, hidden, depth=sum(isinstance(m, nn.Linear) for m in f32.net) - 1,
                            dtype=torch.float64)
    f64.load_state_dict({k: v.double() for k, v in f32.state_dict().items()})
    return f64.requires_grad_(False).eval()


def flow_states(f: nn.Module, y0: torch.Tensor, span: float, every: float) -> torch.Tensor:
    """The states of ``f``'s trajectories from ``y0`` every ``every`` time units up to ``span``
    (RK4, 5 steps per interval; only where they lie matters), flattened to ``[n, dim]``."""
    t = torch.arange(round(span / every) + 1, dtype=torch.float64) * every
    y = checked_solve(f, y0, t.to(y0.dtype), method="rk4", step_size=every / 5)
    return y.reshape(-1, y0.shape[-1]).double()


def make_problem(name: str, args) -> dict:
    """The fitted network (float32 and float64 copies), the test states, the output grid, the
    reference solution and a pool of states on the network's own trajectories (for training
    correctors; disjoint initial states from the test set's)."""
    spec = PROBLEMS[name]
    hidden = args.hidden or spec["hidden"]
    batch = args.batch or spec["batch"]
    n_corr = args.n_corr or spec["n_corr"]
    if name == "lorenz96":
        system = Lorenz96(N=40)
        dim = system.dim

        def attractor(n, seed, t_final=0.05):
            return generate_trajectories(system, n, t_final=t_final, dt=0.05, spin_up=5.0, method="rk4",
                                         step_size=0.01, seed=seed, progress=False).y_true

        states = attractor(args.n_fit_traj, 0, t_final=10.0).reshape(-1, dim)
        with torch.no_grad():
            derivs = system(None, states)
        test0 = attractor(batch, 1)[:, 0]
        pool_starts, pool_span, pool_every = attractor(-(-n_corr // 21), 2)[:, 0], 2.0, 0.1
        about = ("MLP 40 -> {h} -> {h} -> 40 (tanh) fitted to Lorenz-96 (N=40, F=8) by derivative matching on "
                 f"{args.n_fit_traj} RK4 trajectories of the attractor; {batch} held-out attractor states")
    elif name == "vdp":
        dim = 2
        g = torch.Generator().manual_seed(0)
        box = torch.tensor([3.0, 4.5], dtype=torch.float64)
        states = (torch.rand(args.n_fit_traj * 200, dim, generator=g, dtype=torch.float64) * 2 - 1) * box
        derivs = van_der_pol(states)
        test0 = None  # set below, on the network's own flow
        about = ("MLP 2 -> {h} -> {h} -> 2 (tanh) fitted to the Van der Pol oscillator (mu=1) by derivative "
                 f"matching on {len(states)} states uniform in [-3,3]x[-4.5,4.5]; {batch} states on the "
                 "network's trajectories (uniform starts in [-2,2]^2, advanced by 0.5)")
    else:
        raise ValueError(f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    f32, fit_info = train_vector_field(states, derivs, hidden=hidden, steps=args.fit_steps, seed=0)
    f64 = _float64_copy(f32)
    if name == "vdp":
        def starts(n, seed):
            s = torch.rand(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 4 - 2
            return checked_solve(f64, s, torch.tensor([0.0, 0.5], dtype=torch.float64), method="rk4",
                                 step_size=0.01)[-1]

        test0 = starts(batch, 1)
        pool_starts, pool_span, pool_every = starts(-(-n_corr // 36), 2), 7.0, 0.2
    print(f"[neural_ode:{name}] f_theta: {fit_info['n_params']:,} parameters, validation error "
          f"{fit_info['val_relative_error']:.3g}, trained in {fit_info['train_time_s']:.0f} s", flush=True)
    t = torch.linspace(0.0, spec["t_final"], round(spec["t_final"] / spec["dt_out"]) + 1, dtype=torch.float64)
    s = time.perf_counter()
    ref = checked_solve(f64, test0.double(), t, method="dopri5", options={"rtol": 1e-10, "atol": 1e-12})
    ref_time = time.perf_counter() - s
    pool = flow_states(f32, pool_starts.float(), pool_span, pool_every)
    pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(3))[:n_corr]]
    return {"name": name, "dim": dim, "hidden": hidden, "batch": batch, "t_final": spec["t_final"],
            "about": about.format(h=hidden), "f32": f32, "f64": f64, "fit": fit_info, "t": t, "ref": ref,
            "y0": test0.float(), "pool": pool, "ref_time_s": ref_time}


# --------------------------------------------------------------------------- corrector training


def one_step_dataset(f64: nn.Module, states: torch.Tensor, method: str, h: float, substeps: int = 8
                     ) -> TrajectoryDataset:
    """Pairs ``(y, y(t + h))`` of the neural ODE's flow: one reference step from each state
    (RK4 with ``h / substeps`` substeps in float64), as two-point trajectories for ``fit``."""
    tt = torch.tensor([0.0, h], dtype=torch.float64)
    y1 = checked_solve(f64, states, tt, method="rk4", step_size=h / substeps)
    return TrajectoryDataset(t=tt, y=y1.transpose(0, 1).contiguous(), system={"name": "neural_ode", "params": {}},
                             config={"benchmark": "neural_ode", "method": method, "reference": f"rk4 h/{substeps}"})


def train_corrector(cls, kw, ds: TrajectoryDataset, f64: nn.Module, method: str, h: float, args) -> tuple:
    torch.manual_seed(0)
    model = cls(ds.state_shape, method=method, step_size=h, **kw)
    s = time.perf_counter()
    hist = attsolver.fit(model, ds, system=f64, epochs=args.corr_epochs, lr=args.corr_lr, batch_size=256,
                         val_fraction=0.1, patience=None, seed=0, progress=False, grad_clip=10.0,
                         min_lr_ratio=0.01, check=False)
    model.eval()
    return model, {"train_time_s": time.perf_counter() - s, "best_val_loss": hist.best_loss,
                   "n_params": sum(p.numel() for p in model.parameters())}


def torchdyn_available() -> str | None:
    """``None`` when ``torchdyn.numerics`` imports, else why not."""
    try:
        import torchdyn.numerics  # noqa: F401  (imported only to see whether it can be)
    except Exception as e:  # ImportError, or a missing dependency of it
        return (f"torchdyn is not importable here ({type(e).__name__}: {e}); install it with `{TORCHDYN_INSTALL}` "
                "(no torchvision, no pytorch-lightning)")
    return None


class Hypernet(nn.Module):
    """torchdyn's hypernet ``g(t, x)``: MLP ``D -> 64 -> 64 -> D`` (tanh) on the normalised
    state (HyperEuler passes the state only, not ``f``), output scaled; last layer zero-initialised."""

    def __init__(self, dim: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        sizes = [dim, *hidden, dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)
        self.register_buffer("mu", torch.zeros(dim))
        self.register_buffer("sd", torch.ones(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, t, x):
        return self.net((x - self.mu) / self.sd) * self.scale


def train_hypernet(ds: TrajectoryDataset, f64: nn.Module, h: float, args) -> tuple[Hypernet, dict]:
    """Fit ``g`` to ``(y(t+h) - y - h f(y)) / h^2`` (torchdyn's HyperEuler step) on the same pairs,
    with the same optimiser settings as ``fit`` (Adam, cosine decay, batch 256, same epochs)."""
    y0, y1 = ds.y[:, 0], ds.y[:, 1]
    with torch.no_grad():
        target = ((y1 - y0 - h * f64(None, y0)) / h ** 2).float()
    x = y0.float()
    torch.manual_seed(0)
    net = Hypernet(x.shape[-1])
    with torch.no_grad():
        net.mu.copy_(x.mean(0))
        net.sd.copy_(x.std(0))
        net.scale.copy_(target.square().mean(0).sqrt())
    n_val = max(1, len(x) // 10)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    val, tr = perm[:n_val], perm[n_val:]
    steps_per_epoch = max(1, len(tr) // 256)
    opt = torch.optim.Adam(net.parameters(), lr=args.corr_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.corr_epochs * steps_per_epoch,
                                                       eta_min=0.01 * args.corr_lr)
    g = torch.Generator().manual_seed(0)
    s = time.perf_counter()
    for _ in range(args.corr_epochs):
        order = tr[torch.randperm(len(tr), generator=g)]
        for b in range(steps_per_epoch):
            idx = order[b * 256:(b + 1) * 256]
            loss = ((net(None, x[idx]) - target[idx]) / net.scale).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        val_loss = float(((net(None, x[val]) - target[val]) / net.scale).square().mean())
    net.requires_grad_(False).eval()
    return net, {"train_time_s": time.perf_counter() - s, "best_val_loss": val_loss,
                 "n_params": sum(p.numel() for p in net.parameters())}


def torchdyn_solver(f32: nn.Module, hypernet: Hypernet, y0: torch.Tensor, t: torch.Tensor, h: float):
    """A closure running ``torchdyn.numerics.odeint(..., solver=HyperEuler(hypernet))`` on the step grid
    and returning the outputs at ``t`` (``[len(t), *y0.shape]``)."""
    from torchdyn.numerics import HyperEuler, odeint

    per = round(float(t[1] - t[0]) / h)
    n_steps = (len(t) - 1) * per
    t_span = torch.linspace(float(t[0]), float(t[-1]), n_steps + 1)
    solver = HyperEuler(hypernet)

    def go():
        _, sol = odeint(f32, y0, t_span, solver=solver)
        return sol[::per]
    return go


# --------------------------------------------------------------------------- one problem


def run_problem(p: dict, args) -> dict:
    f32, f64, y0, t, ref = p["f32"], p["f64"], p["y0"], p["t"], p["ref"]
    T = float(t[-1] - t[0])

    def error(sol):
        if not bool(torch.isfinite(sol).all()):
            return float("nan")
        return float(relative_l2(sol[1:].double().transpose(0, 1), ref[1:].transpose(0, 1)).mean())

    contenders: dict[str, dict] = {}

    def add(label, family, fn, **info):
        with torch.no_grad():
            sol = fn()
        if tuple(sol.shape) != tuple(ref.shape):
            raise RuntimeError(f"{label}: output shape {tuple(sol.shape)}, expected {tuple(ref.shape)}")
        contenders[label] = {"label": label, "family": family, "error": error(sol),
                             "finite": bool(torch.isfinite(sol).all()), "fn": fn, **info}

    def classical(method, h):
        return lambda: attsolver.solve(f32, y0, t, method=method, step_size=h, options={"check_finite": False})

    ladders = PROBLEMS[p["name"]]["ladders"]
    for method, (h0, ks) in ladders.items():
        for k in (ks if not args.quick else ks[:3]):
            add(f"{method} h={h0 / k:.4g}", method, classical(method, h0 / k), method=method, step=h0 / k,
                n_f_evals=_stages(method) * round(T / (h0 / k)))
    for tol in (RTOLS if not args.quick else RTOLS[1:5:2]):
        opts = {"rtol": tol, "atol": tol * 1e-3, "check_finite": False}
        with torch.no_grad():
            nfe = attsolver.solve(f32, y0, t, method="dopri5", options=opts, return_stats=True)[1].n_f_evals
        add(f"dopri5 rtol={tol:g}", "dopri5",
            lambda opts=opts: attsolver.solve(f32, y0, t, method="dopri5", options=opts), rtol=tol, n_f_evals=nfe)

    no_torchdyn = torchdyn_available()
    training = []
    corrected = PROBLEMS[p["name"]]["corrected"] if not args.quick else [("euler", 0.1)]
    families = FAMILIES if not args.quick else {"Hypersolver": FAMILIES["Hypersolver"]}
    for method, h in corrected:
        base = f"{method} h={h:.4g}"
        if base not in contenders:  # the uncorrected coarse run, for the comparison
            add(base, method, classical(method, h), method=method, step=h, n_f_evals=_stages(method) * round(T / h),
                off_ladder=True)
        s = time.perf_counter()
        ds = one_step_dataset(f64, p["pool"], method, h)
        data_time = time.perf_counter() - s
        training.append({"step": base, "n_pairs": len(ds.y), "data_time_s": data_time})
        for fam, (cls, kw) in families.items():
            model, info = train_corrector(cls, kw, ds, f64, method, h, args)
            label = f"{base} + {fam}"
            add(label, f"corrected {method}", lambda m=model, method=method, h=h: attsolver.solve(
                f32, y0, t, method=method, step_size=h, corrector=m, options={"check_finite": False}),
                method=method, step=h, corrector=fam, n_f_evals=_stages(method) * round(T / h), **info)
            print(f"[neural_ode:{p['name']}] {label}: error {contenders[label]['error']:.3g} "
                  f"(uncorrected {contenders[base]['error']:.3g}), trained in {info['train_time_s']:.0f} s", flush=True)
        if method == "euler" and no_torchdyn is None:
            net, info = train_hypernet(ds, f64, h, args)
            label = f"{base} + torchdyn HyperEuler"
            add(label, "corrected euler", torchdyn_solver(f32, net, y0, t, h), method=method, step=h,
                corrector="torchdyn HyperEuler", n_f_evals=round(T / h), **info)
            print(f"[neural_ode:{p['name']}] {label}: error {contenders[label]['error']:.3g}", flush=True)

    with torch.no_grad():
        times = timings({k: c["fn"] for k, c in contenders.items()}, args.rounds)
    for k, c in contenders.items():
        c["time_s"] = times[k].min()
        del c["fn"]
    add_speedups(contenders.values())
    return {"name": p["name"], "about": p["about"], "dim": p["dim"], "hidden": p["hidden"], "batch": p["batch"],
            "t_final": p["t_final"], "dt_out": float(p["t"][1] - p["t"][0]), "fit": p["fit"],
            "n_corr_pairs": len(p["pool"]), "training": training,
            "reference_time_s": p["ref_time_s"], "torchdyn": no_torchdyn or "compared",
            "contenders": list(contenders.values())}


def classical_cost_at(rows: list[dict], key: str, target: float) -> tuple[float | None, str]:
    """The classical cost (``key``: ``"time_s"`` or ``"n_f_evals"``) of the error ``target``: the
    lowest of the log-log interpolation on the Pareto front of all the classical runs and the
    interpolation along each method's own refinement ladder (the Pareto front alone can be
    flattened by a point of another method lying above a ladder's segment, which would credit the
    corrected run with a speed-up no classical user would see).  A ladder's estimate counts only
    where the target lies within its runs (``interpolated``) or above its cheapest
    (``cheapest``), never from extrapolation."""
    finite = [r for r in rows if r["finite"]]
    cost, kind = cost_at_accuracy([r["error"] for r in finite], [r[key] for r in finite], target)
    for fam in sorted({r["family"] for r in finite}):
        ladder = [r for r in finite if r["family"] == fam]
        c_fam, k_fam = cost_at_accuracy([r["error"] for r in ladder], [r[key] for r in ladder], target)
        if c_fam is not None and k_fam in ("interpolated", "cheapest") and (cost is None or c_fam < cost):
            cost, kind = c_fam, k_fam
    return cost, kind


def add_speedups(contenders) -> None:
    """Fill each corrected row's equal-accuracy speed-ups from the recorded errors and times:
    ``speedup_best`` against every classical run (:func:`classical_cost_at`), ``speedup_same``
    against its own method refined, ``f_eval_ratio_best`` the first counted in evaluations of f."""
    contenders = list(contenders)
    classical_rows = [c for c in contenders if not c["family"].startswith("corrected")]
    for c in contenders:
        if not c["family"].startswith("corrected"):
            continue
        err = c["error"] if c["finite"] else float("nan")
        t_best, kind = classical_cost_at(classical_rows, "time_s", err)
        same = [r for r in classical_rows if r["family"] == c["method"] and r["finite"]]
        t_same, kind_same = cost_at_accuracy([r["error"] for r in same], [r["time_s"] for r in same], err)
        reach = [r for r in classical_rows if r["finite"] and r["error"] <= err]
        # the same comparison counted in evaluations of f (noise-free; the corrector's cost left out)
        n_best, kind_n = classical_cost_at(classical_rows, "n_f_evals", err)
        c.update({"f_eval_ratio_best": None if n_best is None else n_best / c["n_f_evals"],
                  "f_eval_ratio_best_kind": kind_n,
                  "speedup_best": None if t_best is None else t_best / c["time_s"], "speedup_best_kind": kind,
                  "speedup_same": None if t_same is None else t_same / c["time_s"], "speedup_same_kind": kind_same,
                  "best_classical_reaching": min(reach, key=lambda r: r["time_s"])["label"] if reach else None})


def _stages(method: str) -> int:
    return {"euler": 1, "midpoint": 2, "rk4": 4}[method]


def _f(x, d=3):
    return "—" if x is None else f"{x:.{d}g}"


_MARK = {"interpolated": "", "extrapolated": "≳", "cheapest": "≤", "unreached": "?"}


def best_corrected(problem: dict) -> dict[str, dict]:
    """Each corrector family's corrected run with the largest speed-up against the best classical."""
    best: dict[str, dict] = {}
    for c in problem["contenders"]:
        if c["family"].startswith("corrected") and c["speedup_best"] is not None:
            if c["corrector"] not in best or c["speedup_best"] > best[c["corrector"]]["speedup_best"]:
                best[c["corrector"]] = c
    return best


def to_markdown(report: dict) -> str:
    a = report["args"]
    lines = ["# Neural vector field: classical vs corrected solvers at equal accuracy", "",
             *provenance_lines(report), "",
             "Protocol (fixed before training; see the module docstring): the neural ODE `f_theta` is fitted "
             "inside the run, then it *is* the problem.  Outputs every dt_out to T (per problem), float32; "
             "reference dopri5 rtol "
             "1e-10 of the same network in float64.  Error: relative L2 over the outputs of each trajectory, "
             f"mean over the batch.  Times: shortest of {a['rounds']} interleaved rounds, steady state, one thread.  "
             "Correctors (and torchdyn's hypernet) are trained on one-step targets of the neural ODE's own flow "
             "(the number of pairs is given per problem): "
             "states on its trajectories (other starts than the test set's), one RK4 reference "
             f"step (h/8 substeps, float64) each, {a['corr_epochs']} epochs (Adam, lr {a['corr_lr']:g}, cosine "
             "decay, batch 256).", "",
             "Speed-up = the wall time a classical contender needs for the corrected run's error over the "
             "corrected run's.  That time is the lowest of the log-log interpolation on the Pareto front of all "
             "the classical runs and the interpolation along each method's own refinement ladder (≳ extrapolated "
             "beyond the most accurate run; ≤ the cheapest classical run is already as accurate, so the speed-up "
             "is an upper bound).  `vs best`: every classical run "
             "(Euler, midpoint, RK4, dopri5); `vs same`: the same method refined.  **Target (issue 14): >= 3x "
             "vs best.**", "",
             "## Headline", "",
             "Each corrector family's best corrected run (over the base steps tried) against the best classical "
             "contender at equal accuracy.", "",
             "| problem | corrector | best corrected run | its error | ms | classical time at that error | "
             "vs best classical | f-eval ratio | >= 3x |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for p in report["problems"]:
        for fam, b in best_corrected(p).items():
            met = "yes" if b["speedup_best"] >= 3 and b["speedup_best_kind"] == "interpolated" else "no"
            lines.append(f"| {p['name']} (dim {p['dim']}) | {fam} | {b['label']} | {b['error']:.3g} | "
                         f"{b['time_s'] * 1e3:.1f} | {b['speedup_best'] * b['time_s'] * 1e3:.1f} ms | "
                         f"{_MARK[b['speedup_best_kind']]}{_f(b['speedup_best'])}× | "
                         f"{_MARK[b['f_eval_ratio_best_kind']]}{_f(b['f_eval_ratio_best'])}× | {met} |")
    if report.get("plots"):
        lines += ["", f"![work-precision]({report['plots'][0]})"]
    for p in report["problems"]:
        rows = {c["label"]: c for c in p["contenders"]}
        lines += ["", f"## {p['name']}", "",
                  f"Neural ODE: {p['about']}; {p['fit']['n_params']:,} parameters, {p['fit']['train_steps']} Adam "
                  f"steps ({p['fit']['train_time_s']:.0f} s), held-out relative error of f "
                  f"{p['fit']['val_relative_error']:.3g}.  T = {p['t_final']:g}, outputs every {p['dt_out']:g}, "
                  f"batch {p['batch']}; correctors trained on {p['n_corr_pairs']} one-step pairs per base step.", "",
                  "### Corrected low-order steps against the classical front", "",
                  "`f evals`: evaluations of `f_theta` per solve (the corrector's cost not counted); "
                  "`f-eval ratio`: the same equal-accuracy comparison in evaluations of f instead of wall time.", "",
                  "| corrected solver | params | error | uncorrected error | f evals | ms | vs same | vs best | "
                  "f-eval ratio vs best | cheapest classical reaching it | training s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for c in p["contenders"]:
            if not c["family"].startswith("corrected"):
                continue
            base = rows.get(f"{c['method']} h={c['step']:.4g}")
            err = f"{c['error']:.3g}" if c["finite"] else "blew up"
            lines.append(f"| {c['label']} | {c['n_params']:,} | {err} | {_f(base['error'] if base else None)} | "
                         f"{c['n_f_evals']} | {c['time_s'] * 1e3:.1f} | "
                         f"{_MARK[c['speedup_same_kind']]}{_f(c['speedup_same'])}× | "
                         f"{_MARK[c['speedup_best_kind']]}{_f(c['speedup_best'])}× | "
                         f"{_MARK[c['f_eval_ratio_best_kind']]}{_f(c['f_eval_ratio_best'])}× | "
                         f"{c['best_classical_reaching'] or '—'} | {c['train_time_s']:.0f} |")
        lines += ["", "### Classical contenders", "", "| solver | f evals | error | ms |",
                  "|---|---:|---:|---:|"]
        for c in p["contenders"]:
            if not c["family"].startswith("corrected"):
                blew = "" if c["finite"] else " (blew up)"
                lines.append(f"| {c['label']} | {c['n_f_evals']} | {pm(c['error'], fmt='.3g')}{blew} | "
                             f"{c['time_s'] * 1e3:.1f} |")
        data_s = sum(r["data_time_s"] for r in p["training"])
        train_s = sum(c["train_time_s"] for c in p["contenders"] if c["family"].startswith("corrected"))
        lines += ["", f"One-off training cost: the reference steps for {len(p['training'])} base step(s) "
                  f"({p['n_corr_pairs']} pairs each) took {data_s:.0f} s, the corrector trainings {train_s:.0f} s "
                  f"in all; the float64 reference solution {p['reference_time_s']:.1f} s.", "",
                  f"torchdyn HyperEuler: {p['torchdyn']}."]
    return "\n".join(lines) + "\n"


def plot(report: dict):
    """``neural_ode.png``: error against wall time, classical fronts as lines, corrected runs as markers."""
    probs = report["problems"]
    fig, axes = figure(1, len(probs), figsize=(6.2 * len(probs), 4.6), squeeze=False)
    markers = {"NeurVec": "s", "Hypersolver": "o", "AttSolver-add": "^", "torchdyn HyperEuler": "x"}
    colours = {"euler": "tab:blue", "midpoint": "tab:orange", "rk4": "tab:green", "dopri5": "tab:red"}
    for ax, p in zip(axes[0], probs):
        for fam, col in colours.items():
            pts = sorted((c["time_s"] * 1e3, c["error"]) for c in p["contenders"]
                         if c["family"] == fam and c["finite"] and not c.get("off_ladder"))
            if pts:
                ax.plot(*zip(*pts), "-", color=col, lw=1.2, marker=".", label=fam)
        for c in p["contenders"]:
            if c["family"].startswith("corrected") and c["finite"]:
                ax.plot(c["time_s"] * 1e3, c["error"], markers.get(c["corrector"], "*"),
                        color=colours[c["method"]], ms=7, mfc="none")
                if c["corrector"] == "Hypersolver":
                    ax.annotate(f"h={c['step']:g}", (c["time_s"] * 1e3, c["error"]), fontsize=6,
                                xytext=(4, 2), textcoords="offset points", color=colours[c["method"]])
        for fam, m in markers.items():
            ax.plot([], [], m, color="k", mfc="none", label=f"+ {fam}")
        for c in p["contenders"]:
            if c.get("off_ladder") and c["finite"]:
                ax.plot(c["time_s"] * 1e3, c["error"], ".", color=colours[c["family"]], ms=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("wall time per solve (ms, one thread)")
        ax.set_ylabel("relative L2 error")
        ax.set_title(f"{p['name']}: neural ODE, {p['fit']['n_params']:,} params, dim {p['dim']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    yield "neural_ode.png", fig


def parse_args(argv):
    ap = parser("neural_ode", __doc__.split("\n\n")[0], prog=PROG,
                quick="a smoke run: the vdp problem with a small network, one corrected step, short trainings")
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--hidden", type=int, default=None, help="width of f_theta (default per problem)")
    ap.add_argument("--batch", type=int, default=None, help="test states (default per problem)")
    ap.add_argument("--fit-steps", type=int, default=3000)
    ap.add_argument("--n-fit-traj", type=int, default=64)
    ap.add_argument("--n-corr", type=int, default=None, help="one-step pairs for each corrector (default per problem)")
    ap.add_argument("--corr-epochs", type=int, default=100)
    ap.add_argument("--corr-lr", type=float, default=3e-3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--render", metavar="JSON", default=None,
                    help="only re-render neural_ode.{md,png} from a saved neural_ode.json (no training, no timing)")
    args = ap.parse_args(argv)
    if args.quick:
        args.problems, args.hidden, args.batch, args.fit_steps, args.n_fit_traj = ["vdp"], 64, 32, 400, 8
        args.n_corr, args.corr_epochs, args.rounds = 1024, 15, 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:  # the speed-ups are recomputed from the recorded errors and times
        report = read_report(args.render)
        for p in report["problems"]:
            add_speedups(p["contenders"])
        write_report(args.out, "neural_ode", report, to_markdown, plot, echo=True)
        return 0
    run = Run("neural_ode", argv, prog=PROG, quick=args.quick)
    report = run.report(args=dict(vars(args)), problems=[])
    for name in args.problems:
        report["problems"].append(run_problem(make_problem(name, args), args))
    write_report(args.out, "neural_ode", run.stamp(report, complete=True), to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
