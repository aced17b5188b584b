"""Connection search for shared attention: EAN's lottery tickets (Huang et al., arXiv
2011.14058 / 2207.07858).

A ResNet whose stages share an attention module (DIA, ``shared_se``; per-block SE works the
same way) gets a 0/1 *connection mask*, one bit per block (see
:attr:`attsolver.vision.CifarResNet.connection`).  The search has three steps:

1. **Supernet** (:func:`train_supernet`): train the network once with a fresh random mask
   per mini-batch, each bit Bernoulli(``p``), so that every mask works with the shared weights.
2. **Search**: score masks on held-out data carved from the *training* set
   (:func:`holdout_split`; the test set is never looked at), with

       reward(m) = accuracy(m) + sparsity_bonus · (unconnected blocks / blocks)
                   − latency_weight · (latency(m) / latency(all connected) − 1),

   by a small policy network trained with REINFORCE and a moving-average baseline
   (:func:`reinforce_search`), and by random search with the same number of evaluated masks
   (:func:`random_search`).  :class:`MaskEvaluator` scores a mask on the supernet and keeps
   every result in an append-only JSON-lines log keyed by the mask, so an interrupted search
   resumes without re-evaluating a finished mask: REINFORCE is replayed from its seed, and
   the masks it already evaluated are read back from the log.
3. **Ticket**: the best-rewarded mask, retrained from scratch (an ordinary
   :func:`attsolver.vision.train_classifier` run of a model with ``connection=ticket``) and
   compared with full attention, random masks of equal sparsity and no attention
   (``benchmarks/tickets.py``).

**Budget.** A search's budget is the number of *distinct* masks it evaluates.  REINFORCE
samples until it has evaluated ``budget`` distinct masks (a mask it samples again reuses its
reward), or until ``max_samples`` samples when its policy has converged first; random search
then gets exactly as many distinct masks as REINFORCE evaluated.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._io import AppendLog, load_checkpoint, save_checkpoint
from .._validate import is_integer, positive_int
from .data import ImageData
from .resnet import CifarResNet, check_connection, connection_key
from .train import augment_batch, default_milestones, lr_at

__all__ = ["holdout_split", "sample_mask", "train_supernet", "SupernetHistory", "evaluate_mask",
           "measure_latency", "MaskEvaluator", "make_reward", "MaskPolicy", "SearchResult",
           "reinforce_search", "random_search", "random_masks_like", "save_supernet", "load_supernet",
           "check_budget"]

Mask = tuple[int, ...]


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- data


def holdout_split(data: ImageData, fraction: float = 0.2, seed: int = 0) -> ImageData:
    """Carve a stratified held-out set from ``data``'s *training* images.

    Returns an :class:`ImageData` whose ``train_*`` are the remaining training images and
    whose ``test_*`` are the held-out ones (the search's validation set); ``data``'s test set
    is not used.  The normalisation statistics are those of ``data`` (so a model trained on
    the split sees inputs scaled as in a normal run)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction (the held-out share of the training images) must lie in (0, 1), got {fraction!r}")
    y = data.train_y.numpy()
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        held.append(rng.permutation(idx)[: int(round(fraction * len(idx)))])
    mask = np.zeros(len(y), dtype=bool)
    mask[np.concatenate(held)] = True
    if mask.all() or not mask.any():
        raise ValueError(f"fraction={fraction} leaves an empty training or held-out set ({len(y)} training images)")
    tr, va = torch.from_numpy(~mask), torch.from_numpy(mask)
    return ImageData(f"{data.name}-holdout", data.train_x[tr], data.train_y[tr], data.train_x[va], data.train_y[va],
                     data.num_classes, list(data.classes), flip=data.flip, mean=data.mean, std=data.std)


# ----------------------------------------------------------------------------- supernet


def sample_mask(num_blocks: int, p: float, generator: torch.Generator) -> Mask:
    """A random connection mask: each of ``num_blocks`` bits is 1 with probability ``p``."""
    return tuple(int(b) for b in (torch.rand(num_blocks, generator=generator) < p).tolist())


@dataclass
class SupernetHistory:
    """Per-epoch record of :func:`train_supernet`: mean training loss and accuracy (over random
    masks), held-out accuracy of the all-connected and the all-unconnected network."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    holdout_acc_full: list[float] = field(default_factory=list)
    holdout_acc_none: list[float] = field(default_factory=list)
    mean_connected: float = math.nan
    wall_time_s: float = 0.0


SUPERNET_FORMAT = "attsolver-vision-supernet"


def save_supernet(path: str | Path, model: CifarResNet, history: SupernetHistory | None = None) -> Path:
    """Write a trained supernet (config, weights, training history) atomically, with a checksum
    that :func:`load_supernet` verifies."""
    payload = {"format": SUPERNET_FORMAT, "config": model.config(),
               "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "history": asdict(history) if history is not None else None}
    return save_checkpoint(path, payload)


def _check_supernet(ckpt: Any, source: str) -> None:
    if not isinstance(ckpt, dict) or ckpt.get("format") != SUPERNET_FORMAT or "model" not in ckpt:
        raise ValueError(f"{source} is not an attsolver supernet (format {SUPERNET_FORMAT!r}); "
                         "write one with save_supernet (``attsolver vision search`` does)")


def load_supernet(path: str | Path, model: CifarResNet) -> dict[str, Any]:
    """Load the weights :func:`save_supernet` wrote into ``model`` (built with the same config);
    returns the verified payload.

    Raises:
        IntegrityError: the file is damaged (its content does not match its checksum).
        ValueError: not a supernet file, or written for another model config.
    """
    ckpt = load_checkpoint(path, what="supernet", check=_check_supernet)
    if ckpt.get("config") != model.config():
        raise ValueError(f"{path} holds a supernet for {ckpt.get('config')}, not for {model.config()}; "
                         "use another output folder")
    model.load_state_dict(ckpt["model"])
    return ckpt


def train_supernet(model: CifarResNet, data: ImageData, *, epochs: int, p: float = 0.5, batch_size: int = 128,
                   lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4,
                   milestones: list[int] | None = None, gamma: float = 0.1, augment: bool = True, seed: int = 0,
                   calibration: int = 256, progress: bool = False,
                   device: str | torch.device = "cpu") -> SupernetHistory:
    """Train ``model`` as a supernet: every mini-batch runs with a fresh random connection mask
    (each bit Bernoulli(``p``)); otherwise the recipe of :func:`attsolver.vision.train_classifier`
    (SGD with momentum, step decay at ``milestones``, crop augmentation).  ``data.test_*`` is
    only used for the per-epoch held-out accuracies of the all-connected and unconnected masks
    (pass a :func:`holdout_split`), with BatchNorm statistics re-estimated from
    ``calibration`` training images for each (see :func:`evaluate_mask`)."""
    if not isinstance(model, CifarResNet):
        raise TypeError(f"model must be a CifarResNet, got {type(model).__name__}")
    check_connection((1,) * model.num_blocks, model.num_blocks, model.attention_spec)  # has maskable attention
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    p = _probability("p", p)
    if model.in_channels != data.in_channels:
        raise ValueError(f"the model takes {model.in_channels}-channel images but {data.name} has {data.in_channels}")
    milestones = default_milestones(epochs) if milestones is None else sorted(int(m) for m in milestones)
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(int(seed))
    mask_gen = torch.Generator().manual_seed(int(seed) + 7919)
    hist, n, pad = SupernetHistory(), len(data.train_y), max(1, data.image_size[0] // 8)
    connected = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(epoch, lr, milestones, gamma)
        model.train()
        order = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for i in tqdm(range(0, n, batch_size), desc=f"supernet {epoch + 1}/{epochs}", leave=False,
                      disable=not progress):
            idx = order[i:i + batch_size]
            x = data.normalize(data.train_x[idx])
            if augment:
                x = augment_batch(x, gen, pad=pad, flip=data.flip)
            x, y = x.to(device), data.train_y[idx].to(device)
            mask = sample_mask(model.num_blocks, p, mask_gen)
            connected.append(sum(mask))
            logits = model(x, connection=mask)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the supernet loss became {float(loss)} in epoch {epoch + 1}; lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        hist.train_loss.append(loss_sum / n)
        hist.train_acc.append(correct / n)
        for bit, acc in ((1, hist.holdout_acc_full), (0, hist.holdout_acc_none)):
            acc.append(evaluate_mask(model, data, (bit,) * model.num_blocks, calibration=calibration, device=device))
    hist.mean_connected = statistics.fmean(connected) / model.num_blocks
    hist.wall_time_s = time.perf_counter() - t0
    return hist


@torch.no_grad()
def evaluate_mask(model: CifarResNet, data: ImageData, mask, *, batch_size: int = 512, calibration: int = 0,
                  device: str | torch.device = "cpu") -> float:
    """Accuracy of ``model`` (eval mode) with connection ``mask`` on ``data.test_*`` (for a
    search: the held-out part of the training images from :func:`holdout_split`).

    ``calibration > 0``: first re-estimate the BatchNorm statistics for this mask from that
    many *training* images (``data.train_*``, a fixed subset, no augmentation), as one-shot
    architecture searches do: the running statistics a supernet keeps are an average over
    random masks and fit no single mask well.  The model's own statistics are restored after."""
    mask = check_connection(mask, model.num_blocks, model.attention_spec)
    was_training = model.training
    saved = None
    if calibration:
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
                 for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        model.train()
        idx = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(0))[:calibration]
        for i in range(0, len(idx), batch_size):
            model(data.normalize(data.train_x[idx[i:i + batch_size]]).to(device), connection=mask)
    model.eval()
    correct = 0
    for i in range(0, len(data.test_y), batch_size):
        x = data.normalize(data.test_x[i:i + batch_size]).to(device)
        correct += int((model(x, connection=mask).argmax(1).cpu() == data.test_y[i:i + batch_size]).sum())
    for m, mean, var, count, momentum in saved or ():
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.num_batches_tracked.copy_(count)
        m.momentum = momentum
    model.train(was_training)
    return correct / len(data.test_y)


@torch.no_grad()
def measure_latency(model: nn.Module, x: Tensor, connection=None, *, repeats: int = 20, warmup: int = 3,
                    statistic: str = "median") -> float:
    """Wall time (seconds) of one inference forward of ``x`` in eval mode, with ``connection``
    (``None``: the model's own): the ``"median"`` or the ``"min"`` (the least disturbed by
    other processes on a shared machine) over ``repeats`` forwards.  For ratios, measure the
    contenders in one run."""
    repeats = positive_int("repeats", repeats)
    if statistic not in ("median", "min"):
        raise ValueError(f"statistic must be 'median' or 'min', got {statistic!r}")
    was_training = model.training
    model.eval()
    kwargs = {} if connection is None else {"connection": connection}
    for _ in range(warmup):
        model(x, **kwargs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x, **kwargs)
        times.append(time.perf_counter() - t0)
    model.train(was_training)
    return statistics.median(times) if statistic == "median" else min(times)


# ----------------------------------------------------------------------------- evaluation + log


def _fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class MaskEvaluator:
    """Scores masks on a trained supernet, each mask once: ``evaluator(mask)`` returns the
    record ``{"key", "mask", "accuracy"[, "latency_s"]}``, computing it only if no record for
    that mask exists in memory or in the log.

    Args:
        model: the supernet (a :class:`CifarResNet` with maskable attention).
        data: its :func:`holdout_split`; masks are scored on ``data.test_*``.
        log: path of the JSON-lines log (``None``: in memory only).  Its first record holds
            the supernet's fingerprint and the held-out set's size; a log written for another
            supernet is refused (``ValueError``).
        calibration: training images used to re-estimate the BatchNorm statistics for each mask
            before scoring it (:func:`evaluate_mask`; 0: use the supernet's own statistics,
            which fit extreme masks badly).
        latency_batch: if given, also measure each mask's inference latency on this many
            held-out images (:func:`measure_latency`, ``latency_repeats`` repeats).

    ``evaluations`` counts the masks actually computed in this session (not read from the log).
    """

    def __init__(self, model: CifarResNet, data: ImageData, *, log: str | Path | None = None, calibration: int = 256,
                 latency_batch: int | None = None, latency_repeats: int = 10, device: str | torch.device = "cpu"):
        self.model, self.data, self.device = model, data, device
        self.num_blocks = model.num_blocks
        self.latency_batch = None if latency_batch is None else positive_int("latency_batch", latency_batch)
        self.latency_repeats = positive_int("latency_repeats", latency_repeats)
        if isinstance(calibration, bool) or not isinstance(calibration, int) or calibration < 0:
            raise ValueError(f"calibration (training images per BatchNorm re-estimate) must be an integer >= 0, "
                             f"got {calibration!r}")
        self.calibration = calibration
        self.evaluations = 0
        self._records: dict[str, dict[str, Any]] = {}
        self.log = AppendLog(log) if log is not None else None
        header = {"key": "__supernet__", "fingerprint": _fingerprint(model), "num_blocks": self.num_blocks,
                  "holdout": int(len(data.test_y)), "attention": model.attention_spec.name,
                  "latency": self.latency_batch is not None, "calibration": calibration}
        if self.log is not None:
            old = self.log.get("__supernet__")
            if old is None:
                self.log.add(header)
            elif {k: old.get(k) for k in header} != header:
                diffs = ", ".join(f"{k}: {old.get(k)!r} in the log, {v!r} here" for k, v in header.items()
                                  if old.get(k) != v)
                raise ValueError(f"the search log {self.log.path} was written for another supernet or set-up ({diffs}); "
                                 "resume with the same supernet or use a new log path")
            self._records = {k: r for k, r in self.log.records.items() if not k.startswith("__")}

    def known(self, mask) -> bool:
        """Whether ``mask`` has a record (in memory or in the log)."""
        return connection_key(check_connection(mask, self.num_blocks)) in self._records

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def __call__(self, mask) -> dict[str, Any]:
        mask = check_connection(mask, self.num_blocks, self.model.attention_spec)
        key = connection_key(mask)
        rec = self._records.get(key)
        if rec is not None:
            return rec
        rec = {"key": key, "mask": list(mask),
               "accuracy": evaluate_mask(self.model, self.data, mask, calibration=self.calibration, device=self.device)}
        if self.latency_batch is not None:
            x = self.data.normalize(self.data.test_x[:self.latency_batch]).to(self.device)
            rec["latency_s"] = measure_latency(self.model, x, mask, repeats=self.latency_repeats)  # latency needs no BN fix
        self.evaluations += 1
        self._records[key] = rec
        if self.log is not None:
            self.log.add(rec)
        return rec


def make_reward(evaluator: MaskEvaluator, *, sparsity_bonus: float = 0.0,
                latency_weight: float = 0.0) -> Callable[[Mask], float]:
    """The search reward of a mask ``m`` with ``n`` blocks::

        accuracy(m) + sparsity_bonus · zeros(m) / n − latency_weight · (latency(m) / latency(1…1) − 1)

    ``latency_weight > 0`` needs an evaluator that measures latency; the all-connected mask
    is then evaluated once as the reference (not counted in any search's budget)."""
    for name, v in (("sparsity_bonus", sparsity_bonus), ("latency_weight", latency_weight)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
    if latency_weight and evaluator.latency_batch is None:
        raise ValueError("latency_weight > 0 needs a MaskEvaluator built with latency_batch=N (images per timing)")
    n = evaluator.num_blocks

    def reward(mask: Mask) -> float:
        rec = evaluator(mask)
        r = rec["accuracy"] + sparsity_bonus * (n - sum(mask)) / n
        if latency_weight:
            ref = evaluator((1,) * n)["latency_s"]
            r -= latency_weight * (rec["latency_s"] / ref - 1.0)
        return r

    reward.evaluator = evaluator
    return reward


# ----------------------------------------------------------------------------- search


class MaskPolicy(nn.Module):
    """A distribution over connection masks: independent Bernoulli bits whose logits come from
    a learned embedding of each block's position passed through a small MLP
    (``z_j = MLP(e_j)``, ``P(m_j = 1) = sigmoid(z_j)``).  The MLP's last layer starts at zero,
    so the initial policy is uniform (every bit 1/2)."""

    def __init__(self, num_blocks: int, *, embedding_dim: int = 8, hidden: int = 16):
        super().__init__()
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.embedding = nn.Embedding(num_blocks, positive_int("embedding_dim", embedding_dim))
        self.mlp = nn.Sequential(nn.Linear(embedding_dim, positive_int("hidden", hidden)), nn.Tanh(),
                                 nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def logits(self) -> Tensor:
        """``[num_blocks]`` logits of the connection probabilities."""
        return self.mlp(self.embedding.weight).squeeze(-1)

    def probabilities(self) -> Tensor:
        return torch.sigmoid(self.logits())

    def sample(self, generator: torch.Generator) -> Mask:
        p = self.probabilities().detach()
        return tuple(int(b) for b in (torch.rand(self.num_blocks, generator=generator) < p).tolist())

    def log_prob(self, masks: Tensor) -> Tensor:
        """``log π(m)`` for masks ``[K, num_blocks]`` (0/1): ``Σ_j m_j log σ(z_j) + (1 − m_j) log σ(−z_j)``."""
        z = self.logits()
        return -F.binary_cross_entropy_with_logits(z.expand_as(masks), masks.to(z.dtype), reduction="none").sum(-1)

    def greedy(self) -> Mask:
        """The most probable mask (each bit 1 where its probability exceeds 1/2)."""
        return tuple(int(b) for b in (self.logits() > 0).tolist())


@dataclass
class SearchResult:
    """What a search found.

    Attributes:
        method: ``"reinforce"`` or ``"random"``.
        best_mask, best_reward: the highest-rewarded evaluated mask (ties: the first found).
        evaluated: distinct masks evaluated (the budget spent).
        samples: masks drawn (REINFORCE re-draws masks it has seen; random search never does).
        trace: per sample ``{"sample", "mask", "reward", "new", "best_reward"}``.
        probabilities: REINFORCE's final ``P(m_j = 1)`` per block (``None`` for random search).
        greedy_mask: REINFORCE's most probable mask (``None`` for random search).
        new_evaluations: evaluations computed in this call (the rest came from a log).
    """

    method: str
    best_mask: Mask
    best_reward: float
    evaluated: int
    samples: int
    trace: list[dict[str, Any]]
    probabilities: list[float] | None = None
    greedy_mask: Mask | None = None
    new_evaluations: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "best_mask": connection_key(self.best_mask), "best_reward": self.best_reward,
                "evaluated": self.evaluated, "samples": self.samples, "probabilities": self.probabilities,
                "greedy_mask": None if self.greedy_mask is None else connection_key(self.greedy_mask),
                "trace": [{**t, "mask": connection_key(t["mask"])} for t in self.trace]}


def check_budget(budget: Any, num_blocks: int) -> int:
    """``budget`` (distinct masks a search evaluates) as an int in ``[1, 2^num_blocks]``."""
    if not is_integer(budget):
        raise TypeError(f"budget (masks to evaluate) must be an integer, got {type(budget).__name__}")
    if budget < 1:
        raise ValueError(f"budget (masks to evaluate) must be at least 1, got {budget}")
    if budget > 2 ** num_blocks:
        raise ValueError(f"budget {budget} exceeds the {2 ** num_blocks} masks of {num_blocks} blocks; "
                         f"use at most {2 ** num_blocks} (that is exhaustive search)")
    return int(budget)


def _new_counter(reward: Callable) -> Callable[[], int]:
    evaluator = getattr(reward, "evaluator", None)  # set by make_reward
    start = evaluator.evaluations if evaluator is not None else 0
    return lambda: (evaluator.evaluations - start) if evaluator is not None else 0


def reinforce_search(reward: Callable[[Mask], float], num_blocks: int, *, budget: int, seed: int = 0,
                     lr: float = 0.03, baseline_decay: float = 0.9, masks_per_step: int = 4,
                     normalize: bool = True, max_samples: int | None = None, embedding_dim: int = 8,
                     hidden: int = 16, progress: bool = False) -> SearchResult:
    """Search connection masks with REINFORCE.

    Each step draws ``masks_per_step`` masks from a :class:`MaskPolicy`, scores them with
    ``reward`` (a mask seen before reuses its reward, no new evaluation) and takes an Adam step
    on the policy-gradient loss ``−mean_k (R_k − b) log π(m_k)``, where ``b`` is a moving
    average of the rewards (``b ← β b + (1 − β) mean_k R_k``, ``β = baseline_decay``, started
    at the first step's mean).  With ``normalize`` the advantages are divided by a moving
    average of their standard deviation, so the step size does not depend on the reward's
    scale.  Stops after ``budget`` distinct masks or ``max_samples`` draws (default
    ``50 · budget``).  Deterministic given ``seed`` and the rewards: re-running with a
    :class:`MaskEvaluator` log replays the same draws and evaluates only the masks the log
    lacks."""
    num_blocks = positive_int("num_blocks", num_blocks)
    budget = check_budget(budget, num_blocks)
    masks_per_step = positive_int("masks_per_step", masks_per_step)
    if not 0.0 <= baseline_decay < 1.0:
        raise ValueError(f"baseline_decay must lie in [0, 1), got {baseline_decay!r}")
    max_samples = 50 * budget if max_samples is None else positive_int("max_samples", max_samples)
    counter = _new_counter(reward)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        policy = MaskPolicy(num_blocks, embedding_dim=embedding_dim, hidden=hidden)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(int(seed) + 104729)
    seen: dict[Mask, float] = {}
    trace: list[dict[str, Any]] = []
    best: tuple[float, Mask] | None = None
    baseline = scale = None
    bar = tqdm(total=budget, desc="reinforce", disable=not progress, leave=False)
    while len(seen) < budget and len(trace) < max_samples:
        masks, rewards = [], []
        for _ in range(masks_per_step):
            if len(seen) >= budget or len(trace) >= max_samples:
                break
            m = policy.sample(gen)
            new = m not in seen
            if new:
                seen[m] = float(reward(m))
                bar.update(1)
                if best is None or seen[m] > best[0]:
                    best = (seen[m], m)
            masks.append(m)
            rewards.append(seen[m])
            trace.append({"sample": len(trace), "mask": m, "reward": seen[m], "new": new, "best_reward": best[0]})
        r = torch.tensor(rewards, dtype=torch.float32)
        mean_r = float(r.mean())
        baseline = mean_r if baseline is None else baseline
        adv = r - baseline
        if normalize:
            spread = float(adv.pow(2).mean().sqrt())
            scale = spread if scale is None else baseline_decay * scale + (1 - baseline_decay) * spread
            adv = adv / (scale + 1e-8) if scale > 1e-12 else adv * 0.0
        loss = -(adv * policy.log_prob(torch.tensor(masks, dtype=torch.float32))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        baseline = baseline_decay * baseline + (1 - baseline_decay) * mean_r
    bar.close()
    return SearchResult("reinforce", best[1], best[0], len(seen), len(trace), trace,
                        probabilities=[round(float(p), 6) for p in policy.probabilities().detach()],
                        greedy_mask=policy.greedy(), new_evaluations=counter())


def random_search(reward: Callable[[Mask], float], num_blocks: int, *, budget: int, seed: int = 0,
                  p: float = 0.5, progress: bool = False) -> SearchResult:
    """Evaluate ``budget`` distinct masks drawn at random (each bit Bernoulli(``p``), repeats
    redrawn) and keep the best-rewarded one."""
    num_blocks = positive_int("num_blocks", num_blocks)
    budget = check_budget(budget, num_blocks)
    p = _probability("p", p)
    if p in (0.0, 1.0) and budget > 1:
        raise ValueError(f"p={p} draws a single mask; random search over {budget} masks needs 0 < p < 1")
    counter = _new_counter(reward)
    gen = torch.Generator().manual_seed(int(seed) + 15485863)
    seen: dict[Mask, float] = {}
    trace, best = [], None
    for _ in tqdm(range(budget), desc="random search", disable=not progress, leave=False):
        m = sample_mask(num_blocks, p, gen)
        while m in seen:
            m = sample_mask(num_blocks, p, gen)
        seen[m] = float(reward(m))
        if best is None or seen[m] > best[0]:
            best = (seen[m], m)
        trace.append({"sample": len(trace), "mask": m, "reward": seen[m], "new": True, "best_reward": best[0]})
    return SearchResult("random", best[1], best[0], len(seen), len(trace), trace, new_evaluations=counter())


def random_masks_like(mask: Sequence[int], count: int, *, seed: int = 0, exclude: Sequence[Sequence[int]] = ()) -> list[Mask]:
    """``count`` distinct random masks with as many connected blocks as ``mask`` (excluding
    ``mask`` itself and ``exclude``); fewer if fewer exist."""
    mask = tuple(int(b) for b in mask)
    n, k = len(mask), sum(mask)
    count = positive_int("count", count)
    banned = {mask, *(tuple(int(b) for b in e) for e in exclude)}
    available = math.comb(n, k) - sum(1 for e in banned if len(e) == n and sum(e) == k)
    rng = np.random.default_rng(seed)
    out: list[Mask] = []
    while len(out) < min(count, available):
        m = [0] * n
        for j in rng.choice(n, size=k, replace=False):
            m[int(j)] = 1
        m = tuple(m)
        if m not in banned:
            banned.add(m)
            out.append(m)
    return out
