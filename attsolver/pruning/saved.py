"""Saving and loading a pruned network without pickling the module.

A pruned ResNet's layers are narrower than any constructor builds, so the file holds the
constructor's config, the pruned ``state_dict`` (its shapes say how wide each layer is now), a
probe input and the network's output on it.  :func:`load_pruned_model` rebuilds the network,
narrows each ``Conv2d`` / ``BatchNorm`` / ``Linear`` to the saved shapes, loads the weights and
checks that the probe gives the saved output.  The file is written and read through the
project's integrity layer (:func:`attsolver._io.save_checkpoint`): atomic, checksummed,
``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._io import load_checkpoint, save_checkpoint
from ..vision.resnet import CifarResNet

__all__ = ["save_pruned_model", "load_pruned_model", "PRUNED_FORMAT"]

PRUNED_FORMAT = "attsolver-pruned-model"


def save_pruned_model(path: str | Path, model: nn.Module, example_inputs: Tensor) -> Path:
    """Write ``model`` (a pruned :class:`~attsolver.vision.resnet.CifarResNet`) to ``path``;
    ``example_inputs`` (one image is enough) becomes the probe checked on load."""
    if not hasattr(model, "config"):
        raise TypeError(f"save_pruned_model needs a model with a config() (a CifarResNet), got {type(model).__name__}")
    was_training = model.training
    model.eval()
    probe = example_inputs[:1].detach().cpu().clone()
    with torch.no_grad():
        out = model(probe.to(next(model.parameters()).device)).detach().cpu()
    model.train(was_training)
    payload = {"format": PRUNED_FORMAT, "class": type(model).__name__, "config": model.config(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "probe_input": probe, "probe_output": out}
    return save_checkpoint(path, payload)


def _check(ckpt: Any, source: str) -> None:
    if not isinstance(ckpt, dict) or ckpt.get("format") != PRUNED_FORMAT:
        raise ValueError(f"{source} is not an attsolver pruned model (format {PRUNED_FORMAT!r}); "
                         "write one with save_pruned_model (``attsolver prune run --save-model``)")
    missing = [k for k in ("class", "config", "state_dict", "probe_input", "probe_output") if k not in ckpt]
    if missing:
        raise ValueError(f"{source} lacks {missing}; it was not written by save_pruned_model")


def _narrow(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    for mname, module in model.named_modules():
        prefix = f"{mname}." if mname else ""
        changed = False
        for pname, p in list(module.named_parameters(recurse=False)):
            saved = state.get(prefix + pname)
            if saved is not None and saved.shape != p.shape:
                setattr(module, pname, nn.Parameter(torch.empty(saved.shape, dtype=p.dtype), p.requires_grad))
                changed = True
        for bname, b in list(module.named_buffers(recurse=False)):
            saved = state.get(prefix + bname)
            if b is not None and saved is not None and saved.shape != b.shape:
                module.register_buffer(bname, torch.empty(saved.shape, dtype=b.dtype))
                changed = True
        if not changed:
            continue
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                raise ValueError(f"{source}: cannot rebuild the grouped convolution {mname}")
            module.out_channels, module.in_channels = module.weight.shape[0], module.weight.shape[1]
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            module.num_features = module.weight.shape[0] if module.weight is not None else module.running_mean.shape[0]
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        else:
            raise ValueError(f"{source}: cannot rebuild the pruned layer {mname} ({type(module).__name__})")


def load_pruned_model(path: str | Path) -> nn.Module:
    """The network :func:`save_pruned_model` wrote, in eval mode.

    Raises:
        IntegrityError: the file is damaged (its content does not match its checksum).
        ValueError: not a pruned-model file, or the rebuilt network does not reproduce the
            saved probe output.
    """
    ckpt = load_checkpoint(path, what="pruned model", check=_check)
    if ckpt["class"] != CifarResNet.__name__:
        raise ValueError(f"{path} holds a {ckpt['class']}; only CifarResNet can be rebuilt")
    model = CifarResNet(**dict(ckpt["config"]))
    state = ckpt["state_dict"]
    _narrow(model, state, str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: its weights do not fit the rebuilt network: {e}") from None
    model.eval()
    with torch.no_grad():
        out = model(ckpt["probe_input"])
    if out.shape != ckpt["probe_output"].shape or not torch.allclose(out, ckpt["probe_output"], rtol=1e-5, atol=1e-6):
        raise ValueError(f"{path}: the rebuilt network does not reproduce the saved probe output; "
                         "it cannot be rebuilt faithfully")
    return model
