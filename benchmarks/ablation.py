"""Cross-domain ablation: the same attention modules in the AttSolver corrector and in a ResNet.

One row per attention module (none, SE, shared SE, DIA, IEBN):

* **solver columns** — an AttSolver corrector with that gate, trained on small noisy data
  (16 trajectories, relative noise 1e-2) for a coarse classical step where the step's own
  error dominates the noise, scored on held-out initial states by the relative L2 error of
  the corrected rollout (mean ± sample std over seeds); the uncorrected coarse solver is
  the baseline row.  Cases: Lorenz-63 with RK4 at h = 0.1 and the 20-mass spring chain with
  Euler at h = 0.2 (the ODE benchmark's cases and reasons, ``benchmarks/ode.py``);
* **vision column** — ResNet-20 on scikit-learn's 8x8 digits with the same module, standard
  training; taken from ``benchmarks/results/vision.json`` when its configuration is the
  standard one (else trained here for a few epochs);
* **extra parameters** of the module in each model, against ``none``.

    attsolver bench ablation [--quick] [--seeds 20] [--out benchmarks/results]
    attsolver bench ablation --render          # rewrite ablation.md from ablation.json
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils import parametrize

import attsolver
from attsolver.correctors import AttSolver
from attsolver.data import TrajectoryDataset, add_noise, generate_trajectories
from attsolver.training import NonFiniteLossError, fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Run, figure, header, mean_std, num, parser, pm, read_report, welch_p, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEST_SEED = 10_007      # held-out initial states (the ODE benchmark's)
TRAIN_SEED = 1_000      # training trajectories of seed s: TRAIN_SEED + s
NOISE_SEED = 5_000
REFERENCE_REFINE = 256  # test reference: RK4 at h / 256
TRAIN_REFINE = 32       # training data: RK4 at h / 32

#: row name -> (corrector arguments, vision attention name or None, what it is in each model)
VARIANTS: dict[str, tuple[dict[str, Any], str | None, str, str]] = {
    "none": ({"attention": "none"}, "none", "MLP body, no gate", "no attention"),
    "se": ({"attention": "se"}, "se", "one SE gate on the body output", "one SE per block"),
    "shared_se": ({"attention": "se", "residual": True}, "shared_se",
                  "residual body, one SE gate shared by its layers", "one SE per stage, shared"),
    "dia": ({"attention": "dia"}, "dia",
            "residual body, one DIA unit shared by its layers, state carried layer to layer",
            "one DIA unit per stage, shared, state carried block to block"),
    "iebn": ({"attention": "iebn"}, "iebn", "one IEBN gate on the body output", "in every BatchNorm"),
    # control for shared_se / dia: their residual body without a gate (a ResNet is always residual)
    "none (residual body)": ({"attention": "none", "residual": True}, None,
                             "residual body, no gate (control for shared_se, dia)", "—"),
}


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    system: str
    method: str
    step: float
    t_train: float
    t_test: float
    spin_up: float
    horizon: float  # the error is taken over (0, horizon]
    why: str


CASES = {c.name: c for c in [
    Case("lorenz63", "Lorenz-63", "lorenz63", "rk4", 0.1, t_train=10.0, t_test=10.0, spin_up=10.0, horizon=2.5,
         why="RK4 at h = 0.1: one-step error about 1.3e-2 of the attractor's spread, above the 1e-2 noise; "
             "chaotic, so the error is taken over the first 2.5 time units (about 2 Lyapunov times), before "
             "every rollout decorrelates"),
    Case("spring_chain", "spring chain", "spring_chain", "euler", 0.2, t_train=20.0, t_test=20.0, spin_up=0.0,
         horizon=5.0,
         why="NeurVec's case: Euler at h = 0.2 on 20 masses (d = 40); one-step error about 4.6e-2 of the "
             "spread; Euler amplifies every mode, so the classical rollout grows without bound and the error "
             "is taken over the first 5 time units (25 steps), where the coarse error is about 1.4 and not yet "
             "astronomical (the error over all 20 time units is in ablation.json)"),
]}


#: the training recipe and corrector size, the same for every attention module
RECIPE = {"train_steps": 1200, "lr": 3e-3, "batch_size": 128, "val_fraction": 0.25, "grad_clip": 10.0,
          "min_lr_ratio": 0.05, "patience_frac": 0.25, "width": 128, "depth": 3}


# --------------------------------------------------------------------------- solver side


def make_test(case: Case, n_test: int) -> TrajectoryDataset:
    return generate_trajectories(case.system, n_test, t_final=case.t_test, dt=case.step, spin_up=case.spin_up,
                                 method="rk4", step_size=case.step / REFERENCE_REFINE, seed=TEST_SEED,
                                 progress=False)


def make_train(case: Case, n: int, noise: float, seed: int) -> TrajectoryDataset:
    pool = generate_trajectories(case.system, n, t_final=case.t_train, dt=case.step, spin_up=case.spin_up,
                                 method="rk4", step_size=case.step / TRAIN_REFINE, seed=TRAIN_SEED + seed,
                                 progress=False)
    clean = pool.y_true
    gen = torch.Generator().manual_seed(NOISE_SEED + seed)
    y = add_noise(clean, noise, generator=gen) if noise > 0 else clean.clone()
    return TrajectoryDataset(t=pool.t, y=y, system=pool.system, y_clean=clean if noise > 0 else None,
                             noise_level=noise, config={"benchmark": "ablation", "seed": seed})


def rollout_error(case: Case, test: TrajectoryDataset, corrector=None) -> tuple[float, float, float]:
    """Mean relative L2 error of the rollout over ``(0, horizon]`` and over the whole test horizon,
    and the fraction of blown-up rollouts."""
    system = attsolver.systems.make_system(**test.system)
    with torch.no_grad(), parametrize.cached():
        sol = attsolver.solve(system, test.y_true[:, 0], test.t, method=case.method, step_size=case.step,
                              corrector=corrector, options={"check_finite": False}).transpose(0, 1)
    true = test.y_true
    scale = float(true.abs().max())
    blown = ~torch.isfinite(sol).all(dim=(1, 2)) | (sol.abs().amax(dim=(1, 2)) > 1e3 * scale)
    p = torch.nan_to_num(sol, nan=1e3 * scale, posinf=1e3 * scale, neginf=-1e3 * scale).clamp(-1e3 * scale,
                                                                                              1e3 * scale)

    def err(j: int) -> float:
        d = (p[:, 1:j] - true[:, 1:j]).flatten(1).norm(dim=1) / true[:, 1:j].flatten(1).norm(dim=1)
        return float(d.mean())

    return err(int(round(case.horizon / case.step)) + 1), err(true.shape[1]), float(blown.double().mean())


def build(case: Case, variant: str, recipe: dict[str, Any]) -> AttSolver:
    dim = attsolver.systems.make_system(case.system).dim
    return AttSolver(dim, method=case.method, step_size=case.step, width=recipe["width"], depth=recipe["depth"],
                     **VARIANTS[variant][0])


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def run_solver(case: Case, variant: str, data: TrajectoryDataset, test: TrajectoryDataset, seed: int,
               recipe: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = build(case, variant, recipe)
    n_train = len(data) - max(1, round(recipe["val_fraction"] * len(data)))
    batches = math.ceil(n_train * (data.n_times - 1) / recipe["batch_size"])
    epochs = max(5, math.ceil(recipe["train_steps"] / batches))
    failure = None
    t0 = time.perf_counter()
    try:
        fit(model, data, epochs=epochs, lr=recipe["lr"], batch_size=recipe["batch_size"],
            val_fraction=recipe["val_fraction"], patience=max(5, math.ceil(recipe["patience_frac"] * epochs)), seed=seed, progress=False,
            grad_clip=recipe["grad_clip"], min_lr_ratio=recipe["min_lr_ratio"])
    except NonFiniteLossError as e:
        failure = str(e)
    train_s = time.perf_counter() - t0
    err, err_full, blown = rollout_error(case, test, model.double().eval())
    return {"case": case.name, "variant": variant, "seed": seed, "err": err, "err_full": err_full,
            "blowup_rate": blown,
            "params": n_params(model), "epochs": epochs, "train_s": train_s, "failure": failure}


# --------------------------------------------------------------------------- vision side


def vision_numbers(epochs_if_missing: int, seeds_if_missing: int) -> dict[str, Any]:
    """Standard-setting ResNet-20 digits accuracies: from vision.json if it is the standard
    configuration (24 epochs, reduction 4, batch 128, complete), else trained here."""
    path = ROOT / "benchmarks" / "results" / "vision.json"
    wanted = [v[1] for v in VARIANTS.values() if v[1] is not None]
    if path.exists():
        rep = json.loads(path.read_text())
        c = rep.get("config", {})
        rows = rep.get("rows", {})
        if (c.get("model") == "resnet20" and c.get("dataset") == "digits" and c.get("epochs") == 24
                and c.get("reduction") == 4 and c.get("batch_size") == 128
                and all(f"standard/{a}" in rows for a in wanted)):
            return {"source": "benchmarks/results/vision.json", "date": rep.get("date"), "epochs": c["epochs"],
                    "seeds": c["seeds"],
                    "rows": {a: {k: rows[f"standard/{a}"].get(k, math.nan)
                                 for k in ("acc_mean", "acc_std", "params", "n", "p_vs_none")}
                             for a in wanted}}
    from attsolver.vision import CifarResNet, count_parameters
    from attsolver.vision.data import load_digits
    from attsolver.vision.train import train_classifier

    data = load_digits()
    out = {}
    for a in wanted:
        accs = []
        for seed in range(seeds_if_missing):
            torch.manual_seed(seed)
            model = CifarResNet(20, data.num_classes, in_channels=data.in_channels, attention=a, reduction=4)
            hist = train_classifier(model, data, epochs=epochs_if_missing, batch_size=128, augment=True, seed=seed,
                                    progress=False, on_nonfinite="stop")
            accs.append(100 * hist.final_test_acc)
        out[a] = {**dict(zip(("acc_mean", "acc_std"), mean_std(accs))), "params": count_parameters(model),
                  "n": len(accs)}
    return {"source": "trained here", "date": None, "epochs": epochs_if_missing, "seeds": seeds_if_missing,
            "rows": out}


# --------------------------------------------------------------------------- report


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(f"{r['case']}/{r['variant']}", []).append(r)
    out = {}
    for key, rs in groups.items():
        errs = [r["err"] for r in rs]
        out[key] = {"n": len(rs), **dict(zip(("err_mean", "err_std"), mean_std(errs))), "err": errs,
                    "err_full_mean": statistics.fmean(r["err_full"] for r in rs),
                    "blowups": sum(r["blowup_rate"] > 0 for r in rs), "params": rs[0]["params"],
                    "train_s_mean": statistics.fmean(r["train_s"] for r in rs)}
    return out


def to_markdown(rep: dict[str, Any]) -> str:
    c, rows, vis = rep["config"], rep["rows"], rep["vision"]
    cases = [CASES[n] for n in c["cases"]]
    lines = [
        *header(rep, "Cross-domain ablation: one attention module, two domains", unfinished="row"),
        "",
        "| attention | Lorenz-63 error | spring-chain error | digits accuracy (%) "
        "| extra params: L63 / spring / ResNet-20 |",
        "|---|---:|---:|---:|---:|",
    ]
    coarse = rep["coarse"]
    lines.append(f"| *coarse solver, uncorrected* | {pm(coarse.get('lorenz63'), fmt='.3g')} | "
                 f"{pm(coarse.get('spring_chain'), fmt='.3g')} | — | — |")
    base_p = {cs.name: rows.get(f"{cs.name}/none", {}).get("params") for cs in cases}
    vbase = vis["rows"].get("none", {}).get("params")
    for v, (_, vname, _, _) in VARIANTS.items():
        cells, extra = [], []
        for name in ("lorenz63", "spring_chain"):
            r = rows.get(f"{name}/{v}")
            if r is None:
                cells.append("—")
                extra.append("—")
                continue
            cell = pm(r["err_mean"], r["err_std"], ".3f")
            if r["blowups"]:
                cell += f" ({r['blowups']} seeds blew up)"
            cells.append(cell)
            extra.append(f"+{r['params'] - base_p[name]:,}" if base_p[name] is not None else "?")
        vr = vis["rows"].get(vname) if vname else None
        acc = pm(vr["acc_mean"], vr["acc_std"]) if vr else "— (a ResNet is always residual: see none)"
        extra.append(f"+{vr['params'] - vbase:,}" if (vr and vbase) else "—")
        lines.append(f"| {v} | {cells[0]} | {cells[1]} | {acc} | {' / '.join(extra)} |")
    lines += [
        "",
        "Errors: relative L2 error ‖ŷ − y‖₂ / ‖y‖₂ of the corrected rollout on "
        f"{c['n_test']} held-out initial states (Lorenz-63 over t ∈ (0, {CASES['lorenz63'].horizon:g}], "
        f"spring chain over t ∈ (0, {CASES['spring_chain'].horizon:g}]), mean ± sample std over "
        f"{c['seeds']} seeds (a seed draws the training trajectories, their noise and the initialisation); "
        "lower is better. Extra parameters: against the `none` row of the same model.",
        "",
        "**Setup.** "
        + " ".join(f"{cs.label}: {cs.why}." for cs in cases)
        + f" Training data: {c['n_train']} trajectories (RK4 reference at h/{TRAIN_REFINE}) with relative "
        f"noise {c['noise']:g}, one-step targets, a quarter held out for early stopping. Every corrector: "
        f"AttSolver, features (y, dy), width {c['recipe']['width']}, depth {c['recipe']['depth']}, tanh, "
        f"combine add, gate reduction 4, spectral cap 1; Adam lr {c['recipe']['lr']:g} with cosine decay, "
        f"about {c['recipe']['train_steps']} optimiser steps, batch {c['recipe']['batch_size']}. "
        "`shared_se` and `dia` use the residual body with one gate shared by its layers "
        "(docs/method.md, \"Residual body with a shared gate\"); `none (residual body)` is that body "
        "without a gate, the control for both.",
        "",
        f"**Digits column.** ResNet-20, standard training (skip connections, BatchNorm, crop augmentation), "
        f"{vis['epochs']} epochs, {vis['seeds']} seeds, test accuracy mean ± std — "
        + (f"quoted from `{vis['source']}` ({vis['date']}), not retrained: its configuration is the standard one."
           if vis["source"] != "trained here" else "trained by this run.")
        + " Modules per model: " + "; ".join(f"`{v}`: corrector — {a}, ResNet — {b}"
                                            for v, (_, _, a, b) in VARIANTS.items()) + ".",
        "",
    ]
    lines += ["**Reading.** The gated rows differ from `none` in two ways for `shared_se` and `dia`: the gate, "
              "and the residual body it needs; the comparisons below separate the two.", ""]
    lines += [f"- {t}" for t in reading(rep)] + [""]
    return "\n".join(lines)


#: the gate-less corrector each gated one is compared with: the same body without the gate
CONTROL = {"se": "none", "iebn": "none", "shared_se": "none (residual body)", "dia": "none (residual body)",
           "none (residual body)": "none"}


def reading(rep: dict[str, Any]) -> list[str]:
    """Short findings generated from the numbers (so the text cannot drift from the table)."""
    rows, out, gate_wins = rep["rows"], [], []
    for name, label in (("lorenz63", "Lorenz-63"), ("spring_chain", "Spring chain")):
        if f"{name}/none" not in rows:
            continue
        have = [v for v in VARIANTS if f"{name}/{v}" in rows]
        means = {v: rows[f"{name}/{v}"]["err_mean"] for v in have}
        coarse = rep["coarse"][name]
        verb = "every corrector cuts" if max(means.values()) < coarse else "the correctors take"
        better, worse, same = [], [], []
        for v in have:
            ctrl = CONTROL.get(v)
            if ctrl is None or f"{name}/{ctrl}" not in rows:
                continue
            r, c = rows[f"{name}/{v}"], rows[f"{name}/{ctrl}"]
            p = welch_p(r["err"], c["err"])
            txt = f"`{v}` {r['err_mean'] / c['err_mean']:.2f}× `{ctrl}`" + (f" (p={p:.2g})" if num(p) else "")
            if p < 0.05 and r["err_mean"] < c["err_mean"] and v != "none (residual body)":
                gate_wins.append(f"`{v}` on {label}")
            (better if (p < 0.05 and r["err_mean"] < c["err_mean"]) else
             worse if (p < 0.05 and r["err_mean"] > c["err_mean"]) else same).append(txt)
        parts = [f"**{label}**: {verb} the coarse error ({coarse:.3g}) to {min(means.values()):.3g}–"
                 f"{max(means.values()):.3g}. Each row against its control — the same body without the gate (for the "
                 "residual control: the plain MLP body) — Welch's p:"]
        parts.append("significantly lower error: " + (", ".join(better) if better else "none") + ";")
        parts.append("significantly higher: " + (", ".join(worse) if worse else "none") + ";")
        parts.append("no significant difference at 5%: " + (", ".join(same) if same else "none") + ".")
        out.append(" ".join(parts))
        if name == "spring_chain" and rep.get("coarse_full"):
            full = [rows[f"{name}/{v}"]["err_full_mean"] for v in have]
            out.append(f"Over all 20 time units the corrected Euler rollouts still grow (error "
                       f"{min(full):.3g}–{max(full):.3g}, coarse {rep['coarse_full'][name]:.3g}): no module makes "
                       "coarse Euler usable that far from 16 noisy trajectories.")
    vis = rep["vision"]["rows"]
    if "none" in vis:
        diffs = []
        for a in ("se", "shared_se", "dia", "iebn"):
            if a in vis:
                p = vis[a].get("p_vs_none")
                diffs.append(f"`{a}` {vis[a]['acc_mean'] - vis['none']['acc_mean']:+.2f} pp"
                             + (f" (p={p:.2g})" if num(p) else ""))
        out.append("**Digits**, against `none`: " + ", ".join(diffs) + "; near the ceiling (about 98%), the "
                   "vision column separates the modules little.")
    if gate_wins:
        out.append("**In short**: in the solver, a gate beats its gate-less body significantly only for "
                   + ", ".join(gate_wins) + ".")
    else:
        out.append("**In short**: in the solver, no gate beats its gate-less body significantly; where the "
                   "gated correctors win, the residual body does the work, not the attention module.")
    return out


def plot(rep: dict[str, Any]):
    """``ablation.png``: per solver case the corrected error per attention module (mean ± std over
    seeds, each seed a dot; the uncorrected coarse solver dashed), and the digits accuracy."""
    cases = [n for n in rep["config"]["cases"] if any(k.startswith(f"{n}/") for k in rep["rows"])]
    fig, axes = figure(1, len(cases) + 1, figsize=(4.6 * (len(cases) + 1), 4.2), squeeze=False)
    for ax, name in zip(axes[0], cases):
        have = [v for v in VARIANTS if f"{name}/{v}" in rep["rows"]]
        for i, v in enumerate(have):
            r = rep["rows"][f"{name}/{v}"]
            ax.scatter([i] * len(r["err"]), r["err"], s=8, color="0.6")
            ax.errorbar(i, r["err_mean"], yerr=r["err_std"] if num(r["err_std"]) else 0, fmt="o", color="C0",
                        capsize=4)
        if num(rep["coarse"].get(name)):
            ax.axhline(rep["coarse"][name], color="k", ls="--", lw=1, label="coarse solver, uncorrected")
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(have)), have, rotation=30, ha="right")
        ax.set(yscale="log", ylabel="relative L2 error of the corrected rollout", title=CASES[name].label)
    vis = rep["vision"]["rows"]
    names = [a for a in (v[1] for v in VARIANTS.values()) if a in vis]
    axes[0][-1].errorbar(range(len(names)), [vis[a]["acc_mean"] for a in names], fmt="o", capsize=4, color="C1",
                         yerr=[vis[a]["acc_std"] if num(vis[a]["acc_std"]) else 0 for a in names])
    axes[0][-1].set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes[0][-1].set(ylabel="test accuracy (%)", title="ResNet-20 on digits")
    yield "ablation.png", fig


def write(out: Path, rep: dict[str, Any], echo: bool = False) -> None:
    rep["rows"] = summarise(rep["runs"])
    write_report(out, "ablation", rep, to_markdown, plot, echo=echo)


def main(argv=None) -> int:
    ap = parser("ablation", __doc__, out=None, quick="2 seeds, 400 optimiser steps, 16 test states (minutes)",
                render=True)
    ap.add_argument("--out", default=None, help="folder for ablation.md/.json (default benchmarks/results; "
                    "out/bench-ablation-quick with --quick)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 20; 2 with --quick)")
    ap.add_argument("--train-steps", type=int, default=None, help="optimiser steps per corrector (default 1200)")
    ap.add_argument("--n-train", type=int, default=16, help="training trajectories (default 16)")
    ap.add_argument("--noise", type=float, default=1e-2, help="relative observation noise (default 1e-2)")
    ap.add_argument("--n-test", type=int, default=None, help="held-out initial states (default 32; 16 with --quick)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--vision-epochs", type=int, default=8,
                    help="epochs per digits run when vision.json cannot be reused (default 8)")
    args = ap.parse_args(argv)
    out = Path(args.out or ("out/bench-ablation-quick" if args.quick else "benchmarks/results"))
    if args.render:
        write(out, read_report(out / "ablation.json"), echo=True)
        return 0
    run = Run("ablation", argv, quick=args.quick)
    seeds = args.seeds or (2 if args.quick else 20)
    recipe = {**RECIPE, "train_steps": args.train_steps or (400 if args.quick else RECIPE["train_steps"])}
    n_test = args.n_test or (16 if args.quick else 32)
    rep = run.report(config={"cases": args.cases, "variants": args.variants, "seeds": seeds, "n_train": args.n_train,
                             "noise": args.noise, "n_test": n_test, "recipe": recipe,
                             "case_details": {n: asdict(CASES[n]) for n in args.cases}},
                     vision=vision_numbers(args.vision_epochs, seeds), coarse={}, coarse_full={}, runs=[])
    tests = {n: make_test(CASES[n], n_test) for n in args.cases}
    for n in args.cases:
        rep["coarse"][n], rep["coarse_full"][n], _ = rollout_error(CASES[n], tests[n])
    for seed in range(seeds):  # seeds outermost: a stopped run still has every row at fewer seeds
        for n in args.cases:
            case = CASES[n]
            data = make_train(case, args.n_train, args.noise, seed)
            for v in args.variants:
                r = run_solver(case, v, data, tests[n], seed, recipe)
                rep["runs"].append(r)
                run.log(f"seed {seed} {n:12s} {v:22s} err {r['err']:.4g} (coarse {rep['coarse'][n]:.4g}) "
                        f"{r['params']:,} params, {r['train_s']:.1f} s")
            write(out, run.stamp(rep, complete=False))
    write(out, run.stamp(rep, complete=True), echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
