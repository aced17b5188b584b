"""``attsolver vision``: train a CIFAR ResNet with attention, count parameters, list choices.

Examples::

    attsolver vision train --dataset digits --model resnet20 --attention dia --epochs 20
    attsolver vision train --data ~/data/cifar-100-python --dataset cifar100 \\
        --model resnet164 --attention dia --epochs 164 --milestones 81 122 --checkpoint dia164.pt
    attsolver vision train ... --checkpoint dia164.pt --resume      # continue after a stop
    attsolver vision params --model resnet164 --num-classes 100 --attention none se dia iebn
    attsolver vision attention                                       # the attention names

Connection search (EAN lottery tickets; see ``attsolver.vision.search``)::

    attsolver vision search --dataset digits --model resnet20 --attention dia \
        --supernet-epochs 40 --budget 48 --sparsity-bonus 0.01 --out search_digits
    attsolver vision search ... --out search_digits --resume            # after an interruption
    attsolver vision train --dataset digits --model resnet20 --attention dia \
        --connection 101100110 --epochs 24                               # retrain the ticket
    attsolver vision search --data ~/data/cifar-100-python --dataset cifar100 --model resnet164 \
        --attention dia --supernet-epochs 164 --milestones 81 122 --budget 200 \
        --sparsity-bonus 0.01 --device cuda --out search_c100_r164      # CIFAR (GPU)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .._io import atomic_path, atomic_write_text
from ..vision.attention import list_vision_attention, parse_attention
from ..vision.data import DATASETS, load_image_data
from ..vision.resnet import check_connection, connection_key, count_parameters, make_model
from ..vision.search import (MaskEvaluator, check_budget, holdout_split, load_supernet, make_reward, random_search,
                             reinforce_search, save_supernet, train_supernet)
from ..vision.train import train_classifier
from .common import CLIError, device_name, guarded

__all__ = ["add_vision_parser"]


def _cmd_train(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset in ("cifar10", "cifar100") and args.data is None:
        raise CLIError(f"--dataset {args.dataset} needs --data DIR (the extracted python-version archive)")
    if args.output and Path(args.output).exists() and not args.overwrite:
        raise CLIError(f"{args.output} exists; pass --overwrite to replace it or choose another -o")
    data = load_image_data(args.dataset, args.data)
    torch.manual_seed(args.seed)
    model = make_model(args.model, num_classes=data.num_classes, in_channels=data.in_channels,
                       attention=args.attention, reduction=args.reduction, block=args.block,
                       skip=not args.no_skip, batchnorm=not args.no_bn, connection=args.connection)
    print(f"{args.model} ({model.config()['block']} blocks) with attention {args.attention!r}"
          + (f", connection {args.connection}" if args.connection else "") + ": "
          f"{count_parameters(model):,} parameters; {data}", file=sys.stderr)
    history = train_classifier(
        model, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, milestones=args.milestones, augment=not args.no_augment,
        seed=args.seed, checkpoint=args.checkpoint, resume=args.resume, overwrite=args.overwrite,
        progress=not args.no_progress, device=args.device,
    )
    summary = {"model": model.config(), "parameters": count_parameters(model), "dataset": data.name,
               "epochs_run": history.epochs_run, "final_test_acc": history.final_test_acc,
               "best_test_acc": max(history.test_acc, default=float("nan")),
               "test_acc": history.test_acc, "train_loss": history.train_loss,
               "resumed_from": history.resumed_from, "wall_time_s": history.wall_time_s}
    if args.output:
        out = Path(args.output)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    print(f"{args.model}/{args.attention} on {data.name}: {history.epochs_run} epochs, test accuracy "
          f"{history.final_test_acc:.4f} (best {summary['best_test_acc']:.4f}), {history.wall_time_s:.0f} s"
          + (f"; wrote {args.output}" if args.output else ""))
    return 0


def _cmd_search(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset in ("cifar10", "cifar100") and args.data is None:
        raise CLIError(f"--dataset {args.dataset} needs --data DIR (the extracted python-version archive)")
    out = Path(args.out)
    ckpt, log, summary_path = out / "supernet.pt", out / "search_log.jsonl", out / "search.json"
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise CLIError(f"{out} is not empty; pass --resume to continue the search it holds, or choose another --out")
    data = load_image_data(args.dataset, args.data)
    torch.manual_seed(args.seed)
    model = make_model(args.model, num_classes=data.num_classes, in_channels=data.in_channels,
                       attention=args.attention, reduction=args.reduction, block=args.block)
    check_connection((1,) * model.num_blocks, model.num_blocks, model.attention_spec)  # maskable attention?
    check_budget(args.budget, model.num_blocks)  # before any training
    if args.latency_weight and not args.latency_batch:
        raise CLIError("--latency-weight needs --latency-batch N (held-out images per timing)")
    split = holdout_split(data, args.holdout, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.model} with attention {args.attention!r}: {model.num_blocks} blocks, {2 ** model.num_blocks:,} masks, "
          f"{count_parameters(model):,} parameters; {split}", file=sys.stderr)
    if ckpt.exists():
        try:
            load_supernet(ckpt, model)  # checksum verified: a damaged file is an IntegrityError
        except ValueError as e:
            if type(e) is not ValueError:  # IntegrityError: report as it is
                raise
            raise CLIError(f"{e} (or remove {ckpt} to train it again)") from None
        print(f"supernet: loaded {ckpt}", file=sys.stderr)
    else:
        hist = train_supernet(model, split, epochs=args.supernet_epochs, p=args.p, batch_size=args.batch_size,
                              lr=args.lr, milestones=args.milestones, augment=not args.no_augment, seed=args.seed,
                              calibration=args.bn_calibration, progress=not args.no_progress, device=args.device)
        save_supernet(ckpt, model, hist)
        print(f"supernet: {args.supernet_epochs} epochs in {hist.wall_time_s:.0f} s; held-out accuracy all connected "
              f"{hist.holdout_acc_full[-1]:.4f}, none connected {hist.holdout_acc_none[-1]:.4f}", file=sys.stderr)
    model.to(args.device)
    evaluator = MaskEvaluator(model, split, log=log, calibration=args.bn_calibration, latency_batch=args.latency_batch or None, device=args.device)
    reward = make_reward(evaluator, sparsity_bonus=args.sparsity_bonus, latency_weight=args.latency_weight)
    results = {}
    budget = args.budget
    if args.method in ("reinforce", "both"):
        res = reinforce_search(reward, model.num_blocks, budget=budget, seed=args.seed, lr=args.policy_lr,
                               progress=not args.no_progress)
        results["reinforce"] = res
        budget = res.evaluated  # random search gets as many masks as REINFORCE evaluated
    if args.method in ("random", "both"):
        results["random"] = random_search(reward, model.num_blocks, budget=budget, seed=args.seed,
                                          progress=not args.no_progress)
    for name, res in results.items():
        rec = evaluator(res.best_mask)
        print(f"{name:9s} ticket {connection_key(res.best_mask)} ({sum(res.best_mask)}/{model.num_blocks} connected): "
              f"held-out accuracy {rec['accuracy']:.4f}, reward {res.best_reward:.4f}; {res.evaluated} masks evaluated "
              f"({res.new_evaluations} new, the rest from the log), {res.samples} drawn")
    summary = {"model": model.config(), "dataset": data.name, "holdout": len(split.test_y),
               "settings": {k: v for k, v in vars(args).items() if k != "func"},
               "results": {k: v.to_dict() for k, v in results.items()}}
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    first = next(iter(results.values()))
    print(f"wrote {summary_path}; retrain the ticket from scratch with: attsolver vision train --dataset {args.dataset} "
          f"--model {args.model} --attention {args.attention} --connection {connection_key(first.best_mask)} ...")
    return 0


def _cmd_params(args) -> int:
    for att in args.attention:
        model = make_model(args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                           attention=att, block=args.block, reduction=args.reduction)
        n = count_parameters(model)
        print(f"{args.model:14s} {att:10s} {n:>11,d}  {n / 1e6:.2f}M")
    return 0


def _cmd_attention(args) -> int:
    for name in list_vision_attention():
        spec = parse_attention(name)
        where = {"none": "no attention", "block": "one gate per block", "stage": "one module per stage, shared",
                 "norm": "in the BatchNorm layers"}[spec.placement]
        print(f"{name:12s} {where}")
    return 0


def add_vision_parser(sub) -> argparse.ArgumentParser:
    """Add ``vision`` (with ``train``, ``search``, ``params``, ``attention``) to the ``attsolver`` subparsers."""
    vision = sub.add_parser("vision", help="CIFAR ResNets with DIA / SE / IEBN attention: train, count parameters",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    vsub = vision.add_subparsers(dest="vision_command", required=True, metavar="SUBCOMMAND")
    attention_help = "attention: " + ", ".join(list_vision_attention())

    p = vsub.add_parser("train", help="train an image classifier (SGD 0.9, lr 0.1 step decay, wd 1e-4, crop+flip)")
    p.add_argument("--data", default=None, help="CIFAR folder (extracted python-version archive); not for digits")
    p.add_argument("--dataset", default="cifar10", choices=DATASETS)
    p.add_argument("--model", default="resnet20", help="resnet<depth> or preresnet<depth> (resnet20, resnet164, ...)")
    p.add_argument("--block", default=None, choices=("basic", "bottleneck"),
                   help="block type (default: basic for 6n+2 depths, bottleneck for 164/1001 and 9n+2)")
    p.add_argument("--attention", default="none", help=attention_help)
    p.add_argument("--reduction", type=int, default=None, help="gate reduction r (default 16 for SE, 4 for DIA)")
    p.add_argument("--epochs", type=int, default=164)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", "--wd", type=float, default=1e-4)
    p.add_argument("--milestones", type=int, nargs="*", default=None,
                   help="epochs (0-based) where the lr drops 10x (default: half and three quarters)")
    p.add_argument("--no-augment", action="store_true", help="no crop/flip (destabilised setting)")
    p.add_argument("--no-skip", action="store_true", help="remove the skip connections (destabilised setting)")
    p.add_argument("--no-bn", action="store_true", help="remove the BatchNorm layers (destabilised setting)")
    p.add_argument("--connection", default=None,
                   help="connection mask, one 0/1 per block stage by stage (e.g. 101100110 for resnet20): "
                        "which blocks apply the attention (a ticket from `vision search`)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--checkpoint", default=None, help="checkpoint written after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --checkpoint / -o")
    p.add_argument("-o", "--output", default=None, help="JSON summary (accuracies per epoch, parameters)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=guarded("vision train", _cmd_train))

    p = vsub.add_parser(
        "search", help="connection search (EAN): supernet with random masks, then REINFORCE / random search",
        description="Train a supernet with a random connection mask per mini-batch, then search masks on a "
                    "held-out split of the TRAINING images (the test set is never used) with REINFORCE and/or "
                    "random search under the same number of evaluated masks.  --out holds supernet.pt, "
                    "search_log.jsonl (one line per evaluated mask) and search.json; --resume continues an "
                    "interrupted search without re-evaluating logged masks.  CIFAR-100 / ResNet-164 (GPU): "
                    "attsolver vision search --data DIR/cifar-100-python --dataset cifar100 --model resnet164 "
                    "--attention dia --supernet-epochs 164 --milestones 81 122 --budget 200 --sparsity-bonus 0.01 "
                    "--device cuda --out search_c100_r164")
    p.add_argument("--data", default=None, help="CIFAR folder (extracted python-version archive); not for digits")
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument("--model", default="resnet20", help="resnet<depth> or preresnet<depth>")
    p.add_argument("--block", default=None, choices=("basic", "bottleneck"))
    p.add_argument("--attention", default="dia", help="maskable attention: dia, shared_se or se")
    p.add_argument("--reduction", type=int, default=None, help="gate reduction r (default 16 for SE, 4 for DIA)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of the training images held out to score masks")
    p.add_argument("--supernet-epochs", type=int, default=40)
    p.add_argument("--p", type=float, default=0.5, help="probability that a block is connected in supernet training")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--milestones", type=int, nargs="*", default=None)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--bn-calibration", type=int, default=256,
                   help="training images that re-estimate the BatchNorm statistics for each scored mask (0: off)")
    p.add_argument("--budget", type=int, default=48, help="distinct masks each search evaluates (>= 1)")
    p.add_argument("--method", default="both", choices=("reinforce", "random", "both"))
    p.add_argument("--policy-lr", type=float, default=0.03, help="Adam learning rate of the REINFORCE policy")
    p.add_argument("--sparsity-bonus", type=float, default=0.01,
                   help="reward bonus per unit fraction of unconnected blocks")
    p.add_argument("--latency-weight", type=float, default=0.0,
                   help="reward penalty per unit of relative inference time (needs --latency-batch)")
    p.add_argument("--latency-batch", type=int, default=0, help="held-out images per latency measurement (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=device_name, default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for supernet.pt, search_log.jsonl, search.json")
    p.add_argument("--resume", action="store_true", help="continue the search in --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=guarded("vision search", _cmd_search))

    p = vsub.add_parser("params", help="parameter counts of a model with each attention")
    p.add_argument("--model", default="resnet164")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--block", default=None, choices=("basic", "bottleneck"))
    p.add_argument("--reduction", type=int, default=None)
    p.add_argument("--attention", nargs="+", default=["none", "se", "dia", "iebn"], help=attention_help)
    p.set_defaults(func=guarded("vision params", _cmd_params))

    p = vsub.add_parser("attention", help="list the attention names and where each sits")
    p.set_defaults(func=guarded("vision attention", _cmd_attention))
    return vision
