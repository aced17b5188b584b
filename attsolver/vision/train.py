"""Image-classifier training: the CIFAR recipe of the ResNet / DIANet papers.

SGD with momentum 0.9 and weight decay 1e-4 on every parameter, learning rate 0.1 divided
by 10 at half and three quarters of the epochs (the DIANet recipe: 164 epochs, decays at 81
and 122), batch 128, cross-entropy.  Augmentation, done with torch ops on whole batches:
random crop from the image zero-padded by 1/8 of its size (4 pixels on 32x32) and a random
horizontal flip where the data set allows it.  A tqdm bar per epoch; an atomic checkpoint
(model, optimiser, random-generator states, history) after each epoch, read back with
``weights_only=True``; ``resume=True`` continues from it to the weights an uninterrupted
run reaches.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._io import load_checkpoint as _load_sealed
from .._io import save_checkpoint
from .._validate import nonnegative_number, one_of, positive_int
from .data import ImageData

__all__ = ["train_classifier", "evaluate", "augment_batch", "VisionHistory", "CHECKPOINT_FORMAT",
           "load_checkpoint", "lr_at", "default_milestones"]

CHECKPOINT_FORMAT = "attsolver-vision-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class VisionHistory:
    """Per-epoch record of :func:`train_classifier` (all epochs, including those before a resume).

    Attributes:
        train_loss, train_acc: mean cross-entropy and accuracy on the (augmented) training batches.
        test_loss, test_acc: on the test set, model in eval mode.
        lr: learning rate of each epoch.
        epochs_run: epochs completed.
        diverged_epoch: 1-based epoch in which the loss became non-finite (``on_nonfinite="stop"``).
        resumed_from: the completed epoch a resume continued from, else ``None``.
        wall_time_s: seconds spent in this call.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epochs_run: int = 0
    diverged_epoch: int | None = None
    resumed_from: int | None = None
    wall_time_s: float = 0.0

    @property
    def final_test_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else math.nan


def lr_at(epoch: int, lr: float, milestones: list[int], gamma: float) -> float:
    """Step decay: ``lr * gamma^(number of milestones <= epoch)`` (epoch 0-based)."""
    return lr * gamma ** sum(epoch >= m for m in milestones)


def default_milestones(epochs: int) -> list[int]:
    """The step-decay epochs (0-based) used when none are given: half and three quarters."""
    return [epochs // 2, (3 * epochs) // 4]


def augment_batch(x: Tensor, generator: torch.Generator, *, pad: int, flip: bool) -> Tensor:
    """Random crop of each image from its zero-padded version (offsets in ``[0, 2 pad]``) and,
    when ``flip``, a horizontal flip with probability 1/2.  ``x``: ``[B, C, H, W]``."""
    b, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]  # [B, H, 1]
        cols = (dx[:, None] + torch.arange(w))[:, None, :]  # [B, 1, W]
        x = padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # [B, H, W, C] -> [B, C, H, W]
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x.contiguous()


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, *, split: str = "test", batch_size: int = 500,
             device: str | torch.device = "cpu") -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` (put in eval mode, then restored) on a split."""
    xs, ys = (data.test_x, data.test_y) if split == "test" else (data.train_x, data.train_y)
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(ys), batch_size):
        x = data.normalize(xs[i:i + batch_size]).to(device)
        y = ys[i:i + batch_size].to(device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    n = max(len(ys), 1)
    return loss_sum / n, correct / n


def _check_vision_format(ckpt: Any, source: str) -> None:
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{source} is not an attsolver vision checkpoint (format {CHECKPOINT_FORMAT!r}); "
                         "write one with train_classifier(..., checkpoint=path)")
    version = ckpt.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{source} has an invalid vision checkpoint version {version!r}; the file is damaged")
    if version > CHECKPOINT_VERSION:
        raise ValueError(f"{source} was written by a newer attsolver (vision checkpoint version {version})")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A vision checkpoint, loaded with ``weights_only=True`` and its checksum verified.

    Raises:
        FileNotFoundError: no such file.
        IntegrityError: damaged (unreadable, or its content does not match its checksum).
        ValueError: not a vision checkpoint, or from a newer attsolver.
    """
    return _load_sealed(path, what="vision checkpoint", check=_check_vision_format)


def train_classifier(model: nn.Module, data: ImageData, *, epochs: int, batch_size: int = 128,
                     lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4,
                     milestones: list[int] | tuple[int, ...] | None = None, gamma: float = 0.1,
                     augment: bool = True, seed: int = 0, checkpoint: str | Path | None = None,
                     resume: bool = False, overwrite: bool = False, progress: bool = True,
                     device: str | torch.device = "cpu", on_nonfinite: str = "raise",
                     eval_batch_size: int = 500) -> VisionHistory:
    """Train ``model`` (in place) on ``data`` with SGD and step decay; evaluate after each epoch.

    Args:
        model: a classifier ``[B, C, H, W] -> [B, num_classes]``.
        data: an :class:`ImageData`.
        epochs: total epochs (a resumed run continues up to this many).
        batch_size, lr, momentum, weight_decay: SGD settings (the recipe: 128, 0.1, 0.9, 1e-4).
        milestones: 0-based epochs at which the learning rate is multiplied by ``gamma``;
            default ``[epochs // 2, 3 epochs // 4]`` (82 and 123 for 164 epochs).
        augment: random crop (padding ``size/8``) + flip (where ``data.flip``); ``False`` is
            the no-augmentation setting.
        seed: seeds the batch order and the augmentation (the model's initialisation is the
            caller's: seed torch before building it).
        checkpoint: path of the checkpoint written (atomically) after every epoch.
        resume: continue from ``checkpoint`` if it exists (same settings required).
        overwrite: allow replacing an existing ``checkpoint`` without resuming.
        progress: show a tqdm bar.
        on_nonfinite: ``"raise"`` (``FloatingPointError``) or ``"stop"`` (end training, record
            ``diverged_epoch``) when the training loss turns NaN/inf.

    Returns a :class:`VisionHistory`.
    """
    epochs, batch_size, milestones, ckpt_path = _check_training(
        model, data, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
        milestones=milestones, gamma=gamma, checkpoint=checkpoint, resume=resume, overwrite=overwrite,
        on_nonfinite=on_nonfinite)
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": float(lr), "momentum": float(momentum),
                "weight_decay": float(weight_decay), "milestones": milestones, "gamma": float(gamma),
                "augment": bool(augment), "seed": int(seed), "data": data.name,
                "n_train": int(len(data.train_y)), "model": _model_config(model)}
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(int(seed))
    history, start = VisionHistory(), 0
    if resume and ckpt_path is not None and ckpt_path.exists():
        history = _resume(ckpt_path, settings, model, optimizer, generator)
        start = history.epochs_run
    t0 = time.perf_counter()
    for epoch in range(start, epochs):
        if history.diverged_epoch is not None:
            break
        rate = lr_at(epoch, lr, milestones, gamma)
        for group in optimizer.param_groups:
            group["lr"] = rate
        loss_sum, correct, seen = _train_epoch(
            model, data, optimizer, generator, history, epoch=epoch, epochs=epochs, batch_size=batch_size,
            augment=augment, progress=progress, device=device, on_nonfinite=on_nonfinite)
        test_loss, test_acc = evaluate(model, data, batch_size=eval_batch_size, device=device)
        history.train_loss.append(loss_sum / seen if seen else math.nan)
        history.train_acc.append(correct / seen if seen else math.nan)
        history.test_loss.append(test_loss)
        history.test_acc.append(test_acc)
        history.lr.append(rate)
        history.epochs_run = epoch + 1
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{epochs}  lr {rate:.4g}  train loss {history.train_loss[-1]:.4f} "
                       f"acc {history.train_acc[-1]:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}")
        if ckpt_path is not None:
            _save(ckpt_path, model, optimizer, generator, history, settings)
    history.wall_time_s = time.perf_counter() - t0
    return history


def _check_training(model: nn.Module, data: ImageData, *, epochs, batch_size, lr, momentum, weight_decay,
                    milestones, gamma, checkpoint, resume, overwrite,
                    on_nonfinite) -> tuple[int, int, list[int], Path | None]:
    """:func:`train_classifier`'s arguments checked: ``(epochs, batch_size, milestones, checkpoint path)``."""
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    one_of("on_nonfinite", on_nonfinite, ("raise", "stop"))
    for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay), ("gamma", gamma)):
        nonnegative_number(name, value)
    milestones = sorted(int(m) for m in (default_milestones(epochs) if milestones is None else milestones))
    num_classes = getattr(model, "_config", {}).get("num_classes")
    if num_classes is not None and num_classes < data.num_classes:
        raise ValueError(f"the model has {num_classes} outputs but {data.name} has {data.num_classes} classes")
    in_channels = getattr(model, "in_channels", None)
    if in_channels is not None and in_channels != data.in_channels:
        raise ValueError(f"the model takes {in_channels}-channel images but {data.name} has {data.in_channels}; "
                         f"build it with in_channels={data.in_channels}")
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt_path is None:
        raise ValueError("resume=True needs checkpoint=path (the checkpoint of the run to continue)")
    if ckpt_path is not None and ckpt_path.exists() and not resume and not overwrite:
        raise FileExistsError(f"checkpoint {ckpt_path} exists; pass resume=True to continue that run "
                              "or overwrite=True to start again")
    return epochs, batch_size, milestones, ckpt_path


def _resume(ckpt_path: Path, settings: dict, model: nn.Module, optimizer, generator) -> VisionHistory:
    """Restore the run ``ckpt_path`` holds (weights, optimiser, random states) and return its
    history; the run must have the same ``settings``."""
    ckpt = load_checkpoint(ckpt_path)
    diffs = [f"{k}: {ckpt['settings'].get(k)!r} there, {v!r} here" for k, v in settings.items()
             if ckpt["settings"].get(k) != v]
    if diffs:
        raise ValueError(f"cannot resume from {ckpt_path}: the run differs from the one that wrote it ("
                         + "; ".join(diffs) + "); use the same settings or another checkpoint path")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    history = VisionHistory(**{k: v for k, v in ckpt["history"].items() if k != "wall_time_s"})
    history.resumed_from = history.epochs_run
    return history


def _train_epoch(model: nn.Module, data: ImageData, optimizer, generator, history: VisionHistory, *, epoch: int,
                 epochs: int, batch_size: int, augment: bool, progress: bool, device,
                 on_nonfinite: str) -> tuple[float, int, int]:
    """One pass over the training images in a random order: ``(summed loss, correct, seen)``.
    A non-finite loss raises, or (``on_nonfinite="stop"``) ends the epoch with
    ``history.diverged_epoch`` set."""
    model.train()
    n, pad = len(data.train_y), max(1, data.image_size[0] // 8)
    order = torch.randperm(n, generator=generator)
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(range(0, n, batch_size), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
               disable=not progress, unit="batch")
    for i in bar:
        idx = order[i:i + batch_size]
        x = data.normalize(data.train_x[idx])
        if augment:
            x = augment_batch(x, generator, pad=pad, flip=data.flip)
        x, y = x.to(device), data.train_y[idx].to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            if on_nonfinite == "raise":
                raise FloatingPointError(
                    f"the training loss became {float(loss.detach())} in epoch {epoch + 1}, batch {i // batch_size}; "
                    "lower the learning rate (the last checkpoint is kept)"
                )
            history.diverged_epoch = epoch + 1
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(idx)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    bar.close()
    return loss_sum, correct, seen


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = model.config() if hasattr(model, "config") else {}
    return {"class": type(model).__name__, **config}


def _save(path: Path, model, optimizer, generator, history: VisionHistory, settings: dict) -> None:
    ckpt = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "settings": settings,
        "model_config": settings["model"], "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "history": asdict(history),
    }
    save_checkpoint(path, ckpt)  # sealed: verified by load_checkpoint on resume
