"""CIFAR ResNets (He et al. 2016) and PreResNets (He et al., "Identity mappings", 2016) with
pluggable attention and the switches of the destabilised-training experiments.

Three stages of ``n`` residual blocks at 16, 32, 64 base channels (stride 2 between stages)
after a 3x3 stem, then global average pooling and a linear classifier:

* basic blocks (two 3x3 convolutions): depth ``6n + 2`` (20, 32, 44, 56, 110, ...);
* bottleneck blocks (1x1, 3x3, 1x1 with expansion 4): depth ``9n + 2`` (20, 29, 164, ...).

Attention (see :mod:`attsolver.vision.attention`) recalibrates a block's residual-branch
output ``u`` before the addition: ``out = ReLU(u ⊙ a + shortcut(x))`` (pre-activation:
without the ReLU).  A gate per block (``"se"``), one gate per stage shared by its blocks
(``"shared_se"``), DIA's stateful unit per stage (``"dia"``), or IEBN inside the norm layers
(``"iebn"``).

**Parameter-count conventions** (what reproduces the published tables):

* shortcuts: basic blocks default to He et al.'s CIFAR option A (subsample and zero-pad
  the channels, no parameters): ResNet-20/56/110 have 0.27M/0.85M/1.7M parameters on
  CIFAR-10 as in their Table 6 (with 1x1 projections ResNet-56 would have 0.86M).
  Bottleneck blocks default to option B (1x1 convolution + BatchNorm where the shape
  changes), as the DIANet/IEBN code: ResNet-164 on CIFAR-100 has 1,727,284 = 1.73M.
* SE: reduction 16, linear layers with biases, one per block on the ``4·planes`` output
  channels of each bottleneck: 1,929,388 = 1.93M for SE-ResNet-164 (reduction 4 would give
  2.5M).  DIA: reduction 4, one unit per stage, both MLPs with biases: 1,946,132 = 1.95M.
  The DIANet paper's table (baseline 1.73M, SE 1.93M, DIA 1.95M) thus compares SE at r=16
  with DIA at r=4.
* IEBN replaces every BatchNorm except the one in a projection shortcut (as the IEBN code),
  adding 2C parameters each.

**Connection masks** (EAN, arXiv 2011.14058 / 2207.07858): with attention on the residual
branch (``se``, ``shared_se``, ``dia``), every block has a bit saying whether its attention is
applied; the blocks are numbered stage by stage (ResNet-20: 3 stages x 3 blocks = 9 bits).
Set a mask on the model (``model.connection = "101011100"``) or pass it per call
(``model(x, connection=mask)``); ``None`` connects every block.  An unconnected block skips
the module altogether (it is not called, nothing is multiplied by one), so it costs no time
at inference; a stage none of whose blocks is connected never runs its module.  For DIA the
recurrent state passes an unconnected block unchanged: the next connected block of the stage
continues from the state the last connected one left (zero if none did), as if the skipped
block were not part of the sequence.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import IEBatchNorm, make_attention
from .attention import AttentionSpec, parse_attention

__all__ = ["CifarResNet", "make_model", "list_models", "count_parameters", "blocks_per_stage", "BLOCK_TYPES",
           "check_connection", "connection_key", "attention_parameters"]

#: block type -> (convolutions per block k: depth = k n + 2, output expansion)
BLOCK_TYPES = {"basic": (2, 1), "bottleneck": (3, 4)}
_EXAMPLES = {"basic": "20, 32, 44, 56, 110", "bottleneck": "20, 29, 47, 164"}
#: depths that fit 6n+2 but whose published networks use bottleneck blocks
_BOTTLENECK_BY_CONVENTION = {164, 1001}


def blocks_per_stage(depth: int, block: str | None = None) -> tuple[int, str]:
    """``(n, block)`` for a CIFAR ResNet of ``depth`` layers; ``block=None`` picks basic blocks
    when ``depth = 6n + 2`` (except 164 and 1001, bottleneck by convention), else bottleneck
    blocks when ``depth = 9n + 2``.  A depth that does not fit raises ``ValueError``."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int, got {type(depth).__name__}")
    if block is not None and block not in BLOCK_TYPES:
        raise ValueError(f"unknown block type {block!r}; choose one of: {', '.join(BLOCK_TYPES)}")

    def fits(kind: str) -> bool:
        k = 3 * BLOCK_TYPES[kind][0]
        return depth >= k + 2 and (depth - 2) % k == 0

    if block is None:
        if fits("basic") and depth not in _BOTTLENECK_BY_CONVENTION:
            block = "basic"
        elif fits("bottleneck"):
            block = "bottleneck"
        else:
            raise ValueError(
                f"depth {depth} fits no CIFAR ResNet: basic blocks need depth 6n+2 "
                f"({_EXAMPLES['basic']}, ...), bottleneck blocks 9n+2 ({_EXAMPLES['bottleneck']}, ...)"
            )
    elif not fits(block):
        k = 3 * BLOCK_TYPES[block][0]
        other = "bottleneck" if block == "basic" else "basic"
        hint = f"; it fits {other} blocks" if fits(other) else ""
        raise ValueError(
            f"depth {depth} does not fit {block} blocks: they need depth {k}n+2 with n >= 1 "
            f"({_EXAMPLES[block]}, ...){hint}"
        )
    return (depth - 2) // (3 * BLOCK_TYPES[block][0]), block


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias)


class _ZeroPadShortcut(nn.Module):
    """He et al.'s option A: subsample by the stride, append zero channels. No parameters."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class _Block(nn.Module):
    """A residual block split into ``residual(x) -> u`` and ``merge(u, x) -> out`` so that
    the stage can recalibrate ``u`` (with a gate of its own or one it shares)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, *, preact: bool, norm, bias: bool,
                 shortcut: str | None, plain_norm):
        super().__init__()
        self.preact = preact
        c_out = planes * self.expansion
        self.layers = self._layers(c_in, planes, stride, norm, bias)
        if shortcut is None:  # the no-skip switch: the block is a plain layer
            self.shortcut = None
        elif stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            if c_out < c_in:
                raise ValueError(f"a zero-padding shortcut cannot go from {c_in} to {c_out} channels")
            self.shortcut = _ZeroPadShortcut(stride, c_out - c_in)
        else:  # "B": 1x1 projection (+ BN, never IEBN, as the reference code)
            self.shortcut = nn.Sequential(_conv(c_in, c_out, 1, stride, bias), plain_norm(c_out))
        self.attention = None  # a per-block gate, set by the stage

    def _layers(self, c_in, planes, stride, norm, bias) -> nn.Sequential:
        raise NotImplementedError

    def residual(self, x: Tensor) -> Tensor:
        return self.layers(x)

    def merge(self, u: Tensor, x: Tensor) -> Tensor:
        out = u if self.shortcut is None else u + self.shortcut(x)
        return out if self.preact else F.relu(out)


class BasicBlock(_Block):
    expansion = 1

    def _layers(self, c_in, planes, stride, norm, bias):
        if self.preact:
            return nn.Sequential(norm(c_in), nn.ReLU(), _conv(c_in, planes, 3, stride, bias),
                                 norm(planes), nn.ReLU(), _conv(planes, planes, 3, 1, bias))
        return nn.Sequential(_conv(c_in, planes, 3, stride, bias), norm(planes), nn.ReLU(),
                             _conv(planes, planes, 3, 1, bias), norm(planes))


class Bottleneck(_Block):
    expansion = 4

    def _layers(self, c_in, planes, stride, norm, bias):
        c_out = 4 * planes
        if self.preact:
            return nn.Sequential(norm(c_in), nn.ReLU(), _conv(c_in, planes, 1, 1, bias),
                                 norm(planes), nn.ReLU(), _conv(planes, planes, 3, stride, bias),
                                 norm(planes), nn.ReLU(), _conv(planes, c_out, 1, 1, bias))
        return nn.Sequential(_conv(c_in, planes, 1, 1, bias), norm(planes), nn.ReLU(),
                             _conv(planes, planes, 3, stride, bias), norm(planes), nn.ReLU(),
                             _conv(planes, c_out, 1, 1, bias), norm(c_out))


class Stage(nn.Module):
    """``n`` blocks at one resolution, with the stage's attention: a gate per block, one shared
    gate, or one shared stateful unit (DIA) whose state starts at zero here."""

    def __init__(self, blocks: list[_Block], spec: AttentionSpec, channels: int, gate_kwargs: dict):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.shared = None
        if spec.placement == "stage":
            self.shared = make_attention(spec.gate, channels, **gate_kwargs)
        elif spec.placement == "block":
            for blk in self.blocks:
                blk.attention = make_attention(spec.gate, channels, **gate_kwargs)

    def forward(self, x: Tensor, connection: tuple[int, ...] | None = None) -> Tensor:
        """``connection``: one 0/1 per block (``None``: all 1); a 0 skips the block's attention
        and, for a stateful unit, leaves its state as it was."""
        shared, state = self.shared, None  # state: a stateful unit's, reset per stage
        for j, blk in enumerate(self.blocks):
            u = blk.residual(x)
            if connection is not None and not connection[j]:
                pass  # unconnected: no attention call at all
            elif shared is not None:
                if shared.stateful:
                    a, state = shared(u, state)
                else:
                    a = shared(u)
                u = u * a
            elif blk.attention is not None:
                u = u * blk.attention(u)
            x = blk.merge(u, x)
        return x


class CifarResNet(nn.Module):
    """A CIFAR ResNet / PreResNet with attention and destabilisation switches.

    Args:
        depth: number of weighted layers, ``6n+2`` (basic) or ``9n+2`` (bottleneck).
        num_classes: classifier outputs.
        block: ``"basic"``, ``"bottleneck"`` or ``None`` (see :func:`blocks_per_stage`).
        preact: pre-activation blocks (PreResNet) with a final BN-ReLU before pooling.
        in_channels: image channels (3 for CIFAR, 1 for digits); checked in ``forward``.
        base_width: channels of the first stage (16); the stages have 1x, 2x, 4x that
            (times 4 with bottleneck blocks).
        attention: a name from :func:`attsolver.vision.list_vision_attention`.
        reduction: the gate's ``r`` (default :data:`attsolver.vision.attention.DEFAULT_REDUCTION`).
        skip: ``False`` removes every shortcut (the blocks become plain layers).
        batchnorm: ``False`` removes every normalisation layer; the convolutions then carry
            biases (standing in for BN's shift).  Not possible with ``attention="iebn"``.
        shortcut: ``"A"`` (zero-padding, basic-block default) or ``"B"`` (1x1 projection,
            bottleneck default) where a block changes shape.
        attention_kwargs: further keyword arguments for the gates.
        connection: a connection mask (one 0/1 per block, see :attr:`connection`); ``None``
            connects every block.

    Input ``[B, in_channels, H, W]`` of any ``H, W`` (adaptive pooling; at least 1x1 after
    the two stride-2 stages); output logits ``[B, num_classes]``.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, *, block: str | None = None,
                 preact: bool = False, in_channels: int = 3, base_width: int = 16,
                 attention: str = "none", reduction: int | None = None, skip: bool = True,
                 batchnorm: bool = True, shortcut: str | None = None,
                 attention_kwargs: dict[str, Any] | None = None, connection=None):
        super().__init__()
        n, block = blocks_per_stage(depth, block)
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("base_width", base_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        spec = parse_attention(attention)
        if spec.placement == "norm" and not batchnorm:
            raise ValueError(f"attention {spec.name!r} lives in the BatchNorm layers; it cannot be used with batchnorm=False")
        if shortcut is None:
            shortcut = "A" if block == "basic" else "B"
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' (zero-padding) or 'B' (projection), got {shortcut!r}")
        if reduction is None:
            reduction = spec.default_reduction()
        self._config = {
            "depth": depth, "num_classes": num_classes, "block": block, "preact": bool(preact),
            "in_channels": in_channels, "base_width": base_width, "attention": spec.name,
            "reduction": int(reduction), "skip": bool(skip), "batchnorm": bool(batchnorm),
            "shortcut": shortcut, "attention_kwargs": dict(attention_kwargs or {}),
        }
        self.in_channels = in_channels
        self.attention_spec = spec

        def plain_norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batchnorm else nn.Identity()

        def norm(c: int) -> nn.Module:
            return IEBatchNorm(c) if spec.placement == "norm" else plain_norm(c)

        bias = not batchnorm
        block_cls = BasicBlock if block == "basic" else Bottleneck
        gate_kwargs = {"reduction": int(reduction), **(attention_kwargs or {})}

        self.stem = _conv(in_channels, base_width, 3, 1, bias)
        self.stem_norm = nn.Identity() if preact else norm(base_width)
        stages, c_in = [], base_width
        for i in range(3):
            planes = base_width * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(block_cls(c_in, planes, 2 if (i > 0 and j == 0) else 1, preact=preact, norm=norm,
                                        bias=bias, shortcut=shortcut if skip else None, plain_norm=plain_norm))
                c_in = planes * block_cls.expansion
            stages.append(Stage(blocks, spec, c_in, gate_kwargs))
        self.stages = nn.ModuleList(stages)
        self.final_norm = norm(c_in) if preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self.num_features = c_in
        self.blocks_per_stage = n
        self._connection: tuple[int, ...] | None = None
        self.connection = connection

        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init (fan-out), as the CIFAR reference code
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model: ``CifarResNet(**model.config())``
        (``connection`` only when a mask is set)."""
        config = dict(self._config)
        if self._connection is not None:
            config["connection"] = list(self._connection)
        return config

    @property
    def num_blocks(self) -> int:
        """Residual blocks in all (``3 n``): the length of a connection mask."""
        return 3 * self.blocks_per_stage

    @property
    def connection(self) -> tuple[int, ...] | None:
        """The connection mask used when ``forward`` gets none: one 0/1 per block, stage by
        stage, or ``None`` (every block connected).  Assigning validates it (see
        :func:`check_connection`)."""
        return self._connection

    @connection.setter
    def connection(self, mask) -> None:
        self._connection = None if mask is None else check_connection(mask, self.num_blocks, self.attention_spec)

    def forward(self, x: Tensor, connection=None) -> Tensor:
        """Logits ``[B, num_classes]`` for images ``x``; ``connection`` overrides
        :attr:`connection` for this call (validated the same way)."""
        mask = self._connection if connection is None else check_connection(connection, self.num_blocks,
                                                                             self.attention_spec)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images [batch, {self.in_channels}, height, width], got shape {tuple(x.shape)}"
                + (f"; build the model with in_channels={x.shape[1]} for {x.shape[1]}-channel images"
                   if x.ndim == 4 else "")
            )
        x = self.stem(x)
        x = self.stem_norm(x)
        if not self._config["preact"]:
            x = F.relu(x)
        n = self.blocks_per_stage
        for i, stage in enumerate(self.stages):
            x = stage(x, None if mask is None else mask[i * n:(i + 1) * n])
        if self._config["preact"]:
            x = F.relu(self.final_norm(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def check_connection(mask, num_blocks: int, attention: str | AttentionSpec | None = None) -> tuple[int, ...]:
    """A connection mask as a tuple of 0/1 ints, after checking it.

    ``mask``: a sequence (list, tuple, 1-D tensor or array) of 0/1 values (``bool``, ``int``,
    or floats equal to 0 or 1), or a string of ``"0"``/``"1"`` characters, one per block,
    stage by stage.  A wrong length, any other value, or ``attention`` that is not on the
    residual branch (``none``, ``iebn``) raises ``ValueError``; another type ``TypeError``.
    """
    if attention is not None:
        spec = parse_attention(attention)
        if spec.placement not in ("block", "stage"):
            raise ValueError(
                f"connection masks switch attention on the residual branch on or off per block; the model's "
                f"attention {spec.name!r} has none (use se, shared_se or dia)")
    if isinstance(mask, str):
        bad = sorted(set(mask) - {"0", "1"})
        if bad:
            raise ValueError(f"connection mask {mask!r} may only contain '0' and '1' (found {', '.join(map(repr, bad))})")
        values = [int(ch) for ch in mask]
    else:
        if isinstance(mask, torch.Tensor):
            if mask.ndim != 1:
                raise ValueError(f"connection mask must be 1-D (one bit per block), got shape {tuple(mask.shape)}")
            mask = mask.tolist()
        elif hasattr(mask, "tolist") and hasattr(mask, "ndim"):  # numpy array
            if mask.ndim != 1:
                raise ValueError(f"connection mask must be 1-D (one bit per block), got shape {tuple(mask.shape)}")
            mask = mask.tolist()
        if not isinstance(mask, (list, tuple)):
            raise TypeError(f"connection mask must be a sequence of 0/1 or a '0'/'1' string, got {type(mask).__name__}")
        values = []
        for v in mask:
            if isinstance(v, (bool, int, float)) and v in (0, 1):
                values.append(int(v))
            else:
                raise ValueError(f"connection mask values must be 0 or 1, got {v!r} in {list(mask)!r}")
    if len(values) != num_blocks:
        raise ValueError(f"connection mask has {len(values)} bits but the model has {num_blocks} blocks "
                         f"(one bit per block, stage by stage)")
    return tuple(values)


def connection_key(mask) -> str:
    """The mask as a ``"0"``/``"1"`` string (``(1, 0, 1)`` -> ``"101"``): a log key."""
    return "".join(str(int(b)) for b in mask)


def attention_parameters(model: CifarResNet, connection=None) -> int:
    """Trainable parameters of the attention modules a forward with ``connection`` (default:
    the model's) actually uses: a shared module counts once if any block of its stage is
    connected, a per-block gate if its block is.  Norm-layer attention (IEBN) counts its gates."""
    spec = model.attention_spec
    if spec.placement == "none":
        return 0
    if spec.placement == "norm":
        return sum(count_parameters(m.gate) for m in model.modules() if isinstance(m, IEBatchNorm))
    mask = model.connection if connection is None else check_connection(connection, model.num_blocks, spec)
    n = model.blocks_per_stage
    total = 0
    for i, stage in enumerate(model.stages):
        bits = (1,) * n if mask is None else mask[i * n:(i + 1) * n]
        if stage.shared is not None and any(bits):
            total += count_parameters(stage.shared)
        for blk, bit in zip(stage.blocks, bits):
            if blk.attention is not None and bit:
                total += count_parameters(blk.attention)
    return total


_NAME = re.compile(r"^(pre)?resnet(\d+)$")


def list_models() -> list[str]:
    """Model names with a published counterpart (any ``resnet<depth>`` / ``preresnet<depth>`` works)."""
    return ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet164",
            "preresnet110", "preresnet164"]


def make_model(name: str, **kwargs: Any) -> CifarResNet:
    """``resnet<depth>`` or ``preresnet<depth>`` (e.g. ``"resnet164"``): a :class:`CifarResNet`
    with ``kwargs`` (``num_classes``, ``attention``, ``block``, ...)."""
    m = _NAME.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(f"unknown model {name!r}: use resnet<depth> or preresnet<depth>, e.g. {', '.join(list_models())}")
    return CifarResNet(int(m.group(2)), preact=m.group(1) is not None, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
