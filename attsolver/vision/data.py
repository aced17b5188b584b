"""Image data for the vision models: CIFAR-10/100 from the python-version batch files in a
local folder, scikit-learn's 8x8 digits (shipped with the package, offline), and synthetic
class-pattern images for tests.

Every loader returns an :class:`ImageData`: train and test tensors (``[N, C, H, W]``,
uint8 or float in [0, 1]; labels int64) with the per-channel mean and standard deviation of
the training images, which the training loop uses to normalise each batch.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._extras import require

__all__ = ["ImageData", "load_cifar", "load_digits", "synthetic_images", "load_image_data", "DATASETS"]

DATASETS = ("cifar10", "cifar100", "digits", "synthetic")


@dataclass
class ImageData:
    """A classification data set held in memory.

    Attributes:
        name: ``"cifar10"``, ``"digits"``, ...
        train_x, test_x: images ``[N, C, H, W]``, uint8 (0..255) or float (0..1).
        train_y, test_y: labels ``[N]`` int64 in ``[0, num_classes)``.
        num_classes: number of classes.
        classes: class names.
        flip: whether a horizontal flip keeps the label (True for CIFAR, False for digits);
            the augmentation flips only where it does.
        mean, std: per-channel statistics of the training images, on the 0..1 scale.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    classes: list[str] = field(default_factory=list)
    flip: bool = True
    mean: Tensor | None = None
    std: Tensor | None = None

    def __post_init__(self):
        if self.mean is None or self.std is None:
            x = _unit_scale(self.train_x)
            self.mean = x.mean(dim=(0, 2, 3))
            self.std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])

    def normalize(self, x: Tensor) -> Tensor:
        """Images (uint8 or 0..1 float) -> float32, standardised per channel."""
        x = _unit_scale(x)
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

    def __repr__(self) -> str:
        return (f"ImageData({self.name!r}, train {tuple(self.train_x.shape)}, test {tuple(self.test_x.shape)}, "
                f"{self.num_classes} classes)")


def _unit_scale(x: Tensor) -> Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


# ----------------------------------------------------------------------------- CIFAR

_CIFAR = {
    "cifar10": {
        "folder": "cifar-10-batches-py", "archive": "cifar-10-python.tar.gz",
        "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"], "meta": "batches.meta",
        "labels": b"labels", "names": b"label_names", "classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python", "archive": "cifar-100-python.tar.gz",
        "train": ["train"], "test": ["test"], "meta": "meta",
        "labels": b"fine_labels", "names": b"fine_label_names", "classes": 100,
    },
}

# what a CIFAR pickle may reference: numpy arrays and nothing else (pickle runs code otherwise)
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR batch holds only arrays and lists")
        if module.startswith("numpy.core."):  # pickles written before NumPy 2
            module = module.replace("numpy.core.", "numpy._core.") if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _expected(dataset: str) -> str:
    spec = _CIFAR[dataset]
    files = ", ".join(spec["train"] + spec["test"] + [spec["meta"]])
    return (f"a folder with the {dataset.upper().replace('CIFAR', 'CIFAR-')} python-version files {files} "
            f"(extract {spec['archive']}; the folder {spec['folder']}/ it contains, or its parent)")


def _read_batch(path: Path, dataset: str) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _ArraysOnly(io.BytesIO(fh.read()), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 -- any failure here means "not a CIFAR batch"
        raise ValueError(f"{path} is not a readable CIFAR python batch ({exc}); expected {_expected(dataset)}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict; expected {_expected(dataset)}")
    return obj


def _batch_arrays(path: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    spec = _CIFAR[dataset]
    obj = _read_batch(path, dataset)
    if b"data" not in obj or spec["labels"] not in obj:
        raise ValueError(f"{path} lacks the keys b'data' and {spec['labels']!r} of a {dataset} batch "
                         f"(found {sorted(obj)[:6]}); expected {_expected(dataset)}")
    data = np.asarray(obj[b"data"])
    labels = np.asarray(obj[spec["labels"]], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: b'data' must be uint8 [N, 3072] (32x32 RGB, channel-major), "
                         f"got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= spec["classes"]):
        raise ValueError(f"{path}: labels must lie in [0, {spec['classes']}), got {labels.min()}..{labels.max()}")
    return data, labels


def load_cifar(root: str | Path, dataset: str = "cifar10") -> ImageData:
    """CIFAR-10 or CIFAR-100 from the extracted python-version archive.

    Args:
        root: the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or the
            folder that contains it.
        dataset: ``"cifar10"`` or ``"cifar100"`` (fine labels).

    Raises ``FileNotFoundError`` for a missing folder or file and ``ValueError`` for a
    malformed one, each saying what is expected.  Nothing is downloaded.
    """
    if dataset not in _CIFAR:
        raise ValueError(f"unknown CIFAR dataset {dataset!r}; choose one of: {', '.join(_CIFAR)}")
    spec = _CIFAR[dataset]
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR folder {str(root)!r} does not exist; expected {_expected(dataset)}")
    if (root / spec["folder"]).is_dir():
        root = root / spec["folder"]
    names = spec["train"] + spec["test"] + [spec["meta"]]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root} lacks {', '.join(missing)}; expected {_expected(dataset)}")

    def stack(files: list[str]) -> tuple[Tensor, Tensor]:
        parts = [_batch_arrays(root / f, dataset) for f in files]
        data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
        return torch.from_numpy(data), torch.from_numpy(np.concatenate([p[1] for p in parts]))

    train_x, train_y = stack(spec["train"])
    test_x, test_y = stack(spec["test"])
    meta = _read_batch(root / spec["meta"], dataset)
    names_raw = meta.get(spec["names"])
    if names_raw is None or len(names_raw) != spec["classes"]:
        raise ValueError(f"{root / spec['meta']} must list {spec['classes']} class names under {spec['names']!r}")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names_raw]
    return ImageData(dataset, train_x, train_y, test_x, test_y, spec["classes"], classes, flip=True)


# ----------------------------------------------------------------------------- digits, synthetic


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes; shipped with
    scikit-learn, no download), as ``[N, 1, 8, 8]`` floats in [0, 1].  The split is
    stratified and fixed by ``seed`` (359 test images for the default 0.2).  Horizontal flips
    change a digit's meaning, so ``flip=False``."""
    _sk_digits = require("sklearn.datasets", "the digits data set", "vision").load_digits
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    d = _sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(10):  # stratified: the same fraction of every class
        idx = np.flatnonzero(d.target == c)
        test_idx.append(rng.permutation(idx)[: int(round(test_fraction * len(idx)))])
    test_mask = np.zeros(len(y), dtype=bool)
    test_mask[np.concatenate(test_idx)] = True
    tr, te = torch.from_numpy(~test_mask), torch.from_numpy(test_mask)
    return ImageData("digits", x[tr], y[tr], x[te], y[te], 10, [str(i) for i in range(10)], flip=False)


def synthetic_images(n_train: int = 256, n_test: int = 128, *, num_classes: int = 4, channels: int = 3,
                     size: int = 16, noise: float = 0.3, seed: int = 0) -> ImageData:
    """Learnable synthetic images: each class is a fixed random smooth pattern, each image that
    pattern plus Gaussian noise, clipped to [0, 1]; classes balanced.  For tests and smoke runs."""
    for name, value in (("n_train", n_train), ("n_test", n_test), ("num_classes", num_classes),
                        ("channels", channels), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=g)
    patterns = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]  # balanced classes
        x = patterns[y] + noise * torch.randn(n, channels, size, size, generator=g)
        return x.clamp(0.0, 1.0), y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return ImageData("synthetic", train_x, train_y, test_x, test_y, num_classes,
                     [f"pattern{i}" for i in range(num_classes)], flip=True)


def load_image_data(dataset: str, root: str | Path | None = None, **kwargs) -> ImageData:
    """One of :data:`DATASETS` by name; CIFAR needs ``root``."""
    if dataset in _CIFAR:
        if root is None:
            raise ValueError(f"{dataset} needs a data folder (--data DIR): {_expected(dataset)}")
        return load_cifar(root, dataset)
    if dataset == "digits":
        return load_digits(**kwargs)
    if dataset == "synthetic":
        return synthetic_images(**kwargs)
    raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
