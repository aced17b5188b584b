"""Connection search for shared DIA attention (EAN lottery tickets) on scikit-learn's digits.

1. Supernet: ResNet-20 with one DIA unit per stage, trained with a fresh random connection
   mask per mini-batch (each of the 9 bits Bernoulli(1/2)) on 80% of the training images.
2. Search on the other 20% (held out from the *training* set; the test set is not looked at):
   REINFORCE (policy network, moving-average baseline) and random search with the same number
   of evaluated masks, reward = held-out accuracy (BatchNorm statistics re-estimated per mask)
   + sparsity bonus x (unconnected share),
   over several search seeds.  With 9 blocks there are only 512 masks, so every mask is also
   scored once: the report gives the rank of each search's find among all 512.
3. Retraining from scratch on the whole training set, several seeds, test accuracy: full
   attention vs the ticket (REINFORCE's find, seed 0) vs random masks with as many connected
   blocks vs no attention; extra parameters and measured inference latency (ratios to the
   network without attention, all timed in one interleaved run).

    attsolver bench tickets [--quick] [--seeds 3] [--out benchmarks/results]
    python benchmarks/tickets.py --quick

Writes OUT/tickets.json, OUT/tickets.md, OUT/tickets.png and OUT/tickets_progress.jsonl (the
finished retraining runs; a stopped run resumes from it).
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from attsolver._io import atomic_write_text
from attsolver.vision import count_parameters, make_model
from attsolver.vision.data import load_digits
from attsolver.vision.resnet import attention_parameters, connection_key
from attsolver.vision.search import (MaskEvaluator, evaluate_mask, holdout_split, make_reward, measure_latency, random_masks_like,
                                     random_search, reinforce_search, train_supernet)
from attsolver.vision.train import default_milestones, train_classifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import (Progress, Run, figure, mean_std, num, parser, pm, provenance_lines,  # noqa: E402
                               read_report, welch_p, write_report)

MODEL, ATTENTION, REDUCTION = "resnet20", "dia", 4
CIFAR_COMMAND = ("attsolver vision search --data DIR/cifar-100-python --dataset cifar100 --model resnet164 "
                 "--attention dia --supernet-epochs 164 --milestones 81 122 --budget 200 --sparsity-bonus 0.01 "
                 "--device cuda --out search_c100_r164")
CIFAR_RETRAIN = ("attsolver vision train --data DIR/cifar-100-python --dataset cifar100 --model resnet164 "
                 "--attention dia --connection MASK --epochs 164 --milestones 81 122 --device cuda --seed S")


def build(condition: dict, in_channels: int = 1, num_classes: int = 10):
    attention = "none" if condition["mask"] is None else ATTENTION
    mask = None if condition["mask"] is None else condition["mask"]
    return make_model(MODEL, num_classes=num_classes, in_channels=in_channels, attention=attention,
                      reduction=REDUCTION, connection=mask)


def search_phase(data, cfg: dict, log=print) -> dict:
    """Supernet, searches over several seeds, exhaustive scores."""
    split = holdout_split(data, 0.2, seed=0)
    torch.manual_seed(0)
    supernet = make_model(MODEL, num_classes=data.num_classes, in_channels=data.in_channels, attention=ATTENTION,
                          reduction=REDUCTION)
    hist = train_supernet(supernet, split, epochs=cfg["supernet_epochs"], p=0.5, seed=0, calibration=cfg["calibration"])
    log(f"supernet: {cfg['supernet_epochs']} epochs, {hist.wall_time_s:.0f} s; held-out accuracy all connected "
        f"{hist.holdout_acc_full[-1]:.4f}, none {hist.holdout_acc_none[-1]:.4f}")
    uncalibrated = {name: evaluate_mask(supernet, split, (bit,) * supernet.num_blocks, calibration=0)
                    for name, bit in (("all_connected", 1), ("none_connected", 0))}
    evaluator = MaskEvaluator(supernet, split, calibration=cfg["calibration"])
    reward = make_reward(evaluator, sparsity_bonus=cfg["sparsity_bonus"])
    n = supernet.num_blocks
    searches = []
    for s in range(cfg["search_seeds"]):
        rl = reinforce_search(reward, n, budget=cfg["budget"], seed=s)
        rs = random_search(reward, n, budget=rl.evaluated, seed=s)
        searches += [rl, rs]
        log(f"search seed {s}: reinforce {connection_key(rl.best_mask)} ({rl.best_reward:.4f}, {rl.evaluated} masks, "
            f"{rl.samples} draws); random {connection_key(rs.best_mask)} ({rs.best_reward:.4f})")
    t0 = time.perf_counter()
    every = {m: reward(m) for m in itertools.product((0, 1), repeat=n)}  # all 2^n masks (cached ones are free)
    exhaustive_s = time.perf_counter() - t0
    order = sorted(every, key=lambda m: -every[m])
    rank = {m: 1 + sum(every[o] > every[m] for o in every) for m in every}  # ties share the better rank
    acc = {m: evaluator(m)["accuracy"] for m in every}
    by_k = {}
    for k in range(n + 1):
        vals = [acc[m] for m in every if sum(m) == k]
        by_k[k] = {"masks": len(vals), "mean_acc": statistics.fmean(vals), "max_acc": max(vals), "min_acc": min(vals)}
    rows = []
    for res in searches:
        d = res.to_dict()
        d.pop("trace")
        d.update(rank=rank[res.best_mask], holdout_acc=acc[res.best_mask], connected=sum(res.best_mask),
                 curve=[t["best_reward"] for t in res.trace if t["new"]])
        rows.append(d)
    return {
        "split": {"train": len(split.train_y), "holdout": len(split.test_y)},
        "supernet": {"history": hist.__dict__, "params": count_parameters(supernet),
                     "holdout_acc_without_bn_reestimation": uncalibrated},
        "searches": rows,
        "exhaustive": {"best_mask": connection_key(order[0]), "best_reward": every[order[0]],
                       "best_acc": acc[order[0]], "seconds": exhaustive_s, "by_connected": by_k,
                       "rewards": {connection_key(m): every[m] for m in every},
                       "accuracy": {connection_key(m): acc[m] for m in every}},
    }


def conditions(search: dict, cfg: dict) -> list[dict]:
    rl = next(r for r in search["searches"] if r["method"] == "reinforce")
    rs = next(r for r in search["searches"] if r["method"] == "random")
    ticket = tuple(int(c) for c in rl["best_mask"])
    n = len(ticket)
    conds = [{"name": "full", "mask": [1] * n, "group": "full"},
             {"name": "ticket", "mask": list(ticket), "group": "ticket"}]
    if rs["best_mask"] != rl["best_mask"]:
        conds.append({"name": "ticket_random_search", "mask": [int(c) for c in rs["best_mask"]], "group": "ticket_rs"})
    exclude = [c["mask"] for c in conds]
    for i, m in enumerate(random_masks_like(ticket, cfg["random_masks"], seed=1, exclude=exclude)):
        conds.append({"name": f"random_{i + 1}", "mask": list(m), "group": "random_equal_sparsity"})
    conds.append({"name": "none", "mask": None, "group": "none"})
    return conds


def retrain(data, c: dict, seed: int, epochs: int) -> dict:
    torch.manual_seed(seed)
    model = build(c, data.in_channels, data.num_classes)
    t0 = time.perf_counter()
    hist = train_classifier(model, data, epochs=epochs, seed=seed, progress=False, on_nonfinite="stop")
    return {"condition": c["name"], "group": c["group"], "mask": connection_key(c["mask"]) if c["mask"] else None,
            "seed": seed, "test_acc": hist.final_test_acc, "diverged_epoch": hist.diverged_epoch,
            "seconds": time.perf_counter() - t0}


def retrain_phase(data, conds: list[dict], cfg: dict, progress: Progress, log=print) -> list[dict]:
    runs = []
    for seed in range(cfg["seeds"]):
        for c in conds:
            key = f"{c['name']}:{connection_key(c['mask']) if c['mask'] else 'none'}:seed{seed}:ep{cfg['epochs']}"
            rec, new = progress.run(key, lambda c=c, seed=seed: retrain(data, c, seed, cfg["epochs"]))
            if new:
                log(f"seed {seed} {c['name']:22s} {rec['mask'] or '-':10s} test acc {100 * rec['test_acc']:.2f}% "
                    f"({rec['seconds']:.1f} s)")
            runs.append(rec)
    return runs


def latency_phase(conds: list[dict], cfg: dict) -> dict:
    """Inference time per condition on two inputs.  Rounds alternate the order of the
    contenders; in each round every contender's fastest of ``latency_repeats`` forwards is
    divided by that round's time of the network without attention, and the report keeps the
    median of these paired ratios (robust to the machine's load changing between rounds)."""
    inputs = {"digits": (1, torch.randn(cfg["latency_batch"], 1, 8, 8)),
              "cifar_shaped": (3, torch.randn(cfg["latency_batch_cifar"], 3, 32, 32))}
    out = {"load_average_before": os.getloadavg()[0]}
    for name, (ch, x) in inputs.items():
        torch.manual_seed(0)
        models = {c["name"]: build(c, ch).eval() for c in conds}
        times = {k: [] for k in models}
        for r in range(cfg["latency_rounds"]):
            for k in (list(models) if r % 2 == 0 else list(models)[::-1]):
                times[k].append(measure_latency(models[k], x, repeats=cfg["latency_repeats"], warmup=1, statistic="min"))
        ratios = {k: statistics.median(t / b for t, b in zip(v, times["none"])) for k, v in times.items()}
        out[name] = {"shape": list(x.shape), "seconds": {k: min(v) for k, v in times.items()},
                     "seconds_per_round": times, "ratio_to_none": ratios}
    out["load_average_after"] = os.getloadavg()[0]
    return out


def summarise(runs: list[dict], conds: list[dict]) -> dict:
    rows = {}
    for c in conds:
        acc = [100 * r["test_acc"] for r in runs if r["condition"] == c["name"]]
        if acc:
            rows[c["name"]] = {"group": c["group"], "mask": connection_key(c["mask"]) if c["mask"] else None,
                               "connected": sum(c["mask"]) if c["mask"] else 0, "n": len(acc), "acc": acc,
                               **dict(zip(("acc_mean", "acc_std"), mean_std(acc)))}
    groups = {}
    for r in runs:
        groups.setdefault(r["group"], []).append(100 * r["test_acc"])
    pooled = {g: {"n": len(v), **dict(zip(("acc_mean", "acc_std"), mean_std(v))), "acc": v} for g, v in groups.items()}
    tests = {}
    for other in ("full", "random_equal_sparsity", "none", "ticket_rs"):
        a, b = groups.get("ticket", []), groups.get(other, [])
        if len(a) > 1 and len(b) > 1:
            tests[other] = {"diff": statistics.fmean(a) - statistics.fmean(b), "p": welch_p(a, b)}
    return {"rows": rows, "pooled": pooled, "ticket_vs": tests}


def to_markdown(report: dict) -> str:
    c, s, summ = report["config"], report["search"], report["summary"]
    ex = s["exhaustive"]
    n_masks = len(ex["rewards"])
    lines = [
        "# Connection search for shared DIA attention (EAN lottery tickets, digits)", "",
        *provenance_lines(report, unfinished="stage"),
        *([f"{report['resumed_runs']} of the {len(report['runs'])} retraining runs read back from "
           f"tickets_progress.jsonl; the retraining runs took {report['retrain_seconds'] / 60:.1f} min in all."]
          if report.get("resumed_runs") else []), "",
        f"ResNet-20 with one DIA unit per stage (reduction {REDUCTION}), 9 blocks, so {n_masks} connection masks. "
        f"Supernet: {c['supernet_epochs']} epochs, a fresh Bernoulli(1/2) mask per mini-batch, on "
        f"{s['split']['train']} of the {c['n_train']} training images; masks are scored on the other "
        f"{s['split']['holdout']} (held out from the training set — the test set is used only for the retrained "
        f"networks), each after re-estimating the BatchNorm statistics for that mask from {c['calibration']} training "
        f"images (the supernet's running statistics, averaged over random masks, fit no single mask: without the "
        f"re-estimation the all-connected mask scores "
        f"{100 * s['supernet']['holdout_acc_without_bn_reestimation']['all_connected']:.2f}% and the unconnected one "
        f"{100 * s['supernet']['holdout_acc_without_bn_reestimation']['none_connected']:.2f}% on this supernet). Reward = held-out accuracy + "
        f"{c['sparsity_bonus']} × (unconnected blocks / 9): all 9 blocks together are worth less than one held-out "
        f"image, so the bonus only breaks ties towards fewer connections; no latency term. "
        f"Budget: {c['budget']} distinct masks for REINFORCE; random search gets as many as REINFORCE evaluated.", "",
        "## Search", "",
        f"Supernet held-out accuracy: all blocks connected {100 * s['supernet']['history']['holdout_acc_full'][-1]:.2f}%, "
        f"none connected {100 * s['supernet']['history']['holdout_acc_none'][-1]:.2f}%. Best of all {n_masks} masks "
        f"(exhaustive): `{ex['best_mask']}`, reward {ex['best_reward']:.4f}, held-out accuracy {100 * ex['best_acc']:.2f}%.", "",
        "| method | search seed | ticket | connected | held-out acc (%) | reward | rank of {} | masks evaluated | draws |".format(n_masks),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    per_method = {}
    for i, r in enumerate(s["searches"]):
        seed = i // 2
        per_method.setdefault(r["method"], []).append(r)
        lines.append(f"| {r['method']} | {seed} | `{r['best_mask']}` | {r['connected']} | {100 * r['holdout_acc']:.2f} | "
                     f"{r['best_reward']:.4f} | {r['rank']} | {r['evaluated']} | {r['samples']} |")
    lines += ["", "Over the search seeds: " + "; ".join(
        f"{m}: mean rank {statistics.fmean(r['rank'] for r in rs):.1f} (median {statistics.median(r['rank'] for r in rs):g}), "
        f"exhaustive optimum found {sum(r['rank'] == 1 for r in rs)}/{len(rs)}" for m, rs in per_method.items()) + ".", "",
        "Supernet held-out accuracy by number of connected blocks (all masks):", "",
        "| connected | masks | mean (%) | min (%) | max (%) |", "|---:|---:|---:|---:|---:|"]
    for k, v in sorted(ex["by_connected"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {k} | {v['masks']} | {100 * v['mean_acc']:.2f} | {100 * v['min_acc']:.2f} | {100 * v['max_acc']:.2f} |")
    lat = report["latency"]
    lines += ["", "## Ticket retrained from scratch", "",
              f"Each network trained from scratch on all {c['n_train']} training images, {c['epochs']} epochs (SGD 0.9, "
              f"lr 0.1 step decay at {c['milestones']}, wd 1e-4, batch 128, crop augmentation), {c['seeds']} seeds; test "
              f"accuracy ({c['n_test']} images) after the last epoch, mean ± sample std over seeds. Extra parameters: those "
              "of the attention modules a forward uses (a stage none of whose blocks is connected never runs its unit). "
              f"Latency: forward time in eval mode, 1 thread, on a digits batch {lat['digits']['shape']} and on a "
              f"CIFAR-shaped batch {lat['cifar_shaped']['shape']} (3-channel model, untrained weights); {c['latency_rounds']} "
              "rounds in alternating order, each contender's fastest of {} forwards divided by the same round's time "
              "without attention; the table gives the median of these ratios. The 2 cores were shared with other "
              "jobs (1-minute load average {:.1f} before and {:.1f} after the timing), so differences of ~10% "
              "are within the noise.".format(c["latency_repeats"], lat["load_average_before"],
                                             lat["load_average_after"]), "",
              "| network | mask | connected | extra parameters | test accuracy (%) | latency digits | latency CIFAR-shaped |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in summ["rows"].items():
        extra = report["extra_params"][name]
        lines.append(f"| {name} | {('`' + r['mask'] + '`') if r['mask'] else '—'} | {r['connected']} | +{extra:,} | "
                     f"{pm(r['acc_mean'], r['acc_std'])} | {lat['digits']['ratio_to_none'][name]:.3f}× | "
                     f"{lat['cifar_shaped']['ratio_to_none'][name]:.3f}× |")
    pooled = summ["pooled"]
    if "random_equal_sparsity" in pooled:
        p = pooled["random_equal_sparsity"]
        lines += ["", f"Random masks of equal sparsity, pooled ({p['n']} runs): {pm(p['acc_mean'], p['acc_std'])}."]
    lines += ["", "**Is the ticket real?** Ticket against each alternative (difference of mean test accuracy, pp; "
              "Welch's two-sided p):", ""]
    names = {"full": "full attention", "random_equal_sparsity": "random masks of equal sparsity (pooled)",
             "none": "no attention", "ticket_rs": "random search's ticket"}
    for k, t in summ["ticket_vs"].items():
        lines.append(f"- vs {names[k]}: {t['diff']:+.2f} pp (p={pm(t['p'], fmt='.2g')}).")
    lines += ["", report["verdict"], "",
              "## CIFAR", "",
              "Not run here (no GPU, no download). Search, then retrain the ticket per seed:", "",
              f"    {CIFAR_COMMAND}", f"    {CIFAR_RETRAIN}", ""]
    return "\n".join(lines)


def verdict(summ: dict) -> str:
    t = summ["ticket_vs"]
    r = t.get("random_equal_sparsity")
    f = t.get("full")
    if r is None or f is None:
        return "Too few seeds for a verdict."
    parts = []
    if r["diff"] > 0 and r["p"] < 0.05:
        parts.append(f"the ticket beats random masks of equal sparsity ({r['diff']:+.2f} pp, p={r['p']:.2g})")
    else:
        parts.append(f"the ticket is **not** significantly better than random masks of equal sparsity "
                     f"({r['diff']:+.2f} pp, p={r['p']:.2g}): on this data the search finds no winning ticket "
                     "that a random choice of the same number of connections would not")
    if f["p"] >= 0.05:
        parts.append(f"against full attention the difference is not significant ({f['diff']:+.2f} pp, p={f['p']:.2g})")
    else:
        parts.append(f"it differs from full attention by {f['diff']:+.2f} pp (p={f['p']:.2g})")
    full, none = summ["pooled"].get("full"), summ["pooled"].get("none")
    if full and none:
        parts.append(f"for scale, full attention itself scores {full['acc_mean']:.2f}% against {none['acc_mean']:.2f}% "
                     f"without attention ({full['acc_mean'] - none['acc_mean']:+.2f} pp): the room a connection pattern "
                     "has to win on this data")
    return "Verdict: " + "; ".join(parts) + "."


def plot(report: dict):
    """``tickets.png``: the searches' progress, every mask on the supernet, the retrained networks."""
    s = report["search"]
    fig, ax = figure(1, 3, figsize=(15, 4.2))
    colors = {"reinforce": "C0", "random": "C1"}
    for m in ("reinforce", "random"):
        curves = [r["curve"] for r in s["searches"] if r["method"] == m]
        for i, cv in enumerate(curves):
            ax[0].plot(range(1, len(cv) + 1), cv, color=colors[m], alpha=0.35, label=m if i == 0 else None)
    ax[0].axhline(s["exhaustive"]["best_reward"], color="k", ls="--", lw=1, label="best of all masks")
    ax[0].set(xlabel="distinct masks evaluated", ylabel="best reward so far", title="search (each line a seed)")
    ax[0].legend()
    acc = s["exhaustive"]["accuracy"]
    ks = [sum(int(ch) for ch in k) for k in acc]
    jitter = [((int(k, 2) * 37) % 100 - 50) / 300 for k in acc]
    ax[1].scatter([a + b for a, b in zip(ks, jitter)], [100 * v for v in acc.values()], s=6, alpha=0.4, color="gray")
    for m in ("reinforce", "random"):
        rs = [r for r in s["searches"] if r["method"] == m]
        ax[1].scatter([r["connected"] for r in rs], [100 * r["holdout_acc"] for r in rs], color=colors[m], s=30,
                      marker="x", label=f"{m} finds")
    ax[1].set(xlabel="connected blocks", ylabel="supernet held-out accuracy (%)", title="all masks on the supernet")
    ax[1].legend()
    rows = report["summary"]["rows"]
    names = list(rows)
    for i, k in enumerate(names):
        ax[2].scatter([i] * len(rows[k]["acc"]), rows[k]["acc"], color="gray", s=12)
        ax[2].errorbar(i, rows[k]["acc_mean"], yerr=rows[k]["acc_std"] if num(rows[k]["acc_std"]) else 0,
                       fmt="o", color="C3", capsize=4)
    ax[2].set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax[2].set(ylabel="test accuracy (%)", title="retrained from scratch")
    yield "tickets.png", fig


def main(argv=None) -> int:
    ap = parser("tickets", __doc__, quick="2 seeds, short training (about 2 minutes)", render=True)
    ap.add_argument("--seeds", type=int, default=None, help="retraining seeds (default 3; 2 with --quick)")
    ap.add_argument("--epochs", type=int, default=None, help="retraining epochs (default 20; 5 with --quick)")
    ap.add_argument("--supernet-epochs", type=int, default=None, help="default 30; 8 with --quick")
    ap.add_argument("--budget", type=int, default=None, help="masks per search (default 48; 24 with --quick)")
    ap.add_argument("--search-seeds", type=int, default=None, help="default 10; 3 with --quick")
    ap.add_argument("--sparsity-bonus", type=float, default=0.003,
                    help="reward per unit unconnected share (default 0.003: all 9 blocks together are worth less "
                         "than one of the 287 held-out images, so it only breaks ties towards fewer connections)")
    ap.add_argument("--random-masks", type=int, default=3)
    ap.add_argument("--calibration", type=int, default=256,
                    help="training images that re-estimate the BatchNorm statistics for each scored mask")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.render:
        report = read_report(out / "tickets.json")
        report["summary"] = summarise(report["runs"], report["conditions"])
        report["verdict"] = verdict(report["summary"])
        write_report(out, "tickets", report, to_markdown, plot, echo=True)
        return 0
    q = args.quick
    run = Run("tickets", argv, quick=q)
    data = load_digits()
    epochs = args.epochs or (5 if q else 20)
    cfg = {"seeds": args.seeds or (2 if q else 3), "epochs": epochs, "milestones": default_milestones(epochs),
           "supernet_epochs": args.supernet_epochs or (8 if q else 30), "budget": args.budget or (24 if q else 48),
           "search_seeds": args.search_seeds or (3 if q else 10), "sparsity_bonus": args.sparsity_bonus,
           "random_masks": args.random_masks, "n_train": len(data.train_y), "n_test": len(data.test_y),
           "calibration": args.calibration, "latency_batch": 256, "latency_batch_cifar": 64, "latency_rounds": 3 if q else 9,
           "latency_repeats": 5 if q else 10, "model": MODEL, "attention": ATTENTION, "reduction": REDUCTION}
    report = run.report(config=cfg, cifar_command=CIFAR_COMMAND, search=search_phase(data, cfg, run.log))
    conds = report["conditions"] = conditions(report["search"], cfg)
    report["extra_params"] = {c["name"]: attention_parameters(build(c), c["mask"]) if c["mask"] else 0 for c in conds}
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(out / "tickets_progress.jsonl")
    config = {"key": "__config__", **{k: cfg[k] for k in ("epochs", "model", "attention", "reduction")}}
    if progress.get("__config__") not in (None, config):
        run.log(f"{progress.path} was written with other settings ({progress.get('__config__')}); starting it afresh")
        atomic_write_text(progress.path, "")
        progress = Progress(out / "tickets_progress.jsonl")
    if progress.get("__config__") is None:
        progress.add(config)
    done_before = {k for k in progress.records if k != "__config__"}
    report["runs"] = retrain_phase(data, conds, cfg, progress, run.log)
    report["resumed_runs"] = sum(r["key"] in done_before for r in report["runs"])
    report["retrain_seconds"] = sum(r["seconds"] for r in report["runs"])
    report["latency"] = latency_phase(conds, cfg)
    report["summary"] = summarise(report["runs"], conds)
    report["verdict"] = verdict(report["summary"])
    write_report(out, "tickets", run.stamp(report, complete=True), to_markdown, plot, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
