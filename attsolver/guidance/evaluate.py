"""Evaluation helpers: Fréchet distance between feature sets, attribute agreement."""

from __future__ import annotations

import numpy as np
from torch import Tensor

__all__ = ["frechet_distance", "attribute_agreement"]


def frechet_distance(a, b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, F]``, ``[M, F]``:
    ``|μ_a - μ_b|² + tr(Σ_a + Σ_b - 2 (Σ_a Σ_b)^{1/2})`` (the FID formula, here in whatever
    feature space the caller chooses)."""
    from scipy import linalg  # lazy: ~0.2 s to import, for this one metric of the guidance package

    a = np.asarray(a.detach().double() if isinstance(a, Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().double() if isinstance(b, Tensor) else b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"a and b must be [N, F] and [M, F] feature arrays with N, M >= 2, got {a.shape}, {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # tr (Σ_a Σ_b)^{1/2} = Σ sqrt(eig(Σ_a^{1/2} Σ_b Σ_a^{1/2})): a symmetric PSD problem, stable
    # where Σ_a Σ_b is singular (dead ReLU features) and free of the complex round-off of sqrtm
    w, v = linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_covmean)


def attribute_agreement(pred: dict[str, Tensor], truth: dict[str, Tensor],
                        attributes=None) -> dict[str, float]:
    """Fraction of samples whose predicted class equals ``truth``, per attribute."""
    keys = list(truth) if attributes is None else list(attributes)
    return {k: float((pred[k] == truth[k]).float().mean()) for k in keys}
