"""The expensive-vector-field case: solving a trained neural ODE, classical vs corrected.

When ``f`` is itself a neural network, one evaluation of ``f`` can cost far more than a
small corrector, and a corrected low-order step may beat RK4 at equal accuracy (Poli et al.
2020, hypersolvers).  This suite measures it, start to finish, in one run:

1. **The neural ODE.**  A vector field ``f_theta: R^40 -> R^40`` (MLP 40 -> 512 -> 512 -> 40,
   tanh, ~306k parameters) is fitted to Lorenz-96 (N = 40, F = 8) by derivative matching on
   states of generated trajectories (RK4, on the attractor; nothing is downloaded).
2. **The problem.**  ``y' = f_theta(y)`` from held-out attractor states (a batch of 64), output
   every 0.1 up to ``T``; the reference is dopri5 at rtol 1e-10 of the same network in
   float64.  Every contender runs in float32 (a neural-ODE user's precision).
3. **Contenders.**  Euler, midpoint and RK4 over step refinements; dopri5 over tolerances;
   Euler and midpoint corrected by each dense corrector family (NeurVec, Hypersolver,
   AttSolver), trained on trajectories of the neural ODE itself.  The local correctors do
   not apply: ``f_theta`` couples every component, its truncation error is not a stencil.
4. **Equal accuracy.**  Each corrected solver's error is located on the Pareto front of
   every classical run (log-log interpolation, :func:`attsolver.metrics.cost_at_accuracy`);
   the speed-up is the classical wall time there over the corrected one.  Wall times are the
   shortest of interleaved rounds, one thread, steady state (a warm-up call first).

torchdyn's HyperEuler is not compared: ``pip install -c requirements/constraints.txt
torchdyn`` pulls torchvision (and pytorch-lightning), which this project must not install.

    python benchmarks/neural_ode.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

import attsolver
from attsolver._io import atomic_write_text
from attsolver.correctors import AttSolver, Hypersolver, NeurVec
from attsolver.data import TrajectoryDataset, generate_trajectories
from attsolver.metrics import cost_at_accuracy, relative_l2
from attsolver.systems import Lorenz96

FAMILIES = {"NeurVec": (NeurVec, {}), "Hypersolver": (Hypersolver, {}), "AttSolver-add": (AttSolver, {})}
TORCHDYN_SKIPPED = ("torchdyn not installed: with the CPU torch pinned (requirements/constraints.txt), "
                    "`pip install torchdyn` 1.0.6 pulls torchvision 0.28 and pytorch-lightning, which this "
                    "project must not depend on")


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


def interleaved_min(fns: dict, rounds: int) -> dict[str, float]:
    best = {k: float("inf") for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(rounds):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def run(args) -> dict:
    torch.set_num_threads(1)
    system = Lorenz96(N=40)
    started = time.perf_counter()
    # 1. the neural ODE, from generated Lorenz-96 trajectories
    data = generate_trajectories(system, args.n_fit_traj, t_final=10.0, dt=0.05, spin_up=5.0, method="rk4",
                                 step_size=0.01, seed=0, progress=False)
    states = data.y_true.reshape(-1, system.dim)
    with torch.no_grad():
        derivs = system(None, states)
    f32, fit_info = train_vector_field(states, derivs, hidden=args.hidden, steps=args.fit_steps, seed=0)
    f64 = NeuralVectorField(system.dim, args.hidden, dtype=torch.float64)
    f64.load_state_dict({k: v.double() for k, v in f32.state_dict().items()})
    f64.requires_grad_(False).eval()
    print(f"[neural_ode] f_theta: {fit_info['n_params']:,} parameters, validation error "
          f"{fit_info['val_relative_error']:.3g}, trained in {fit_info['train_time_s']:.0f} s", flush=True)

    # 2. the problem and its reference (same network, float64, tight tolerance)
    test0 = generate_trajectories(system, args.batch, t_final=0.05, dt=0.05, spin_up=5.0, method="rk4",
                                  step_size=0.01, seed=1, progress=False).y_true[:, 0]
    t = torch.linspace(0.0, args.t_final, round(args.t_final / 0.1) + 1, dtype=torch.float64)
    ref = checked_solve(f64, test0, t, method="dopri5", options={"rtol": 1e-10, "atol": 1e-12})
    y0 = test0.float()

    def error(sol):
        return float(relative_l2(sol[1:].double().transpose(0, 1), ref[1:].transpose(0, 1)).mean())

    # 3. contenders
    contenders: dict[str, dict] = {}

    def add(label, family, fn, **info):
        with torch.no_grad():
            sol = fn()
        contenders[label] = {"label": label, "family": family, "error": error(sol),
                             "finite": bool(torch.isfinite(sol).all()), "fn": fn, **info}

    def classical(method, h):
        return lambda: attsolver.solve(f32, y0, t, method=method, step_size=h, options={"check_finite": False})

    for method, h0 in (("euler", args.h_euler), ("midpoint", args.h_midpoint), ("rk4", args.h_rk4)):
        for k in args.ks:
            add(f"{method} h={h0 / k:.4g}", method, classical(method, h0 / k), method=method, step=h0 / k,
                nfe_per_unit=_stages(method) / (h0 / k))
    for tol in args.rtols:
        add(f"dopri5 rtol={tol:g}", "dopri5",
            lambda tol=tol: attsolver.solve(f32, y0, t, method="dopri5",
                                            options={"rtol": tol, "atol": tol * 1e-3, "check_finite": False}),
            rtol=tol)

    # corrected low-order steps: correctors trained on trajectories of the neural ODE itself
    train_y0 = generate_trajectories(system, args.n_corr_traj, t_final=0.05, dt=0.05, spin_up=5.0, method="rk4",
                                     step_size=0.01, seed=2, progress=False).y_true[:, 0]
    corr_info = {}
    for method, h in (("euler", args.h_euler), ("midpoint", args.h_midpoint)):
        tt = torch.arange(round(args.t_corr / h) + 1, dtype=torch.float64) * h
        y = checked_solve(f64, train_y0, tt, method="rk4", step_size=h / 16).transpose(0, 1)
        ds = TrajectoryDataset(t=tt, y=y, system={"name": "neural_lorenz96", "params": {}},
                               config={"benchmark": "neural_ode", "method": method})
        for fam, (cls, kw) in FAMILIES.items():
            torch.manual_seed(0)
            model = cls(system.state_shape, method=method, step_size=h, **kw)
            s = time.perf_counter()
            hist = attsolver.fit(model, ds, system=f64, epochs=args.corr_epochs, lr=3e-3, batch_size=128,
                                 val_fraction=0.25, patience=None, seed=0, progress=False, grad_clip=10.0,
                                 min_lr_ratio=0.05)
            model.eval()
            label = f"{method} h={h:.4g} + {fam}"
            corr_info[label] = {"train_time_s": time.perf_counter() - s, "best_val_loss": hist.best_loss,
                                "n_params": sum(p.numel() for p in model.parameters())}
            add(label, f"corrected {method}", lambda m=model, method=method, h=h: attsolver.solve(
                f32, y0, t, method=method, step_size=h, corrector=m, options={"check_finite": False}),
                method=method, step=h, corrector=fam, nfe_per_unit=_stages(method) / h, **corr_info[label])
            print(f"[neural_ode] {label}: error {contenders[label]['error']:.3g} "
                  f"(uncorrected {contenders[f'{method} h={h:.4g}']['error']:.3g})", flush=True)

    # 4. timing, steady state, interleaved
    with torch.no_grad():
        times = interleaved_min({k: c["fn"] for k, c in contenders.items()}, args.rounds)
    for k, c in contenders.items():
        c["time_s"] = times[k]
        del c["fn"]
    classical_rows = [c for c in contenders.values() if not c["family"].startswith("corrected")]
    errs = [c["error"] if c["finite"] else float("nan") for c in classical_rows]
    for c in contenders.values():
        if not c["family"].startswith("corrected"):
            continue
        t_best, kind = cost_at_accuracy(errs, [r["time_s"] for r in classical_rows], c["error"])
        same = [r for r in classical_rows if r["family"] == c["method"]]
        t_same, kind_same = cost_at_accuracy([r["error"] for r in same], [r["time_s"] for r in same], c["error"])
        reach = [r for r in classical_rows if r["finite"] and r["error"] <= c["error"]]
        c.update({"speedup_best": None if t_best is None else t_best / c["time_s"], "speedup_best_kind": kind,
                  "speedup_same": None if t_same is None else t_same / c["time_s"], "speedup_same_kind": kind_same,
                  "best_classical_reaching": min(reach, key=lambda r: r["time_s"])["label"] if reach else None})
    return {"fit": fit_info, "contenders": list(contenders.values()), "wall_s": time.perf_counter() - started,
            "torchdyn": TORCHDYN_SKIPPED}


def _stages(method: str) -> int:
    return {"euler": 1, "midpoint": 2, "rk4": 4}[method]


def _f(x, d=3):
    return "—" if x is None else f"{x:.{d}g}"


_MARK = {"interpolated": "", "extrapolated": "≳", "cheapest": "≤", "unreached": "?"}


def to_markdown(report: dict) -> str:
    a = report["args"]
    lines = ["# Neural vector field: classical vs corrected solvers at equal accuracy", "",
             f"Produced by `{report['command']}` on {report['date']} ({report['machine']}; one thread; "
             f"{report['wall_s'] / 60:.1f} min in all).", "",
             f"Neural ODE: MLP 40 -> {a['hidden']} -> {a['hidden']} -> 40 (tanh), {report['fit']['n_params']:,} "
             f"parameters, fitted to Lorenz-96 (N=40, F=8) by derivative matching ({report['fit']['train_steps']} "
             f"Adam steps, held-out relative error of f {report['fit']['val_relative_error']:.3g}).  Problem: "
             f"{a['batch']} held-out attractor states, outputs every 0.1 to T={a['t_final']:g}, float32; "
             "reference: dopri5 rtol 1e-10 of the same network in float64.  Error: relative L2 over the outputs, "
             "mean over the batch.  Times: shortest of "
             f"{a['rounds']} interleaved rounds, steady state.", "",
             "## Corrected low-order steps against the classical front", "",
             "Speed-up = the wall time a classical contender needs for the corrected run's error (log-log "
             "interpolation on the Pareto front; ≳ extrapolated, ≤ the cheapest classical run is already as "
             "accurate) over the corrected run's.  `vs best`: every classical run (Euler, midpoint, RK4, "
             "dopri5); `vs same`: the same method refined.  Target (issue 14): >= 3x vs best.", "",
             "| corrected solver | params | error | uncorrected error | ms | vs same | vs best | best classical reaching it |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    rows = {c["label"]: c for c in report["contenders"]}
    for c in report["contenders"]:
        if not c["family"].startswith("corrected"):
            continue
        base = rows.get(f"{c['method']} h={c['step']:.4g}")
        lines.append(f"| {c['label']} | {c['n_params']:,} | {c['error']:.3g} | {_f(base['error'] if base else None)} | "
                     f"{c['time_s'] * 1e3:.1f} | {_MARK[c['speedup_same_kind']]}{_f(c['speedup_same'])}× | "
                     f"{_MARK[c['speedup_best_kind']]}{_f(c['speedup_best'])}× | {c['best_classical_reaching'] or '—'} |")
    lines += ["", "## Classical contenders", "", "| solver | error | ms |", "|---|---:|---:|"]
    for c in report["contenders"]:
        if not c["family"].startswith("corrected"):
            lines.append(f"| {c['label']} | {c['error']:.3g}{'' if c['finite'] else ' (blew up)'} | "
                         f"{c['time_s'] * 1e3:.1f} |")
    lines += ["", f"torchdyn HyperEuler: not compared — {report['torchdyn']}.", ""]
    return "\n".join(lines)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small network and short trainings (a smoke run)")
    ap.add_argument("--out", default="benchmarks/results", help="folder for neural_ode.{md,json}")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--fit-steps", type=int, default=3000)
    ap.add_argument("--n-fit-traj", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--t-final", type=float, default=1.0)
    ap.add_argument("--h-euler", type=float, default=0.02)
    ap.add_argument("--h-midpoint", type=float, default=0.05)
    ap.add_argument("--h-rk4", type=float, default=0.1)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--rtols", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    ap.add_argument("--n-corr-traj", type=int, default=64)
    ap.add_argument("--t-corr", type=float, default=2.0)
    ap.add_argument("--corr-epochs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.quick:
        args.hidden, args.fit_steps, args.n_fit_traj, args.batch = 128, 300, 16, 16
        args.ks, args.rtols, args.n_corr_traj, args.corr_epochs, args.rounds = [1, 2, 4], [1e-3, 1e-5], 16, 3, 1
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    result = run(args)
    report = {
        "command": "python benchmarks/neural_ode.py " + " ".join(argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, numpy {np.__version__}, "
                   f"Python {platform.python_version()}",
        "args": {k: v for k, v in vars(args).items()}, **result,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "neural_ode.json", json.dumps(report, indent=1, default=str))
    md = to_markdown(report)
    atomic_write_text(out / "neural_ode.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
