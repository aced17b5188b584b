"""Latent classifiers.

* :class:`TimeLatentClassifier` — ``p(c_k | z_t, t)`` for several attributes at once (a shared
  MLP trunk conditioned on the time embedding, one softmax head per attribute), trained on
  *noised* latents ``z_t ~ q(z_t | z_0)`` so that its gradient is meaningful along a sampler's
  whole trajectory (2304.12536).
* :class:`LogisticDirections` — one multinomial logistic regression per attribute on clean
  latents; its weight vectors are the linear edit directions of latent arithmetic
  (InterFaceGAN: the unit normal of the separating hyperplane).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .._extras import require
from .ddpm import timestep_embedding
from .latent import check_latent
from .schedule import NoiseSchedule

__all__ = ["TimeLatentClassifier", "train_latent_classifier", "LogisticDirections", "check_attributes"]


def check_attributes(attributes) -> dict[str, int]:
    """``{name: number of classes}`` with every count an int >= 2."""
    if not isinstance(attributes, dict) or not attributes:
        raise ValueError(f"attributes must be a non-empty dict name -> number of classes, got {attributes!r}")
    for k, v in attributes.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"attributes[{k!r}] must be an int >= 2 (number of classes), got {v!r}")
    return dict(attributes)


def _check_labels(labels, attributes: dict[str, int], n: int, name: str = "labels") -> dict[str, Tensor]:
    if not isinstance(labels, dict):
        raise TypeError(f"{name} must be a dict attribute -> class indices, got {type(labels).__name__}")
    unknown = [k for k in labels if k not in attributes]
    if unknown:
        raise ValueError(f"unknown attribute(s) {unknown} in {name}; known attributes: {list(attributes)}")
    out = {}
    for k, v in labels.items():
        v = torch.as_tensor(v, dtype=torch.long)
        if v.dim() == 0:
            v = v.expand(n)
        if v.shape != (n,):
            raise ValueError(f"{name}[{k!r}] must be one class index or a [N={n}] tensor, got shape {list(v.shape)}")
        if (v < 0).any() or (v >= attributes[k]).any():
            raise ValueError(f"{name}[{k!r}] must be class indices in [0, {attributes[k] - 1}]")
        out[k] = v
    return out


class TimeLatentClassifier(nn.Module):
    """``log p(c_k | z_t, t)`` for every attribute ``k``.

    Args:
        dim: latent dimension.
        attributes: ``{name: number of classes}``, e.g. ``{"shape": 3, "size": 2}``.
        hidden, depth, time_dim: trunk width, number of hidden layers, time-embedding size.
    """

    def __init__(self, dim: int, attributes: dict[str, int], hidden: int = 256, depth: int = 3,
                 time_dim: int = 64):
        super().__init__()
        self.dim = dim
        self.attributes = check_attributes(attributes)
        self.time_dim = time_dim
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.layers = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth - 1))
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, c) for k, c in self.attributes.items()})

    def forward(self, z: Tensor, t: Tensor) -> dict[str, Tensor]:
        """Logits per attribute, ``{name: [N, classes]}``."""
        h = self.inp(z) + self.time(timestep_embedding(t, self.time_dim).to(z.dtype))
        for layer in self.layers:
            h = h + layer(h)
        h = torch.nn.functional.silu(h)
        return {k: head(h) for k, head in self.heads.items()}

    def check_labels(self, labels, n: int, name: str = "labels") -> dict[str, Tensor]:
        """Validate ``{attribute: class index or [N] indices}``; unknown names raise."""
        return _check_labels(labels, self.attributes, n, name)

    def log_prob(self, z: Tensor, t: Tensor, labels: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{k: log p(labels[k] | z_t, t)}``, each ``[N]``."""
        logits = self(z, t)
        return {k: torch.log_softmax(logits[k], 1).gather(1, v[:, None]).squeeze(1) for k, v in labels.items()}

    @torch.no_grad()
    def predict(self, z: Tensor, t: int = 0) -> dict[str, Tensor]:
        """Most probable class per attribute at timestep ``t``."""
        logits = self(z, torch.full((len(z),), t, dtype=torch.long))
        return {k: v.argmax(1) for k, v in logits.items()}


def train_latent_classifier(clf: TimeLatentClassifier, schedule: NoiseSchedule, z: Tensor,
                            labels: dict[str, Tensor], *, steps: int = 3000, batch_size: int = 256,
                            lr: float = 2e-3, seed: int = 0, max_t: int | None = None) -> list[float]:
    """Train on noised latents: draw ``t`` uniformly in ``[0, max_t]`` (default ``T-1``), ``z_t`` from
    ``q(z_t | z_0)``, minimise the summed cross-entropy of all heads.  Returns the per-step losses."""
    check_latent(z, clf.dim, "z")
    labels = clf.check_labels(labels, len(z))
    missing = [k for k in clf.attributes if k not in labels]
    if missing:
        raise ValueError(f"labels is missing attribute(s) {missing}")
    max_t = schedule.T - 1 if max_t is None else schedule.check_timestep(max_t, "max_t")
    g = torch.Generator().manual_seed(seed)

    def batch():
        idx = torch.randint(0, len(z), (batch_size,), generator=g)
        t = torch.randint(0, max_t + 1, (batch_size,), generator=g)
        zt = schedule.q_sample(z[idx], t, generator=g)
        return (zt, t), {k: labels[k][idx] for k in clf.attributes}

    return train_attribute_heads(clf, batch, steps=steps, lr=lr)


def train_attribute_heads(clf: nn.Module, batch, *, steps: int, lr: float) -> list[float]:
    """The attribute classifiers' training loop: Adam at ``lr`` with a cosine schedule over
    ``steps``, minimising the summed cross-entropy of ``clf``'s heads (``clf.attributes``).

    ``batch()`` draws one batch, ``(inputs, labels)``: ``clf(*inputs)`` gives a dict of logits
    ``[B, n_classes]`` per attribute, ``labels`` the class indices ``[B]``.  Leaves ``clf`` in
    eval mode; returns the per-step losses."""
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    clf.train()
    for _ in range(steps):
        inputs, labels = batch()
        logits = clf(*inputs)
        loss = sum(nn.functional.cross_entropy(logits[k], labels[k]) for k in clf.attributes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    clf.eval()
    return losses


class LogisticDirections:
    """Per attribute, a multinomial logistic regression ``p(c | z) = softmax(W z + b)`` on clean
    latents (scikit-learn), and the class means of the training latents.

    The edit direction from class ``a`` to class ``b`` is ``d = (W_b - W_a)/|W_b - W_a|`` — for a
    binary attribute the unit normal of the decision hyperplane, exactly InterFaceGAN's ``n``.
    """

    def __init__(self, attributes: dict[str, int], C: float = 1.0):
        self.attributes = check_attributes(attributes)
        self.C = C
        self.weight: dict[str, Tensor] = {}
        self.bias: dict[str, Tensor] = {}
        self.class_means: dict[str, Tensor] = {}
        self.dim: int | None = None

    def fit(self, z: Tensor, labels: dict[str, Tensor]) -> "LogisticDirections":
        LogisticRegression = require("sklearn.linear_model", "LogisticDirections",
                                     "guidance").LogisticRegression

        if not isinstance(z, Tensor) or z.dim() != 2:
            raise ValueError(f"z must be a [N, D] tensor, got {getattr(z, 'shape', type(z))}")
        labels = _check_labels(labels, self.attributes, len(z))
        self.dim = z.shape[1]
        x = z.detach().double().numpy()
        for k, c in self.attributes.items():
            y = labels[k].numpy()
            lr = LogisticRegression(C=self.C, max_iter=2000).fit(x, y)
            w, b = np.asarray(lr.coef_), np.asarray(lr.intercept_)
            if c == 2:  # sklearn keeps one row for binary problems: softmax form with W_0 = -w/2, W_1 = w/2
                w, b = np.stack([-w[0] / 2, w[0] / 2]), np.array([-b[0] / 2, b[0] / 2])
            self.weight[k] = torch.as_tensor(w, dtype=torch.float32)
            self.bias[k] = torch.as_tensor(b, dtype=torch.float32)
            self.class_means[k] = torch.stack([z[labels[k] == j].float().mean(0) for j in range(c)])
        return self

    def _require_fit(self):
        if self.dim is None:
            raise RuntimeError("LogisticDirections is not fitted: call fit(z, labels) first")

    def logits(self, z: Tensor) -> dict[str, Tensor]:
        self._require_fit()
        return {k: z @ self.weight[k].T.to(z.dtype) + self.bias[k].to(z.dtype) for k in self.attributes}

    def predict(self, z: Tensor) -> dict[str, Tensor]:
        return {k: v.argmax(1) for k, v in self.logits(z).items()}

    def direction(self, attribute: str, source: Tensor, target: Tensor) -> Tensor:
        """Unit directions ``[N, D]`` from each sample's ``source`` class to its ``target`` class
        (zero where they agree)."""
        self._require_fit()
        w = self.weight[attribute]
        d = w[target] - w[source]  # float32
        norm = d.norm(dim=1, keepdim=True)
        return torch.where(norm > 0, d / norm.clamp_min(1e-12), torch.zeros_like(d))

    def step_length(self, attribute: str, source: Tensor, target: Tensor) -> Tensor:
        """How far the class mean of ``target`` lies from that of ``source`` along the edit
        direction: ``((μ_b - μ_a) · d)`` per sample (the calibrated edit length)."""
        mu = self.class_means[attribute]
        d = self.direction(attribute, source, target)
        return ((mu[target] - mu[source]) * d).sum(1).clamp_min(0.0)


class LinearLatentClassifier(nn.Module):
    """A fitted :class:`LogisticDirections` behind the :class:`TimeLatentClassifier` interface
    (``t`` ignored), so it can drive classifier guidance: its ``∇_z log p(c|z)`` is
    ``W_c - Σ_j p_j W_j`` — for a binary attribute a multiple of the hyperplane normal, which is
    why guidance with it reduces to latent arithmetic."""

    def __init__(self, directions: LogisticDirections):
        super().__init__()
        directions._require_fit()
        self.directions = directions
        self.attributes = directions.attributes
        self.dim = directions.dim

    def forward(self, z: Tensor, t: Tensor) -> dict[str, Tensor]:
        return self.directions.logits(z)

    check_labels = TimeLatentClassifier.check_labels
    log_prob = TimeLatentClassifier.log_prob
    predict = TimeLatentClassifier.predict
