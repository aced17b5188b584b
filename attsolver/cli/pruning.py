"""``attsolver prune``: train (or load) a CIFAR ResNet, prune it with a criterion or a
calibrated blend of criteria (torch-pruning does the pruning), fine-tune, report.

Examples::

    attsolver prune criteria                                   # the base criteria
    attsolver prune run --dataset digits --epochs 20 --criterion blend --target-flops 0.5
    attsolver prune run --dataset digits --criterion l1 --ratio 0.3 --finetune-epochs 5 -o l1.json
    attsolver prune run --checkpoint base.pt --criterion blend --population 12 --generations 8

``--checkpoint`` reads a checkpoint written by ``attsolver vision train --checkpoint``
(the model must have projection shortcuts: ``--model resnet20`` is built with
``shortcut='B'`` here for that reason).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from .._io import atomic_write_text
from ..pruning.criteria import CRITERIA, NEEDS_GRADIENTS
from ..vision.data import DATASETS, ImageData, load_image_data
from ..vision.resnet import CifarResNet, make_model
from ..vision.train import load_checkpoint, train_classifier
from .common import CLIError, guarded

__all__ = ["add_prune_parser"]


def _cmd_criteria(args) -> int:
    doc = {"l1": "sum |w| of each filter (MagnitudeImportance p=1)",
           "l2": "sum w^2 of each filter (MagnitudeImportance p=2)",
           "fpgm": "distance to the other filters: geometric-median redundancy (FPGMImportance)",
           "bn_scale": "|gamma| of the BatchNorm scale (BNScaleImportance)",
           "taylor": "sum |w * dL/dw|, first-order Taylor (TaylorImportance)"}
    for name in CRITERIA:
        print(f"{name:9s} {doc.get(name, '')}" + ("  [needs gradients]" if name in NEEDS_GRADIENTS else ""))
    print("blend     sum alpha_i * normalised score_i over the cluster representatives, alpha by evolutionary search")
    return 0


def _check(args) -> None:
    if args.finetune_lr is not None and not (math.isfinite(args.finetune_lr) and args.finetune_lr > 0):
        raise CLIError(f"--finetune-lr must be a positive learning rate, got {args.finetune_lr}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise CLIError(f"--lr must be a positive learning rate, got {args.lr}")
    if (args.ratio is None) == (args.target_flops is None):
        raise CLIError("give exactly one of --ratio (channel fraction removed) and --target-flops (FLOP fraction removed)")
    for name in ("ratio", "target_flops"):
        v = getattr(args, name)
        if v is not None and not 0.0 <= v < 1.0:
            raise CLIError(f"--{name.replace('_', '-')} must lie in [0, 1) (the fraction removed), got {v}")
    for name in ("epochs", "finetune_epochs", "population"):
        v = getattr(args, name)
        if v < (0 if name == "finetune_epochs" else 1):
            raise CLIError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    if args.output and Path(args.output).exists() and not args.overwrite:
        raise CLIError(f"{args.output} exists; pass --overwrite to replace it or choose another -o")


def _cmd_run(args) -> int:
    from ..pruning import (  # lazy: torch-pruning, the `pruning` extra (if missing, the error names the install)
        accumulate_gradients, accuracy, calibrate_blend, clone_with_grads, cluster_criteria, heldout_split,
        layer_scores, prune_model, ratio_for_reduction, recalibrate_bn, save_pruned_model,
    )

    _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset in ("cifar10", "cifar100") and args.data is None:
        raise CLIError(f"--dataset {args.dataset} needs --data DIR (the extracted python-version archive)")
    data = load_image_data(args.dataset, args.data)
    keep, held = heldout_split(data.train_y, args.heldout, seed=args.seed)
    tr = ImageData(data.name, data.train_x[keep], data.train_y[keep], data.test_x, data.test_y, data.num_classes,
                   data.classes, flip=data.flip)
    x_tr, y_tr = tr.normalize(tr.train_x), tr.train_y
    x_ho, y_ho = tr.normalize(data.train_x[held]), data.train_y[held]
    x_te, y_te = tr.normalize(data.test_x), data.test_y
    example = x_tr[:1]
    torch.manual_seed(args.seed)
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        config = {k: v for k, v in ckpt["model_config"].items() if k != "class"}
        model = CifarResNet(**config)
        model.load_state_dict(ckpt["model"])
        print(f"loaded {args.checkpoint}", file=sys.stderr)
    else:
        model = make_model(args.model, num_classes=data.num_classes, in_channels=data.in_channels, shortcut="B")
        train_classifier(model, tr, epochs=args.epochs, lr=args.lr, seed=args.seed, progress=not args.no_progress)
    base_acc = accuracy(model, x_te, y_te)
    if args.target_flops is not None:
        ratio, _ = ratio_for_reduction(model, example, args.target_flops, metric="flops")
    else:
        ratio = args.ratio
    summary = {"criterion": args.criterion, "pruning_ratio": ratio, "base_test_acc": base_acc}
    if args.criterion in ("taylor", "blend"):
        accumulate_gradients(model, x_tr, y_tr)
    if args.criterion == "blend":
        clusters = cluster_criteria(layer_scores(model, example), list(CRITERIA), method=args.correlation,
                                    threshold=args.threshold)
        print(f"clusters {clusters.clusters} -> representatives {clusters.representatives}", file=sys.stderr)
        importance, search = calibrate_blend(
            model, clusters.representatives, pruning_ratio=ratio, example_inputs=example, calib_x=x_tr,
            heldout_x=x_ho, heldout_y=y_ho, population=args.population, generations=args.generations,
            mutation_sigma=args.mutation_sigma, seed=args.seed,
            progress=(lambda r: print(f"generation {r['generation']}: best held-out acc {r['best']:.4f}",
                                      file=sys.stderr)) if not args.no_progress else None)
        summary.update(clusters=clusters.to_dict(), alpha=importance.alphas, search_fitness=search.best_fitness)
    else:
        importance = args.criterion
    pruned = clone_with_grads(model)
    report = prune_model(pruned, importance, pruning_ratio=ratio, example_inputs=example)
    pruned.zero_grad(set_to_none=True)
    recalibrate_bn(pruned, x_tr)
    summary.update(params_before=report.params_before, params_after=report.params_after,
                   flops_before=report.flops_before, flops_after=report.flops_after,
                   test_acc_after_recal=accuracy(pruned, x_te, y_te))
    if args.finetune_epochs > 0:
        train_classifier(pruned, tr, epochs=args.finetune_epochs, lr=args.finetune_lr, seed=args.seed,
                         milestones=[args.finetune_epochs // 2], progress=not args.no_progress)
    summary["test_acc_finetuned"] = accuracy(pruned, x_te, y_te)
    if args.save_model:
        save_pruned_model(args.save_model, pruned, example)  # checksummed; load_pruned_model rebuilds it
    if args.output:
        atomic_write_text(args.output, json.dumps(summary, indent=2, default=float))
    print(f"{args.criterion}: ratio {ratio:.3f}, params {report.params_before:,} -> {report.params_after:,}, "
          f"FLOPs {report.flops_before / 1e6:.2f}M -> {report.flops_after / 1e6:.2f}M; test accuracy "
          f"{base_acc:.4f} -> {summary['test_acc_after_recal']:.4f} (BN recal.) -> "
          f"{summary['test_acc_finetuned']:.4f} (fine-tuned)" + (f"; wrote {args.output}" if args.output else ""))
    return 0


def add_prune_parser(sub) -> argparse.ArgumentParser:
    """Add ``prune`` (with ``run`` and ``criteria``) to the ``attsolver`` subparsers."""
    prune = sub.add_parser("prune", help="prune a ResNet by a criterion or a calibrated blend of criteria",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    psub = prune.add_subparsers(dest="prune_command", required=True, metavar="SUBCOMMAND")
    p = psub.add_parser("criteria", help="list the base criteria")
    p.set_defaults(func=guarded("prune criteria", _cmd_criteria))

    p = psub.add_parser("run", help="train/load, prune, BN-recalibrate, fine-tune, report")
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument("--data", default=None, help="CIFAR folder; not for digits")
    p.add_argument("--model", default="resnet20", help="resnet<depth> (built with projection shortcuts)")
    p.add_argument("--checkpoint", default=None, help="start from this `attsolver vision train` checkpoint")
    p.add_argument("--epochs", type=int, default=20, help="training epochs of the base model (no --checkpoint)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate of the base training")
    p.add_argument("--criterion", default="blend", choices=[*CRITERIA, "blend"])
    p.add_argument("--ratio", type=float, default=None, help="fraction of each layer's channels removed, [0, 1)")
    p.add_argument("--target-flops", type=float, default=None, help="fraction of the FLOPs to remove, [0, 1)")
    p.add_argument("--heldout", type=float, default=0.2, help="fraction of the training data held out for the search")
    p.add_argument("--correlation", default="spearman", choices=("spearman", "kendall"))
    p.add_argument("--threshold", type=float, default=0.3, help="clustering cut, distance 1 - correlation")
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=5)
    p.add_argument("--mutation-sigma", type=float, default=0.1)
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--save-model", default=None, help="write the pruned model (read it with attsolver.pruning.load_pruned_model)")
    p.add_argument("-o", "--output", default=None, help="JSON summary")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=guarded("prune run", _cmd_run))
    return prune
