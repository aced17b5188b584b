"""Shared attention on a depth-20 ResNet, on scikit-learn's 8x8 digits (CPU-sized).

For each attention module (none, SE per block, SE shared per stage, DIA, IEBN) and each
training setting (standard; and the three destabilised ones: no skip connections, no
BatchNorm, no data augmentation), train ResNet-20 with several seeds and report the test
accuracy (mean ± sample std), the parameter count, and, per destabilised setting, how much
of the accuracy lost without attention each module wins back (Welch's t-test against
``none``).  Also the parameter counts of the published CIFAR tables.  Full CIFAR figures
need a GPU; the report gives the command.

    attsolver bench vision [--quick] [--seeds 5] [--epochs 24] [--out benchmarks/results]
    python benchmarks/vision.py --quick
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from attsolver.vision import CifarResNet, count_parameters, make_model
from attsolver.vision.data import load_digits
from attsolver.vision.train import default_milestones, train_classifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Run, figure, header, mean_std, num, parser, pm, read_report, welch_p, write_report  # noqa: E402

ATTENTIONS = ["none", "se", "shared_se", "dia", "iebn"]
SETTINGS = {  # name -> (model switches, augment, description)
    "standard": ({}, True, "skip connections, BatchNorm, crop augmentation"),
    "no_skip": ({"skip": False}, True, "every shortcut removed"),
    "no_bn": ({"batchnorm": False}, True, "every BatchNorm removed, convolutions get biases"),
    "no_aug": ({}, False, "no data augmentation"),
}
REDUCTION = 4  # the same r for every gate (DIA's CIFAR setting); SE at r=16 would have 1-4 hidden units here

#: (model, attention, num_classes) -> published parameter count, millions, and where from
PUBLISHED = [
    ("resnet164", "none", 100, 1.73, "DIANet (1905.10671), CIFAR-100"),
    ("resnet164", "se", 100, 1.93, "DIANet (1905.10671), CIFAR-100"),
    ("resnet164", "dia", 100, 1.95, "DIANet (1905.10671), CIFAR-100"),
    ("resnet20", "none", 10, 0.27, "He et al. 2016, Table 6, CIFAR-10"),
    ("resnet56", "none", 10, 0.85, "He et al. 2016, Table 6, CIFAR-10"),
    ("resnet110", "none", 10, 1.7, "He et al. 2016, Table 6, CIFAR-10"),
]
PUBLISHED_ACCURACY = ("Published CIFAR-100 accuracies (ResNet-164, mean of 5 runs): 73.43 -> DIA 76.67 "
                      "(DIANet repository); 74.29 -> IEBN 77.09 (IEBN paper).")
CIFAR_COMMAND = ("attsolver vision train --data DIR/cifar-100-python --dataset cifar100 --model resnet164 "
                 "--attention dia --epochs 164 --milestones 81 122 --batch-size 128 --device cuda --seed S "
                 "-o resnet164_dia_S.json")


def run_one(data, attention: str, setting: str, seed: int, epochs: int, batch_size: int) -> dict:
    switches, augment, _ = SETTINGS[setting]
    torch.manual_seed(seed)
    model = CifarResNet(20, data.num_classes, in_channels=data.in_channels, attention=attention,
                        reduction=REDUCTION, **switches)
    t0 = time.perf_counter()
    hist = train_classifier(model, data, epochs=epochs, batch_size=batch_size, augment=augment, seed=seed,
                            progress=False, on_nonfinite="stop")
    return {"attention": attention, "setting": setting, "seed": seed, "params": count_parameters(model),
            "test_acc": hist.final_test_acc, "best_test_acc": max(hist.test_acc),
            "final_train_loss": hist.train_loss[-1], "diverged_epoch": hist.diverged_epoch,
            "seconds": time.perf_counter() - t0}


def summarise(runs: list[dict]) -> dict:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["setting"], r["attention"]), []).append(r)
    rows = {}
    for (setting, att), rs in groups.items():
        acc = [100 * r["test_acc"] for r in rs]
        rows[f"{setting}/{att}"] = {
            "setting": setting, "attention": att, "params": rs[0]["params"], "n": len(rs),
            **dict(zip(("acc_mean", "acc_std"), mean_std(acc))), "acc": acc,
            "diverged": sum(r["diverged_epoch"] is not None for r in rs),
            "seconds_mean": mean_std(r["seconds"] for r in rs)[0],
        }
    # what each module wins back, per destabilised setting
    for row in rows.values():
        base, std_none = rows.get(f"{row['setting']}/none"), rows.get("standard/none")
        row["gain_vs_none"] = row["acc_mean"] - base["acc_mean"] if base else math.nan
        row["p_vs_none"] = welch_p(row["acc"], base["acc"]) if base and row["attention"] != "none" else math.nan
        lost = std_none["acc_mean"] - base["acc_mean"] if (std_none and base) else math.nan
        row["p_lost"] = welch_p(std_none["acc"], base["acc"]) if std_none and base and base is not std_none else math.nan
        row["lost_without_attention"] = lost
        row["recovered_fraction"] = row["gain_vs_none"] / lost if (lost == lost and lost > 0) else math.nan
    return rows


def published_params() -> list[dict]:
    out = []
    for model, att, classes, published, source in PUBLISHED:
        n = count_parameters(make_model(model, num_classes=classes, attention=att))
        decimals = len(str(published).partition(".")[2])  # the published rounding
        out.append({"model": model, "attention": att, "num_classes": classes, "params": n,
                    "params_rounded_m": round(n / 1e6, decimals), "published_m": published,
                    "matches": round(n / 1e6, decimals) == published, "source": source})
    return out


def to_markdown(report: dict) -> str:
    c = report["config"]
    rows = report["rows"]
    lines = [
        *header(report, "Vision: shared attention on ResNet-20 (digits)"),
        "",
        f"ResNet-20 (basic blocks, 16/32/64 channels, zero-padding shortcuts) on scikit-learn's 8x8 digits "
        f"({c['n_train']} train / {c['n_test']} test images, 1 channel, stratified split). SGD momentum 0.9, "
        f"lr 0.1 divided by 10 at epochs {c['milestones'][0]} and {c['milestones'][1]}, weight decay 1e-4, batch "
        f"{c['batch_size']}, {c['epochs']} epochs; augmentation = random crop from a 1-pixel zero pad (no flip: "
        f"digits are not mirror-symmetric). Every gate uses reduction r = {c['reduction']}. {c['seeds']} seeds "
        "per row (a seed fixes the initialisation, batch order and augmentation). Accuracy: test accuracy (%) "
        "after the last epoch, mean ± sample standard deviation over seeds.",
        "",
        "## Attention modules, standard training",
        "",
        "| attention | where | parameters | vs none | test accuracy (%) |",
        "|---|---|---:|---:|---:|",
    ]
    where = {"none": "—", "se": "one SE per block", "shared_se": "one SE per stage, shared",
             "dia": "one DIA unit per stage, shared", "iebn": "in every BatchNorm"}
    base_params = rows.get("standard/none", {}).get("params")
    for att in ATTENTIONS:
        r = rows.get(f"standard/{att}")
        if r:
            extra = f"+{r['params'] - base_params:,}" if base_params and att != "none" else ""
            lines.append(f"| {att} | {where[att]} | {r['params']:,} | {extra} | {pm(r['acc_mean'], r['acc_std'])} |")
    lines += ["", "## Destabilised training", "",
              "Test accuracy (%); in brackets the change against `none` in the same setting, with Welch's "
              "two-sided p-value.", "",
              "| attention | " + " | ".join(SETTINGS) + " |", "|---|" + "---:|" * len(SETTINGS)]
    for att in ATTENTIONS:
        cells = []
        for s in SETTINGS:
            r = rows.get(f"{s}/{att}")
            if r is None:
                cells.append("n/a" if (att == "iebn" and s == "no_bn") else "")
                continue
            cell = pm(r["acc_mean"], r["acc_std"])
            if att != "none" and num(r["gain_vs_none"]):
                p = r["p_vs_none"]
                cell += f" ({r['gain_vs_none']:+.2f}" + (f", p={p:.2g})" if num(p) else ")")
            if r["diverged"]:
                cell += f" [{r['diverged']} diverged]"
            cells.append(cell)
        lines.append(f"| {att} | " + " | ".join(cells) + " |")
    lines += ["", "`iebn` under `no_bn` is n/a: IEBN *is* a BatchNorm layer.", "",
              "Worst seed (lowest test accuracy, %) — a stabiliser shows here first:", "",
              "| attention | " + " | ".join(SETTINGS) + " |", "|---|" + "---:|" * len(SETTINGS)]
    for att in ATTENTIONS:
        cells = [f"{min(rows[f'{s}/{att}']['acc']):.2f}" if f"{s}/{att}" in rows else "n/a" for s in SETTINGS]
        lines.append(f"| {att} | " + " | ".join(cells) + " |")
    lines += ["",
              "**What attention wins back.** Per destabilised setting: the accuracy `none` loses against "
              "standard training (Welch's p for that loss), then each module's change against `none` in "
              "that setting and the share of the loss it recovers.", ""]
    for s in list(SETTINGS)[1:]:
        base = rows.get(f"{s}/none")
        if not base:
            continue
        lost = base["lost_without_attention"] if num(base["lost_without_attention"]) else math.nan
        parts = []
        for att in ATTENTIONS[1:]:
            r = rows.get(f"{s}/{att}")
            if r is None:
                continue
            gain, frac, p = r["gain_vs_none"], r["recovered_fraction"], r["p_vs_none"]
            p_txt = f"p={p:.2g}" if num(p) else "p n/a"
            if abs(gain) < 5e-3:
                parts.append(f"{att} no change ({p_txt})")
            elif gain < 0:
                parts.append(f"{att} {gain:+.2f} pp, worse than none ({p_txt})")
            else:
                share = f" = {100 * frac:.0f}% of the loss" if (num(frac) and lost > 0) else ""
                parts.append(f"{att} {gain:+.2f} pp{share} ({p_txt})")
        p_lost = base["p_lost"]
        noise = ", not significant at 5%" if (num(p_lost) and p_lost >= 0.05) else ""
        p_lost_txt = f" (p={p_lost:.2g}{noise})" if num(p_lost) else ""
        if lost > 0:
            head = f"`none` loses {lost:.2f} pp{p_lost_txt}; against none: "
        else:
            head = f"`none` loses nothing ({-lost:+.2f} pp against standard{p_lost_txt}); against none: "
        lines.append(f"- `{s}` ({SETTINGS[s][2]}): " + head + "; ".join(parts) + ".")
    lines += ["", "## Parameter counts against the published tables", "",
              "| model | attention | classes | parameters | published |", "|---|---|---:|---:|---:|"]
    for p in report["published_params"]:
        lines.append(f"| {p['model']} | {p['attention']} | {p['num_classes']} | {p['params']:,} "
                     f"({p['params_rounded_m']}M) | {p['published_m']}M ({p['source']}) |")
    lines += ["", "SE at reduction 16 one per block, DIA at reduction 4 one per stage (the conventions that reproduce "
              "the published counts; see `attsolver/vision/resnet.py`).", "",
              "## Full CIFAR figures", "",
              "The CIFAR-10/100 figures need a GPU and the data set (ResNet-164 for 164 epochs, five seeds per "
              "module); they were not run here (no GPU, no download). The command, per attention module and seed, "
              "with the extracted `cifar-100-python.tar.gz` in `DIR`:", "",
              f"    {CIFAR_COMMAND}", "", PUBLISHED_ACCURACY, ""]
    return "\n".join(lines)


def plot(report: dict):
    """``vision.png``: test accuracy per attention module, one marker per setting, mean ± std over
    seeds (each seed a dot)."""
    rows, settings = report["rows"], [s for s in SETTINGS if any(k.startswith(f"{s}/") for k in report["rows"])]
    fig, ax = figure(figsize=(7.5, 4.2))
    for i, s in enumerate(settings):
        for j, att in enumerate(ATTENTIONS):
            r = rows.get(f"{s}/{att}")
            if r is None:
                continue
            x = j + (i - (len(settings) - 1) / 2) * 0.18
            ax.scatter(np.full(len(r["acc"]), x), r["acc"], s=8, color=f"C{i}", alpha=0.35)
            ax.errorbar(x, r["acc_mean"], yerr=r["acc_std"] if num(r["acc_std"]) else 0, fmt="o", color=f"C{i}",
                        capsize=3, label=None if ax.get_legend_handles_labels()[1].count(s) else s)
    ax.set_xticks(range(len(ATTENTIONS)), ATTENTIONS)
    ax.set(xlabel="attention module", ylabel="test accuracy (%), mean ± std over seeds",
           title=f"ResNet-20 on digits, {report['config']['epochs']} epochs, {report['config']['seeds']} seeds")
    ax.legend(fontsize=8, title="training setting", title_fontsize=8)
    yield "vision.png", fig


def main(argv=None) -> int:
    ap = parser("vision", __doc__, quick="2 seeds, 8 epochs (a few minutes)", render=True)
    ap.add_argument("--seeds", type=int, default=None, help="seeds per row (default 5; 2 with --quick)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default 24; 8 with --quick)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--attention", nargs="+", default=ATTENTIONS, choices=ATTENTIONS)
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.render:
        report = read_report(out / "vision.json")
        report["rows"] = summarise(report["runs"])
        write_report(out, "vision", report, to_markdown, plot, echo=True)
        return 0
    seeds = args.seeds or (2 if args.quick else 5)
    epochs = args.epochs or (8 if args.quick else 24)
    run = Run("vision", argv, quick=args.quick)
    data = load_digits()
    report = run.report(
        config={"model": "resnet20", "dataset": "digits", "n_train": len(data.train_y), "n_test": len(data.test_y),
                "seeds": seeds, "epochs": epochs, "batch_size": args.batch_size, "reduction": REDUCTION,
                "milestones": default_milestones(epochs), "lr": 0.1, "momentum": 0.9,
                "weight_decay": 1e-4, "settings": {k: v[2] for k, v in SETTINGS.items() if k in args.settings}},
        published_params=published_params(), cifar_command=CIFAR_COMMAND, runs=[], rows={})
    for setting in args.settings:
        for att in args.attention:
            if att == "iebn" and setting == "no_bn":
                continue  # IEBN is a BatchNorm layer
            for seed in range(seeds):
                r = run_one(data, att, setting, seed, epochs, args.batch_size)
                report["runs"].append(r)
                run.log(f"{setting:9s} {att:10s} seed {seed}: test acc {100 * r['test_acc']:.2f}%  "
                        f"({r['params']:,} params, {r['seconds']:.1f} s)"
                        + (f"  diverged in epoch {r['diverged_epoch']}" if r["diverged_epoch"] else ""))
            report["rows"] = summarise(report["runs"])
            # after every row, so a stopped run leaves what it finished
            write_report(out, "vision", run.stamp(report, complete=False), to_markdown, plot)
    write_report(out, "vision", run.stamp(report, complete=True), to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
