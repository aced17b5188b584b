"""Pruning by blended criteria on a ResNet-20 (digits, CPU-sized).

Per seed: train ResNet-20 (projection shortcuts, which torch-pruning can follow) on the
digits training images minus a stratified held-out fifth; score every filter with each
base criterion (L1, L2, FPGM, BN scale, Taylor); cluster the criteria by their per-layer
Spearman correlation and keep one representative per cluster; then, for each target FLOP
reduction, find the channel ratio that reaches it, calibrate the blend's α's with the
evolutionary search (fitness: held-out accuracy after BN recalibration), and prune the same
trained network with each single criterion, the calibrated blend and the equal-weight blend
of the representatives.  Every pruned network is BN-recalibrated and fine-tuned the same way.
Reported: test accuracy right after pruning, after BN recalibration and after fine-tuning
(mean ± sample std over seeds), parameters, FLOPs and measured CPU latency (ratios to the
unpruned network, measured in the same run).

    attsolver bench pruning [--quick] [--seeds 4] [--out benchmarks/results]
    python benchmarks/pruning.py --quick
"""

from __future__ import annotations

import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from attsolver.pruning import (CRITERIA, BlendedImportance, accumulate_gradients, accuracy, calibrate_blend,
                               clone_with_grads, cluster_criteria, compare_latency, heldout_split, layer_scores,
                               model_cost, prune_model, ratio_for_reduction, recalibrate_bn)
from attsolver.vision import make_model
from attsolver.vision.data import ImageData, load_digits
from attsolver.vision.train import train_classifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Run, figure, header, mean_std, num, paired_p, parser, pm, write_report  # noqa: E402

SINGLE = list(CRITERIA)
VARIANTS = SINGLE + ["blend_uniform", "blend"]
FULL = {"seeds": 4, "epochs": 20, "finetune_epochs": 6, "population": 8, "generations": 5, "targets": [0.5, 0.75]}
QUICK = {"seeds": 2, "epochs": 8, "finetune_epochs": 2, "population": 6, "generations": 3, "targets": [0.5, 0.75]}
FINETUNE_LR = 0.01
THRESHOLD = 0.3  # clustering cut: criteria with mean Spearman > 0.7 share a cluster
HELDOUT = 0.2
LATENCY_REPEATS = 40


def _train_data(data: ImageData, keep: torch.Tensor) -> ImageData:
    return ImageData("digits", data.train_x[keep], data.train_y[keep], data.test_x, data.test_y,
                     data.num_classes, data.classes, flip=False)


def run_seed(data: ImageData, seed: int, cfg: dict, log=print) -> dict:
    keep, held = heldout_split(data.train_y, HELDOUT, seed=seed)
    tr = _train_data(data, keep)
    x_tr, y_tr = tr.normalize(tr.train_x), tr.train_y
    x_ho, y_ho = tr.normalize(data.train_x[held]), data.train_y[held]
    x_te, y_te = tr.normalize(data.test_x), data.test_y
    example = x_tr[:1]
    x_lat = x_te[:256]

    torch.manual_seed(seed)
    base = make_model("resnet20", num_classes=10, in_channels=1, shortcut="B")
    t0 = time.perf_counter()
    train_classifier(base, tr, epochs=cfg["epochs"], seed=seed, progress=False)
    train_s = time.perf_counter() - t0
    base.eval()
    flops0, params0 = model_cost(base, example)
    out = {"seed": seed, "n_train": len(keep), "n_heldout": len(held), "base": {
        "test_acc": accuracy(base, x_te, y_te), "heldout_acc": accuracy(base, x_ho, y_ho), "flops": flops0,
        "params": params0, "train_s": train_s}}
    log(f"seed {seed}: base test acc {100 * out['base']['test_acc']:.2f}% ({params0:,} params, {train_s:.0f} s)")

    accumulate_gradients(base, x_tr, y_tr)  # for the Taylor criterion
    scores = layer_scores(base, example)
    clusters = cluster_criteria(scores, SINGLE, method="spearman", threshold=THRESHOLD)
    kendall = cluster_criteria(scores, SINGLE, method="kendall", threshold=THRESHOLD)
    out["clusters"] = clusters.to_dict()
    out["kendall"] = kendall.to_dict()
    reps = clusters.representatives
    log(f"  clusters {clusters.clusters} -> representatives {reps}")

    out["targets"] = []
    for target in cfg["targets"]:
        ratio, reached = ratio_for_reduction(base, example, target, metric="flops")
        t0 = time.perf_counter()
        blend, search = calibrate_blend(base, reps, pruning_ratio=ratio, example_inputs=example, calib_x=x_tr,
                                        heldout_x=x_ho, heldout_y=y_ho, population=cfg["population"],
                                        generations=cfg["generations"], seed=seed)
        search_s = time.perf_counter() - t0
        importances = {c: c for c in SINGLE}
        importances["blend_uniform"] = BlendedImportance([1.0] * len(reps), reps)
        importances["blend"] = blend
        runs, pruned = {}, {}
        for name, imp in importances.items():
            m = clone_with_grads(base)
            rep = prune_model(m, imp, pruning_ratio=ratio, example_inputs=example)
            m.zero_grad(set_to_none=True)
            acc_pruned = accuracy(m, x_te, y_te)
            recalibrate_bn(m, x_tr)
            acc_recal, ho_recal = accuracy(m, x_te, y_te), accuracy(m, x_ho, y_ho)
            t1 = time.perf_counter()
            train_classifier(m, tr, epochs=cfg["finetune_epochs"], lr=FINETUNE_LR,
                             milestones=[cfg["finetune_epochs"] // 2], seed=seed, progress=False)
            ft_s = time.perf_counter() - t1
            m.eval()
            pruned[name] = m
            runs[name] = {"params": rep.params_after, "flops": rep.flops_after,
                          "params_reduction": rep.params_reduction, "flops_reduction": rep.flops_reduction,
                          "acc_pruned": acc_pruned, "acc_recal": acc_recal, "heldout_recal": ho_recal,
                          "acc_finetuned": accuracy(m, x_te, y_te), "finetune_s": ft_s}
            log(f"  target {target:.0%} {name:13s}: pruned {100 * acc_pruned:6.2f}%  recal {100 * acc_recal:6.2f}%  "
                f"fine-tuned {100 * runs[name]['acc_finetuned']:6.2f}%")
        # latency is a property of the architecture, which local pruning makes the same for every
        # variant: time the unpruned network and one pruned network in turn, in this same process
        assert len({tuple(p.shape for p in m.parameters()) for m in pruned.values()}) == 1
        lat = compare_latency({"unpruned": base, "pruned": pruned["blend"]}, x_lat, repeats=LATENCY_REPEATS,
                             clock="process")
        log(f"  target {target:.0%}: search {search_s:.0f} s, latency {1e3 * lat['pruned']:.2f} ms vs "
            f"{1e3 * lat['unpruned']:.2f} ms unpruned")
        out["targets"].append({"target": target, "ratio": ratio, "flops_reduction": reached,
                               "unpruned_latency_s": lat["unpruned"], "pruned_latency_s": lat["pruned"],
                               "latency_ratio": lat["pruned"] / lat["unpruned"],
                               "alpha": dict(zip(reps, search.best.tolist())), "search_fitness": search.best_fitness,
                               "search_history": search.history, "search_evaluations": search.evaluations,
                               "search_s": search_s, "runs": runs})
    return out


def summarise(seeds: list[dict]) -> dict:
    rows = {}
    targets = [t["target"] for t in seeds[0]["targets"]] if seeds else []
    for ti, target in enumerate(targets):
        per = {}
        for v in VARIANTS:
            recs = [s["targets"][ti]["runs"][v] for s in seeds if ti < len(s["targets"])]
            row = {"n": len(recs), "params": recs[0]["params"], "flops": recs[0]["flops"],
                   "params_ratio": statistics.fmean(r["params"] for r in recs) / seeds[0]["base"]["params"],
                   "flops_ratio": statistics.fmean(r["flops"] for r in recs) / seeds[0]["base"]["flops"]}
            for k in ("acc_pruned", "acc_recal", "acc_finetuned", "heldout_recal"):
                row[k] = [100 * r[k] for r in recs]
                row[k + "_mean"], row[k + "_std"] = mean_std(row[k])
            per[v] = row
        best_single = max(SINGLE, key=lambda c: per[c]["acc_finetuned_mean"])
        best_single_recal = max(SINGLE, key=lambda c: per[c]["acc_recal_mean"])
        verdict = {"best_single_finetuned": best_single, "best_single_recal": best_single_recal}
        for stage, ref in (("acc_finetuned", best_single), ("acc_recal", best_single_recal)):
            a, b = per["blend"][stage], per[ref][stage]
            verdict[stage] = {"blend_minus_best_single": statistics.fmean(a) - statistics.fmean(b),
                              "p_paired": paired_p(a, b)}  # paired: the same base network per seed
        lat_ratio = [s["targets"][ti]["latency_ratio"] for s in seeds if ti < len(s["targets"])]
        rows[f"{target}"] = {"target": target, "variants": per, "verdict": verdict,
                             "latency_ratio": statistics.median(lat_ratio),
                             "latency_ratio_range": [min(lat_ratio), max(lat_ratio)],
                             "ratio": statistics.fmean(s["targets"][ti]["ratio"] for s in seeds)}
    return rows


def to_markdown(report: dict) -> str:
    c = report["config"]
    seeds = report["seeds"]
    lines = [
        *header(report, "Pruning: blended criteria on ResNet-20 (digits)", unfinished="seed",
                software=f", torch-pruning {report['machine']['torch_pruning']}"),
        "",
        f"ResNet-20 (basic blocks, 1x1 projection shortcuts, {seeds[0]['base']['params']:,} parameters) trained "
        f"{c['epochs']} epochs (SGD 0.1, momentum 0.9, wd 1e-4, step decay, crop augmentation) on scikit-learn's 8x8 "
        f"digits: {seeds[0]['n_train']} training images, {seeds[0]['n_heldout']} held out of the training split "
        f"(stratified, per seed) for the α search, {c['n_test']} test images used only for the figures below. "
        f"Each seed trains one base network; every variant prunes a copy of it with torch-pruning's `BasePruner` "
        f"(local pruning: the same channel ratio in every group, so all variants share one architecture), "
        f"recalibrates BatchNorm on the training images, and fine-tunes {c['finetune_epochs']} epochs at lr "
        f"{c['finetune_lr']} (÷10 half-way), batch 128, identical for all. {len(seeds)} seeds; accuracy = test "
        "accuracy (%), mean ± sample std over seeds.",
        "",
        f"Variants: the single criteria {', '.join(f'`{s}`' for s in SINGLE)}; `blend` = the cluster representatives "
        f"blended with α's from the evolutionary search (population {c['population']}, {c['generations']} "
        "generations, elitism 2, tournament 2, crossover 0.7, mutation σ 0.1; fitness = held-out accuracy after BN "
        "recalibration, min-max normalisation per layer); `blend_uniform` = the same representatives with equal α.",
        "",
    ]
    for key, row in report["rows"].items():
        per = row["variants"]
        lo, hi = row["latency_ratio_range"]
        lines += [f"## {100 * row['target']:.0f}% fewer FLOPs (channel ratio {row['ratio']:.3f})", "",
                  f"Every variant has the same architecture here; its measured CPU latency is "
                  f"{row['latency_ratio']:.2f}x the unpruned network's (median over seeds; range {lo:.2f}-{hi:.2f}).",
                  "", "| criterion | params | FLOPs | acc. pruned | acc. after BN recal. | acc. fine-tuned |"
                  " held-out (fitness) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for v in VARIANTS:
            r = per[v]
            lines.append(f"| {v} | {r['params']:,} ({r['params_ratio']:.2f}x) | {r['flops'] / 1e6:.2f}M "
                         f"({r['flops_ratio']:.2f}x) | "
                         f"{pm(r['acc_pruned_mean'], r['acc_pruned_std'])} | "
                         f"{pm(r['acc_recal_mean'], r['acc_recal_std'])} | "
                         f"{pm(r['acc_finetuned_mean'], r['acc_finetuned_std'])} | "
                         f"{pm(r['heldout_recal_mean'], r['heldout_recal_std'])} |")
        vd = row["verdict"]
        parts = []
        for stage, label, ref in (("acc_recal", "after BN recalibration", vd["best_single_recal"]),
                                  ("acc_finetuned", "after fine-tuning", vd["best_single_finetuned"])):
            d, p = vd[stage]["blend_minus_best_single"], vd[stage]["p_paired"]
            word = "above" if d > 0 else ("below" if d < 0 else "level with")
            sig = "" if not num(p) else (", significant at 5%" if p < 0.05 else ", not significant at 5%")
            parts.append(f"{label}, the blend is {abs(d):.2f} pp {word} the best single criterion (`{ref}`; paired "
                         f"t-test p={p:.2g}{sig})" if num(p) else
                         f"{label}, the blend is {abs(d):.2f} pp {word} the best single criterion (`{ref}`)")
        lines += ["", "**Verdict:** " + "; ".join(parts) + ".", ""]
        alphas = [s["targets"][list(report["rows"]).index(key)]["alpha"] for s in seeds]
        lines.append("α found per seed: " + "; ".join(
            ", ".join(f"{k} {v:.2f}" for k, v in a.items()) for a in alphas) + ".")
        lines.append("")
    lines += ["Unpruned: test accuracy " + pm(mean_std(100 * s["base"]["test_acc"] for s in seeds))
              + f" %, {seeds[0]['base']['params']:,} parameters, {seeds[0]['base']['flops'] / 1e6:.2f}M FLOPs, "
              f"latency {1e3 * statistics.median(t['unpruned_latency_s'] for s in seeds for t in s['targets']):.2f} "
              "ms per forward pass of 256 images (1 thread). Ratios in the tables are to the unpruned network; "
              f"latency = the fastest of {c['latency_repeats']} passes in CPU time of the process "
              "(`time.process_time`, which leaves out waiting for a core on this shared machine), the unpruned and "
              "the pruned network timed in turn in the same process. The held-out column is the data the α's were chosen "
              "on (the first population holds every single criterion), so there the blend leads by construction; "
              "the test columns are the fair comparison.", "",
              "## Criteria clustering", "",
              "Mean over layers (pruning groups) and seeds of the Spearman rank correlation between the criteria's "
              f"filter scores; clusters cut at distance 1 - ρ = {c['threshold']} (average linkage).", "",
              "| | " + " | ".join(SINGLE) + " |", "|---|" + "---:|" * len(SINGLE)]
    mean = np.mean([np.asarray(s["clusters"]["mean"]) for s in seeds], axis=0)
    for i, a in enumerate(SINGLE):
        lines.append(f"| {a} | " + " | ".join(f"{mean[i, j]:.2f}" for j in range(len(SINGLE))) + " |")
    lines += ["", "Clusters and representatives per seed:", ""]
    for s in seeds:
        cl = s["clusters"]
        lines.append(f"- seed {s['seed']}: " + ", ".join("{" + ", ".join(g) + "}" for g in cl["clusters"])
                     + " -> " + ", ".join(f"`{r}`" for r in cl["representatives"]))
    same = sum(s["kendall"]["clusters"] == s["clusters"]["clusters"] for s in seeds)
    lines += ["", f"Kendall's τ in place of Spearman's ρ gives the same clusters in {same} of {len(seeds)} seeds "
              "(its matrices are in `pruning.json`, key `kendall`).",
              "", "Reproduce: `" + report["command"] + "`.", ""]
    return "\n".join(lines)


def plot(report: dict):
    """``pruning.png``: test accuracy per criterion after BN recalibration and after fine-tuning."""
    rows = list(report["rows"].values())
    fig, axes = figure(1, len(rows), figsize=(5.5 * len(rows), 3.8), squeeze=False)
    for ax, row in zip(axes[0], rows):
        x = np.arange(len(VARIANTS))
        for off, key, label in ((-0.2, "acc_recal", "after BN recal."), (0.2, "acc_finetuned", "fine-tuned")):
            m = [row["variants"][v][key + "_mean"] for v in VARIANTS]
            s = [row["variants"][v][key + "_std"] for v in VARIANTS]
            bars = ax.bar(x + off, m, 0.4, yerr=[e if num(e) else 0 for e in s], label=label, capsize=2)
            ax.bar_label(bars, labels=[f"{v:.1f}" for v in m], label_type="center", fontsize=8, rotation=90,
                         color="white")
        ax.set_xticks(x, VARIANTS, rotation=30, ha="right")
        ax.set_ylabel("test accuracy (%), mean ± std over seeds")
        ax.set_title(f"{100 * row['target']:.0f}% fewer FLOPs")
        ax.set_ylim(0, 115)  # bars start at zero; the headroom holds the legend
        ax.set_yticks(range(0, 101, 20))
        ax.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    yield "pruning.png", fig


def main(argv=None) -> int:
    ap = parser("pruning", __doc__, quick="2 seeds, short training and search (a few minutes)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds (default 4; 2 with --quick)")
    ap.add_argument("--targets", type=float, nargs="+", default=None,
                    help="FLOP reductions to prune to, each in (0, 1) (default 0.5 0.75)")
    args = ap.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        if args.seeds < 1:
            ap.error("--seeds must be >= 1")
        cfg["seeds"] = args.seeds
    if args.targets:
        for t in args.targets:
            if not 0.0 < t < 1.0:
                ap.error(f"--targets must lie in (0, 1), got {t}")
        cfg["targets"] = list(args.targets)
    run = Run("pruning", argv, quick=args.quick, torch_pruning=version("torch-pruning"))
    data = load_digits()
    report = run.report(config={**cfg, "model": "resnet20 (shortcut B)", "dataset": "digits",
                                "n_test": len(data.test_y), "finetune_lr": FINETUNE_LR, "threshold": THRESHOLD,
                                "latency_repeats": LATENCY_REPEATS, "heldout_fraction": HELDOUT,
                                "criteria": SINGLE, "normalisation": "minmax"}, seeds=[], rows={})
    for seed in range(cfg["seeds"]):
        report["seeds"].append(run_seed(data, seed, cfg, log=run.log))
        report["rows"] = summarise(report["seeds"])
        # after every seed, so a stopped run keeps what it finished
        write_report(args.out, "pruning", run.stamp(report, complete=False), to_markdown, plot)
    write_report(args.out, "pruning", run.stamp(report, complete=True), to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
