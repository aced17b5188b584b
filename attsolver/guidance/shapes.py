"""An offline stand-in for a pretrained generator: procedurally rendered shapes whose
attributes are known exactly, a small convolutional VAE whose posterior means are the latent
codes, and an *independent* image-space classifier (trained on rendered images, never on
latents) that judges generated and edited images against the ground truth.

Images are 1×32×32 in [0, 1].  Attributes (all exact, from the renderer):

====== ======================== =====================================================
name   classes                  rendering
====== ======================== =====================================================
shape  square, circle, triangle half-extent ``r``: ``max(|dx|,|dy|) ≤ r``; ``dx²+dy² ≤ r²``;
                                apex-up isosceles triangle of base and height ``2r``
size   small, large             ``r`` = 5.5 or 8.5 pixels (areas in ratio (8.5/5.5)²)
position left, right            centre x = 10 or 22 (± a uniform jitter of 1.5 pixels)
fill   filled, outline          outline = the shape minus the same shape shrunk by 1.6 px
====== ======================== =====================================================

Nuisance factors (not attributes, so the latent space must carry more than the labels):
vertical centre uniform in [10, 22] and intensity uniform in [0.6, 1].  Each pixel is the
fraction of a 4×4 grid of sub-pixel points that falls inside the shape (anti-aliasing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .classifier import train_attribute_heads
from .latent import LatentSpace

__all__ = ["ATTRIBUTES", "CLASS_NAMES", "IMAGE_SIZE", "RADII", "X_CENTRES", "OUTLINE_WIDTH",
           "sample_attributes", "render_shapes", "make_shapes", "shape_area",
           "ConvVAE", "train_vae", "ImageAttributeClassifier", "train_image_classifier", "vae_latent_space",
           "ShapesDemo", "build_shapes_demo"]

ATTRIBUTES = {"shape": 3, "size": 2, "position": 2, "fill": 2}
CLASS_NAMES = {"shape": ("square", "circle", "triangle"), "size": ("small", "large"),
               "position": ("left", "right"), "fill": ("filled", "outline")}
IMAGE_SIZE = 32
RADII = (5.5, 8.5)
X_CENTRES = (10.0, 22.0)
X_JITTER = 1.5
Y_RANGE = (10.0, 22.0)
INTENSITY_RANGE = (0.6, 1.0)
OUTLINE_WIDTH = 1.6
SUPERSAMPLE = 4


def shape_area(shape: int, r: float) -> float:
    """Area of a filled shape of half-extent ``r`` (square 4r², circle πr², triangle 2r²)."""
    return (4 * r * r, math.pi * r * r, 2 * r * r)[shape]


def sample_attributes(n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Independent uniform labels for every attribute, ``{name: [n] long}``."""
    return {k: torch.randint(0, c, (n,), generator=generator) for k, c in ATTRIBUTES.items()}


def _inside(shape: Tensor, dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    square = torch.maximum(dx.abs(), dy.abs()) <= r
    circle = dx * dx + dy * dy <= r * r
    triangle = (dy <= r) & (dx.abs() <= (dy + r) / 2)
    return torch.where(shape == 0, square, torch.where(shape == 1, circle, triangle))


def render_shapes(labels: dict[str, Tensor], *, cx: Tensor | None = None, cy: Tensor | None = None,
                  intensity: Tensor | None = None, generator: torch.Generator | None = None,
                  chunk: int = 256) -> Tensor:
    """Render ``[N, 1, 32, 32]`` images with the given attribute labels.

    ``cx`` (default: the position's centre plus uniform jitter), ``cy`` (default uniform in
    [10, 22]) and ``intensity`` (default uniform in [0.6, 1]) are ``[N]`` tensors; give them to
    render without randomness.
    """
    missing = [k for k in ATTRIBUTES if k not in labels]
    if missing:
        raise ValueError(f"labels is missing attribute(s) {missing}; needs {list(ATTRIBUTES)}")
    lab = {k: torch.as_tensor(labels[k], dtype=torch.long) for k in ATTRIBUTES}
    n = len(lab["shape"])
    for k, c in ATTRIBUTES.items():
        if lab[k].shape != (n,) or (lab[k] < 0).any() or (lab[k] >= c).any():
            raise ValueError(f"labels[{k!r}] must be a [N] tensor of classes in [0, {c - 1}]")
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)  # noqa: E731
    if cx is None:
        cx = torch.tensor(X_CENTRES, dtype=torch.float64)[lab["position"]] + u(-X_JITTER, X_JITTER)
    if cy is None:
        cy = u(*Y_RANGE)
    if intensity is None:
        intensity = u(*INTENSITY_RANGE)
    cx, cy, intensity = (torch.as_tensor(v, dtype=torch.float32) for v in (cx, cy, intensity))
    r = torch.tensor(RADII, dtype=torch.float32)[lab["size"]]
    s = SUPERSAMPLE
    coords = (torch.arange(IMAGE_SIZE * s, dtype=torch.float32) + 0.5) / s  # sub-pixel centres
    out = torch.empty(n, 1, IMAGE_SIZE, IMAGE_SIZE)
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        dx = coords[None, None, :] - cx[sl, None, None]
        dy = coords[None, :, None] - cy[sl, None, None]
        shp = lab["shape"][sl, None, None]
        rr = r[sl, None, None]
        inside = _inside(shp, dx, dy, rr)
        outline = lab["fill"][sl, None, None] == 1
        inside = inside & ~(outline & _inside(shp, dx, dy, rr - OUTLINE_WIDTH))
        img = F.avg_pool2d(inside.float()[:, None], s)
        out[sl] = img * intensity[sl, None, None, None].float()
    return out


def make_shapes(n: int, seed: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
    """``n`` random images and their labels (reproducible from ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    labels = sample_attributes(n, g)
    return render_shapes(labels, generator=g), labels


# -- the generator: a small convolutional VAE ------------------------------------------------------
class ConvVAE(nn.Module):
    """1×32×32 -> latent ``dim`` (Gaussian posterior) -> Bernoulli logits of 1×32×32.

    Encoder: three stride-2 4×4 convolutions (``width``, 2·width, 2·width channels) and a linear
    layer to mean and log-variance; decoder: the mirror image with transposed convolutions."""

    def __init__(self, dim: int = 10, width: int = 16):
        super().__init__()
        self.dim, self.width = dim, width
        w2 = 2 * width
        self.enc = nn.Sequential(nn.Conv2d(1, width, 4, 2, 1), nn.SiLU(), nn.Conv2d(width, w2, 4, 2, 1), nn.SiLU(),
                                 nn.Conv2d(w2, w2, 4, 2, 1), nn.SiLU(), nn.Flatten(), nn.Linear(w2 * 16, 2 * dim))
        self.dec_in = nn.Linear(dim, w2 * 16)
        self.dec = nn.Sequential(nn.SiLU(), nn.ConvTranspose2d(w2, w2, 4, 2, 1), nn.SiLU(),
                                 nn.ConvTranspose2d(w2, width, 4, 2, 1), nn.SiLU(), nn.ConvTranspose2d(width, 1, 4, 2, 1))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.dec(self.dec_in(z).view(-1, 2 * self.width, 4, 4))

    def decode(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def loss(self, x: Tensor, beta: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Negative ELBO per image: Bernoulli reconstruction (soft targets) + β·KL."""
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator)
        rec = F.binary_cross_entropy_with_logits(self.decode_logits(z), x, reduction="sum") / len(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / len(x)
        return rec + beta * kl


def train_vae(vae: ConvVAE, images: Tensor, *, epochs: int = 20, batch_size: int = 128, lr: float = 2e-3,
              beta: float = 1.0, seed: int = 0) -> list[float]:
    """Adam with cosine decay; returns the mean loss of each epoch."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    steps = epochs * math.ceil(len(images) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    hist = []
    vae.train()
    for _ in range(epochs):
        perm = torch.randperm(len(images), generator=g)
        tot = 0.0
        for i in range(0, len(images), batch_size):
            x = images[perm[i:i + batch_size]]
            loss = vae.loss(x, beta, generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(x)
        hist.append(tot / len(images))
    vae.eval()
    return hist


def vae_latent_space(vae: ConvVAE, images: Tensor) -> tuple[LatentSpace, Tensor]:
    """The VAE as a :class:`LatentSpace` of *standardised* posterior means (zero mean, unit
    variance per dimension over ``images``), and the latents of ``images``."""
    with torch.no_grad():
        mu = torch.cat([vae.encode(images[i:i + 1024])[0] for i in range(0, len(images), 1024)])
    m, s = mu.mean(0), mu.std(0).clamp_min(1e-6)

    def encode(x: Tensor) -> Tensor:
        with torch.no_grad():
            return (vae.encode(x)[0] - m) / s

    def decode(z: Tensor) -> Tensor:
        with torch.no_grad():
            return vae.decode(z * s + m)

    return LatentSpace(vae.dim, decode, encode, name="shapes VAE"), (mu - m) / s


# -- the independent judge ----------------------------------------------------------------------
class ImageAttributeClassifier(nn.Module):
    """A small CNN on images with one head per attribute; ``features(x)`` (``[N, feat]``) is the
    space of the Fréchet distance."""

    def __init__(self, attributes: dict[str, int] = ATTRIBUTES, width: int = 16, feat: int = 64):
        super().__init__()
        self.attributes = dict(attributes)
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(2 * width * 16, feat), nn.ReLU())
        self.heads = nn.ModuleDict({k: nn.Linear(feat, c) for k, c in self.attributes.items()})

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.body(x)
        return {k: head(h) for k, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 1024) -> dict[str, Tensor]:
        outs = [self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return {k: torch.cat([o[k] for o in outs]).argmax(1) for k in self.attributes}

    @torch.no_grad()
    def embed(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        return torch.cat([self.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _blur(x: Tensor, sigma: float = 1.0) -> Tensor:
    k = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-k * k / (2 * sigma * sigma))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))


def train_image_classifier(clf: ImageAttributeClassifier, *, steps: int = 1500, batch_size: int = 64,
                           n_images: int = 16000, lr: float = 2e-3, seed: int = 1000) -> list[float]:
    """Train on ``n_images`` images rendered from ``seed`` (a different seed from the VAE's data),
    with a random blend towards a blurred copy and pixel noise so that it also reads the softer
    images a decoder produces.  Returns the per-step losses."""
    g = torch.Generator().manual_seed(seed)
    pool, pool_labels = make_shapes(n_images, seed)

    def batch():
        idx = torch.randint(0, n_images, (batch_size,), generator=g)
        labels = {k: v[idx] for k, v in pool_labels.items()}
        x = pool[idx]
        a = torch.rand(batch_size, 1, 1, 1, generator=g)
        x = (1 - a) * x + a * _blur(x, 1.0)
        x = (x + 0.05 * torch.rand(batch_size, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)).clamp(0, 1)
        return (x,), labels

    return train_attribute_heads(clf, batch, steps=steps, lr=lr)


@dataclass
class ShapesDemo:
    """Everything the demonstration trains: the VAE behind a LatentSpace, the training latents
    and labels, and the independent image classifier."""

    vae: ConvVAE
    space: LatentSpace
    z_train: Tensor
    labels_train: dict[str, Tensor]
    images_train: Tensor
    judge: ImageAttributeClassifier


def build_shapes_demo(*, n_train: int = 6000, latent_dim: int = 12, vae_epochs: int = 16, judge_steps: int = 800,
                      vae_beta: float = 0.1, vae_batch_size: int = 64,
                      seed: int = 0) -> ShapesDemo:
    """Render ``n_train`` images (``seed``), train the VAE on them and the independent judge on
    other images (``seed + 1000``); the latents are the VAE's standardised posterior means."""
    images, labels = make_shapes(n_train, seed)
    torch.manual_seed(seed)
    vae = ConvVAE(latent_dim)
    train_vae(vae, images, epochs=vae_epochs, beta=vae_beta, batch_size=vae_batch_size, seed=seed)
    space, z = vae_latent_space(vae, images)
    torch.manual_seed(seed + 1000)
    judge = ImageAttributeClassifier()
    train_image_classifier(judge, steps=judge_steps, seed=seed + 1000)
    return ShapesDemo(vae, space, z, labels, images, judge)
