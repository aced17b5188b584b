"""Continual learning on scikit-learn's 8x8 digits: SGD, AlterSGD and SAM (offline, CPU).

Two task sequences, each 5 tasks, one small MLP (64-128-128-10) trained task after task
with no replay and no task labels at test time:

* ``split`` — class-incremental: tasks {0,1}, {2,3}, ..., {8,9}; one 10-way head; a task's
  accuracy is the 10-way accuracy on its classes' test images.
* ``permuted`` — domain-incremental: every task is all ten digits under its own fixed
  random pixel permutation (drawn per seed).

Every optimizer gets the same epochs, batch size, learning rate and momentum per task.
AlterSGD resets its trigger at the start of each task and alternates descent/ascent once
the epoch-mean training loss plateaus (``attsolver.optim.AlterSGD``); SAM makes the same
SGD step at ρ-perturbed weights (two passes per step).  After each task: the accuracy on
every task so far, average accuracy, forgetting (Chaudhry et al. 2018: the mean over the
earlier tasks of the best earlier accuracy minus the current one) and flatness (mean
training-loss increase of the current task under random weight perturbations of relative
radius r, ``attsolver.optim.perturbed_loss_increase``).  Mean ± sample std over seeds; a
seed fixes the initial weights, batch order and permutations and is shared by the
optimizers, so the comparison with SGD is paired.

    attsolver bench continual [--quick] [--seeds 10] [--out benchmarks/results]
    attsolver bench continual --render          # rewrite continual.md / .png from continual.json
"""

from __future__ import annotations

import functools
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from attsolver.optim import SAM, AlterSGD, perturbed_loss_increase
from attsolver.vision.data import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import (Progress, Run, figure, fingerprint, header, mean_std, num, paired_p,  # noqa: E402
                               parser, pm, read_report, write_report)

VARIANTS = {
    "split": "class-incremental: 5 tasks of 2 classes, one 10-way head",
    "permuted": "domain-incremental: 5 pixel permutations of all 10 classes",
}
METHODS = ("sgd", "altersgd", "sam")
N_TASKS = 5
RADII = (0.05, 0.1, 0.2)
PROGRESS = "continual_progress.jsonl"


def default_config(quick: bool) -> dict[str, Any]:
    return {
        "hidden": 128, "batch_size": 32, "lr": 0.02, "momentum": 0.9, "weight_decay": 0.0,
        "epochs": {"split": 10 if quick else 15, "permuted": 6 if quick else 10},
        "altersgd": {"window": "steps per epoch", "rel_tol": 0.05, "abs_tol": 0.02, "patience": 2, "ascent_lr": "= lr"},
        "sam_rho": 0.05, "radii": list(RADII), "flatness_samples": 8 if quick else 16,
        "flatness_batch": 512, "test_fraction": 0.2,
    }


# ----------------------------------------------------------------------------- data and tasks
@functools.lru_cache(maxsize=2)
def _digits(test_fraction: float):
    return load_digits(test_fraction=test_fraction, seed=0)


def make_tasks(variant: str, seed: int, test_fraction: float = 0.2) -> list[dict[str, torch.Tensor]]:
    """The five tasks of a variant: dicts with flattened, standardised ``train_x [N, 64]``,
    ``train_y``, ``test_x``, ``test_y``.  Split tasks are the class pairs (2k, 2k+1);
    permuted tasks are all classes under a per-seed pixel permutation."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    data = _digits(test_fraction)
    tx, ty = data.train_x.flatten(1), data.train_y
    vx, vy = data.test_x.flatten(1), data.test_y
    mean, std = float(tx.mean()), float(tx.std())  # one scalar pair: unchanged by a permutation
    tx, vx = (tx - mean) / std, (vx - mean) / std
    tasks = []
    if variant == "split":
        for k in range(N_TASKS):
            tr = (ty == 2 * k) | (ty == 2 * k + 1)
            te = (vy == 2 * k) | (vy == 2 * k + 1)
            tasks.append({"train_x": tx[tr], "train_y": ty[tr], "test_x": vx[te], "test_y": vy[te]})
    else:
        g = torch.Generator().manual_seed(10_000 + seed)
        for _ in range(N_TASKS):
            perm = torch.randperm(tx.shape[1], generator=g)
            tasks.append({"train_x": tx[:, perm], "train_y": ty, "test_x": vx[:, perm], "test_y": vy})
    return tasks


def make_model(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


# ----------------------------------------------------------------------------- metrics
def average_accuracy(acc: list[list[float]]) -> list[float]:
    """``acc[i][j]``: accuracy on task j after training task i -> mean over j <= i, per i."""
    return [statistics.fmean(row[: i + 1]) for i, row in enumerate(acc)]


def forgetting(acc: list[list[float]]) -> list[float | None]:
    """Per task i >= 1: mean over j < i of (max over l in [j, i-1] of acc[l][j]) - acc[i][j];
    None after the first task (nothing to forget yet)."""
    out: list[float | None] = [None]
    for i in range(1, len(acc)):
        out.append(statistics.fmean(max(acc[l][j] for l in range(j, i)) - acc[i][j] for j in range(i)))
    return out


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# ----------------------------------------------------------------------------- one run
def make_optimizer(method: str, model: nn.Module, cfg: dict, steps_per_epoch: int):
    common = dict(lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    if method == "sgd":
        return torch.optim.SGD(model.parameters(), **common)
    if method == "altersgd":
        a = cfg["altersgd"]
        return AlterSGD(model.parameters(), **common, window=steps_per_epoch, rel_tol=a["rel_tol"],
                        abs_tol=a["abs_tol"], patience=a["patience"])
    if method == "sam":
        return SAM(model.parameters(), torch.optim.SGD, rho=cfg["sam_rho"], **common)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def run_one(variant: str, method: str, seed: int, cfg: dict) -> dict[str, Any]:
    """Train the five tasks in order with one optimizer; returns the accuracy matrix and
    the per-task metrics."""
    tasks = make_tasks(variant, seed, cfg["test_fraction"])
    torch.manual_seed(seed)
    model = make_model(cfg["hidden"])
    bs, epochs = cfg["batch_size"], cfg["epochs"][variant]
    opt = None
    acc: list[list[float]] = []
    flat: list[dict[str, float]] = []
    trigger_epochs: list[float | None] = []
    alternating_fraction: list[float] = []
    final_train_loss: list[float] = []
    grad_norm: list[float] = []
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for k, task in enumerate(tasks):
        x, y = task["train_x"], task["train_y"]
        n = len(y)
        steps = math.ceil(n / bs)
        if opt is None:
            opt = make_optimizer(method, model, cfg, steps)
        elif isinstance(opt, AlterSGD):
            opt.reset_trigger()  # a new task: plain descent until its loss plateaus
            opt.window = steps
        for _ in range(epochs):
            order = torch.randperm(n, generator=g)
            for s in range(steps):
                idx = order[s * bs:(s + 1) * bs]
                xb, yb = x[idx], y[idx]

                def closure():
                    opt.zero_grad()
                    loss = F.cross_entropy(model(xb), yb)
                    loss.backward()
                    return loss

                if method == "sgd":
                    closure()
                    opt.step()
                else:
                    opt.step(closure)
        if isinstance(opt, AlterSGD):
            trigger_epochs.append(None if opt.trigger_step is None else opt.trigger_step / steps)
            alternating_fraction.append(0.0 if opt.trigger_step is None
                                        else (opt.steps - opt.trigger_step) / opt.steps)
        acc.append([_accuracy(model, t["test_x"], t["test_y"]) for t in tasks])
        sub = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))[: cfg["flatness_batch"]]
        fx, fy = x[sub], y[sub]
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(fx), fy)
        loss.backward()  # the pair's target: ½‖∇L‖² (docs/altersgd.md)
        final_train_loss.append(float(loss.detach()))
        grad_norm.append(float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))))
        model.zero_grad(set_to_none=True)
        inc = perturbed_loss_increase(model, lambda m: F.cross_entropy(m(fx), fy), cfg["radii"],
                                      samples=cfg["flatness_samples"], seed=seed)
        flat.append({str(r): v for r, v in inc.items()})
    return {"variant": variant, "method": method, "seed": seed, "acc": acc,
            "avg_acc": average_accuracy(acc), "forgetting": forgetting(acc),
            "learning_acc": [acc[i][i] for i in range(len(acc))], "flatness": flat,
            "train_loss": final_train_loss, "grad_norm": grad_norm, "trigger_epoch": trigger_epochs,
            "alternating_fraction": alternating_fraction, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- summary
def summarise(runs: list[dict], cfg: dict) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for variant in VARIANTS:
        base = {r["seed"]: r for r in runs if r["variant"] == variant and r["method"] == "sgd"}
        for method in METHODS:
            rs = sorted((r for r in runs if r["variant"] == variant and r["method"] == method),
                        key=lambda r: r["seed"])
            if not rs:
                continue
            T = len(rs[0]["acc"])
            row: dict[str, Any] = {"variant": variant, "method": method, "n": len(rs), "seeds": [r["seed"] for r in rs]}
            for key in ("avg_acc", "forgetting", "learning_acc", "train_loss"):
                row[key] = [mean_std([r[key][i] for r in rs]) for i in range(T)]
            row["flatness"] = {str(rad): [mean_std([r["flatness"][i][str(rad)] for r in rs]) for i in range(T)]
                               for rad in cfg["radii"]}
            row["learning_acc_avg"] = mean_std([statistics.fmean(r["learning_acc"]) for r in rs])
            row["train_loss_avg"] = mean_std([statistics.fmean(r["train_loss"]) for r in rs])
            row["grad_norm_avg"] = mean_std([statistics.fmean(r["grad_norm"]) for r in rs])
            row["flatness_avg"] = {str(rad): mean_std([statistics.fmean(f[str(rad)] for f in r["flatness"]) for r in rs])
                                   for rad in cfg["radii"]}
            row["final_avg_acc"] = [r["avg_acc"][-1] for r in rs]
            row["final_forgetting"] = [r["forgetting"][-1] for r in rs]
            row["seconds_mean"] = statistics.fmean(r["seconds"] for r in rs)
            if method == "altersgd":
                trig = [e for r in rs for e in r["trigger_epoch"]]
                row["trigger_fired"] = sum(e is not None for e in trig)
                row["trigger_total"] = len(trig)
                row["trigger_epoch_mean"] = mean_std(trig)[0]
                row["alternating_fraction_mean"] = statistics.fmean(f for r in rs for f in r["alternating_fraction"])
            paired = [(r, base[r["seed"]]) for r in rs if r["seed"] in base]
            mid = str(cfg["radii"][len(cfg["radii"]) // 2])
            row["vs_sgd"] = {}
            if method != "sgd" and len(paired) > 1:
                for key, get in (("final_avg_acc", lambda r: r["avg_acc"][-1]),
                                 ("final_forgetting", lambda r: r["forgetting"][-1]),
                                 ("final_learning_acc", lambda r: statistics.fmean(r["learning_acc"])),
                                 ("grad_norm", lambda r: statistics.fmean(r["grad_norm"])),
                                 ("train_loss", lambda r: statistics.fmean(r["train_loss"])),
                                 (f"flatness_r{mid}", lambda r: statistics.fmean(f[mid] for f in r["flatness"]))):
                    a, b = [get(r) for r, _ in paired], [get(s) for _, s in paired]
                    row["vs_sgd"][key] = {"diff_mean": statistics.fmean(x - y for x, y in zip(a, b)),
                                          "p_paired": paired_p(a, b)}
            rows[f"{variant}/{method}"] = row
    return rows


def _pm(ms, scale: float = 100.0, digits: int = 1, kind: str = "f") -> str:
    return pm(ms, fmt=f".{digits}{kind}", scale=scale)


def _p(p: float) -> str:
    return f"{p:.2g}" if num(p) else "n/a"


def verdict(rows: dict, variant: str, cfg: dict) -> str:
    """One sentence per variant, generated from the numbers (no hand-typed conclusions)."""
    a, s = rows.get(f"{variant}/altersgd"), rows.get(f"{variant}/sgd")
    if not a or not s or not a["vs_sgd"]:
        return f"- `{variant}`: not enough runs to compare."
    mid = str(cfg["radii"][len(cfg["radii"]) // 2])
    f = a["vs_sgd"]["final_forgetting"]
    acc = a["vs_sgd"]["final_avg_acc"]
    fl = a["vs_sgd"][f"flatness_r{mid}"]

    def sig(p):
        return num(p) and p < 0.05

    if sig(f["p_paired"]) and f["diff_mean"] < 0:
        forget = f"AlterSGD **reduces** final forgetting by {-100 * f['diff_mean']:.1f} pp (paired p={_p(f['p_paired'])})"
    elif sig(f["p_paired"]) and f["diff_mean"] > 0:
        forget = f"AlterSGD **increases** final forgetting by {100 * f['diff_mean']:.1f} pp (paired p={_p(f['p_paired'])})"
    else:
        forget = (f"AlterSGD does **not** change final forgetting significantly ({100 * f['diff_mean']:+.1f} pp, "
                  f"paired p={_p(f['p_paired'])})")
    acc_txt = f"final average accuracy {100 * acc['diff_mean']:+.1f} pp (p={_p(acc['p_paired'])})"
    change = f"loss increase at r={mid} {fl['diff_mean']:+.2g}, paired p={_p(fl['p_paired'])}"
    if sig(fl["p_paired"]) and fl["diff_mean"] < 0:
        flat_txt = f"its minima are **flatter** than SGD's ({change})"
    elif sig(fl["p_paired"]):
        flat_txt = f"its minima are **sharper** than SGD's by this measure ({change})"
    else:
        flat_txt = f"no significant difference in flatness ({change})"
    gn = a["vs_sgd"]["grad_norm"]
    gn_txt = (f"end-of-task gradient norm {gn['diff_mean']:+.2g} against SGD "
              f"({'significant' if sig(gn['p_paired']) else 'not significant'}, paired p={_p(gn['p_paired'])})")
    trig = f"the trigger fired in {a['trigger_fired']}/{a['trigger_total']} tasks"
    if a["trigger_fired"] == 0:
        return f"- `{variant}`: the trigger never fired, so AlterSGD ran plain SGD (identical numbers)."
    la, ls = a["train_loss_avg"][0], s["train_loss_avg"][0]
    caveat = ""
    if la > 1.2 * ls:
        caveat = (f" Caveat on flatness: AlterSGD ends its tasks at a higher training loss ({la:.2g} vs {ls:.2g}); the "
                  "cross-entropy's curvature shrinks as the loss goes to zero, so the perturbation measure also "
                  "reflects how far training has gone, not only the shape of the minimum.")
    return f"- `{variant}`: {forget}; {acc_txt}; {flat_txt}; {gn_txt}; {trig}.{caveat}"


def to_markdown(report: dict) -> str:
    cfg, rows = report["config"], report["rows"]
    mid = str(cfg["radii"][len(cfg["radii"]) // 2])
    lines = [
        *header(report, "Continual learning: AlterSGD, SGD and SAM on digits"),
        "",
        f"scikit-learn's 8x8 digits ({report['data']['n_train']} train / {report['data']['n_test']} test images), "
        f"flattened; an MLP 64-{cfg['hidden']}-{cfg['hidden']}-10 (ReLU) trained on 5 tasks in sequence, no replay. "
        f"`split`: {VARIANTS['split']}; `permuted`: {VARIANTS['permuted']}. Every optimizer: batch "
        f"{cfg['batch_size']}, lr {cfg['lr']}, momentum {cfg['momentum']}, weight decay {cfg['weight_decay']}, "
        f"epochs per task {cfg['epochs']['split']} (split) / {cfg['epochs']['permuted']} (permuted). AlterSGD: "
        f"window = one epoch of steps, rel_tol {cfg['altersgd']['rel_tol']}, abs_tol {cfg['altersgd']['abs_tol']}, patience {cfg['altersgd']['patience']}, "
        f"ascent lr = lr, trigger reset at each task. SAM: ρ = {cfg['sam_rho']}, same SGD step (two passes per "
        f"step). {report['seeds']} seeds, mean ± sample std; the seed fixes initial weights, batch order and "
        "permutations for all three optimizers, so the p-values are paired t-tests against SGD.",
        "",
        "## Headline: after the last task",
        "",
        "Average accuracy (%) over the 5 tasks, forgetting (pp; lower is better), learning accuracy "
        "(accuracy on each task right after learning it, averaged: plasticity), training loss of the task just "
        "learned at its end and the norm of its full-batch gradient there (both averaged over the tasks; a "
        "descent/ascent pair is a gradient step on ½‖∇L‖²), and flatness (training-loss "
        f"increase of the task just learned under random weight perturbation of relative radius {mid}, "
        "averaged over the tasks; lower is flatter).",
        "",
        "| variant | optimizer | average accuracy | forgetting | learning accuracy | train loss | ‖∇L‖ | flatness ΔL | vs SGD: acc, forgetting (p) | s/run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for variant in VARIANTS:
        for method in METHODS:
            r = rows.get(f"{variant}/{method}")
            if not r:
                continue
            vs = ""
            if r["vs_sgd"]:
                a, f = r["vs_sgd"]["final_avg_acc"], r["vs_sgd"]["final_forgetting"]
                vs = (f"{100 * a['diff_mean']:+.1f} (p={_p(a['p_paired'])}), "
                      f"{100 * f['diff_mean']:+.1f} (p={_p(f['p_paired'])})")
            lines.append(f"| {variant} | {method} | {_pm(r['avg_acc'][-1])} | {_pm(r['forgetting'][-1])} | "
                         f"{_pm(r['learning_acc_avg'])} | {_pm(r['train_loss_avg'], scale=1.0, digits=2, kind='e')} | {_pm(r['grad_norm_avg'], scale=1.0, digits=2, kind='e')} | {_pm(r['flatness_avg'][mid], scale=1.0, digits=2, kind='e')} | {vs} | "
                         f"{r['seconds_mean']:.1f} |")
    lines += ["", "## Reading the numbers", ""]
    present = [v for v in VARIANTS if any(k.startswith(f"{v}/") for k in rows)]
    lines += [verdict(rows, v, cfg) for v in present]
    alt = [rows[k] for k in rows if k.endswith("/altersgd")]
    alt = [r for r in alt if r["trigger_fired"]]
    if alt:
        lines.append("- When AlterSGD alternated: " + "; ".join(
            f"`{r['variant']}` trigger after {r['trigger_epoch_mean']:.1f} epochs on average, "
            f"{100 * r['alternating_fraction_mean']:.0f}% of the steps in the alternating phase" for r in alt) + ".")
    split_forget = [rows[f"split/{m}"]["forgetting"][-1][0] for m in METHODS if f"split/{m}" in rows]
    if split_forget and min(split_forget) > 0.9:
        lines.append(f"- In `split` (class-incremental, one head, no replay) every optimizer forgets at least "
                     f"{100 * min(split_forget):.0f} pp: training on new classes alone overwrites the old classes' "
                     "logits, and a flat minimum cannot protect a head whose earlier classes are never seen again. "
                     "The `permuted` variant, where all tasks share the label space, is where flatness can matter.")
    lines.append("")
    tasks = " | ".join(f"task {k + 1}" for k in range(N_TASKS))
    for variant in present:
        done = [(m, rows[f"{variant}/{m}"]) for m in METHODS if rows.get(f"{variant}/{m}")]
        lines += [f"## `{variant}` after each task", "",
                  "Average accuracy (%) / forgetting (pp) after task k, mean ± std over seeds.", "",
                  f"| optimizer | {tasks} |", "|---|" + "---:|" * N_TASKS]
        lines += [f"| {m} | " + " | ".join(f"{_pm(a)} / {_pm(f)}" for a, f in zip(r["avg_acc"], r["forgetting"]))
                  + " |" for m, r in done]
        lines += ["", "Flatness: mean training-loss increase of the task just learned under random perturbation "
                  "of every weight tensor W by r·‖W‖ in a random direction, per radius r.", "",
                  f"| optimizer | r | {tasks} |", "|---|---:|" + "---:|" * N_TASKS]
        lines += [f"| {m} | {rad} | " + " | ".join(_pm(v, scale=1.0, digits=2, kind="e") for v in r["flatness"][str(rad)])
                  + " |" for m, r in done for rad in cfg["radii"]]
        lines.append("")
    lines += ["## Plot", "", "![average accuracy, forgetting and flatness after each task](continual.png)", ""]
    return "\n".join(lines)


def plot(report: dict):
    """``continual.png``: average accuracy, forgetting and flatness after each task."""
    rows, cfg = report["rows"], report["config"]
    mid = str(cfg["radii"][len(cfg["radii"]) // 2])
    fig, axes = figure(2, 3, figsize=(13, 7), dpi=90)
    for row_ax, variant in zip(axes, VARIANTS):
        for method in METHODS:
            r = rows.get(f"{variant}/{method}")
            if not r:
                continue
            tasks = list(range(1, len(r["avg_acc"]) + 1))
            # ± one std over seeds, clipped to the feasible range (accuracy 0..100 %, forgetting -100..100 pp):
            # near 100 pp of forgetting a symmetric bar would claim impossible values
            for ax, key, (lo, hi) in ((row_ax[0], "avg_acc", (0, 100)), (row_ax[1], "forgetting", (-100, 100))):
                pts = [(t, 100 * m, 100 * (s if num(s) else 0)) for t, (m, s) in zip(tasks, r[key]) if num(m)]
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                            yerr=[[min(p[2], p[1] - lo) for p in pts], [min(p[2], hi - p[1]) for p in pts]],
                            marker="o", capsize=3, label=method)
            fl = r["flatness"][mid]
            row_ax[2].errorbar(tasks, [m for m, _ in fl], yerr=[s if num(s) else 0 for _, s in fl], marker="o",
                               capsize=3, label=method)
        row_ax[0].set(title=f"{variant}: average accuracy", xlabel="after task", ylabel="% (± std, clipped to 0-100)",
                      ylim=(0, 105))
        row_ax[1].set(title=f"{variant}: forgetting", xlabel="after task", ylabel="pp (± std, clipped to ≤ 100)")
        row_ax[2].set(title=f"{variant}: loss increase at r={mid}", xlabel="after task", ylabel="ΔL")
        for ax in row_ax:
            ax.set_xticks(range(1, N_TASKS + 1))
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
    yield "continual.png", fig


def main(argv=None) -> int:
    ap = parser("continual", __doc__, quick="2 seeds, fewer epochs (about a minute)", render=True)
    ap.add_argument("--seeds", type=int, default=None, help="seeds (default 10; 2 with --quick)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.render:
        report = read_report(out / "continual.json")
        report["rows"] = summarise(report["runs"], report["config"])
        write_report(out, "continual", report, to_markdown, plot, echo=True)
        return 0
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 10)
    if seeds < 1:
        raise SystemExit("attsolver bench continual: --seeds must be >= 1")
    run = Run("continual", argv, quick=args.quick)
    out.mkdir(parents=True, exist_ok=True)
    cfg = default_config(args.quick)
    key = fingerprint(cfg, 10)
    progress = Progress(out / PROGRESS)  # finished runs; a rerun with the same config resumes
    data = load_digits(test_fraction=cfg["test_fraction"], seed=0)
    report = run.report(config=cfg, seeds=seeds, data={"n_train": len(data.train_y), "n_test": len(data.test_y)},
                        runs=[], rows={})
    for variant in args.variants:
        for seed in range(seeds):
            for method in args.methods:
                rec, _ = progress.run(f"{key}/{variant}/{method}/{seed}",
                                      lambda: run_one(variant, method, seed, cfg))  # noqa: B023 - called at once
                r = {k: v for k, v in rec.items() if k != "key"}
                report["runs"].append(r)
                fl = r["flatness"][-1][str(cfg["radii"][len(cfg["radii"]) // 2])]
                run.log(f"{variant:8s} {method:8s} seed {seed}: final avg acc {100 * r['avg_acc'][-1]:.1f}%, "
                        f"forgetting {100 * r['forgetting'][-1]:.1f} pp, flatness {fl:.3g} ({r['seconds']:.1f} s)")
            report["rows"] = summarise(report["runs"], cfg)
            # after every seed, so a stopped run leaves what it finished
            write_report(out, "continual", run.stamp(report, complete=False), to_markdown, plot)
    write_report(out, "continual", run.stamp(report, complete=True), to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
