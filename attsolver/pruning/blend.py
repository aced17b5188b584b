"""The blended importance: ``score = Σ_i α_i · normalise(s_i)`` over base criteria, per
pruning group, packaged as a torch-pruning ``Importance`` so it plugs into its pruners.

Scores of different criteria live on unrelated scales (|γ| ~ 1, Σ|w| ~ 10, Taylor ~ 1e-4),
so each criterion's scores are normalised within the group before blending:

* ``"minmax"``: ``(s - min) / (max - min)`` in [0, 1] (a constant score vector gives zeros);
* ``"rank"``: the rank of each channel, ``(rank - 1) / (n - 1)`` in [0, 1] (ties share the
  average rank), which keeps only the ordering.

Both are strictly increasing maps of ``s``, so with a one-hot ``α`` the blend orders the
channels exactly as the single criterion does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .criteria import CRITERIA, _tp, make_importance

__all__ = ["BlendedImportance", "normalise_scores", "NORMALISATIONS"]

NORMALISATIONS = ("minmax", "rank")


def normalise_scores(scores: Tensor, method: str = "minmax") -> Tensor:
    """One criterion's scores of a group's channels mapped to [0, 1] (see the module doc)."""
    if method not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {method!r}")
    s = scores.detach().double().flatten()
    n = s.numel()
    if method == "minmax":
        lo, hi = s.min(), s.max()
        span = hi - lo
        return torch.zeros_like(s) if span <= 0 else (s - lo) / span
    if n == 1:
        return torch.zeros_like(s)
    from scipy.stats import rankdata  # lazy: scipy.stats takes ~0.6 s to import; only rank normalising needs it

    ranks = torch.from_numpy(rankdata(s.cpu().numpy(), method="average")).to(s)
    return (ranks - 1.0) / (n - 1)


def _base_importance():
    return _tp().importance.Importance


class BlendedImportance(_base_importance()):
    """A torch-pruning importance that blends base criteria with calibration factors.

    Args:
        alphas: ``{criterion: α}`` (names from :data:`attsolver.pruning.CRITERIA`), or a
            sequence of α aligned with ``criteria``.  Every α must be finite and >= 0, and at
            least one > 0.  Only the ratios matter for the channel ranking.
        criteria: the criterion names when ``alphas`` is a sequence.
        normalisation: ``"minmax"`` or ``"rank"`` (per group, per criterion).
        reduction: how a criterion combines the layers of a group (``"mean"`` / ``"first"``).

    ``importance(group)`` returns a float32 tensor ``[channels]``: larger = keep.  A group
    none of the criteria can score gives ``None`` (torch-pruning then leaves it alone); a
    criterion that cannot score a group (``bn_scale`` on a group without BatchNorm) drops out
    of that group's blend and the other α's are used as they are.
    """

    def __init__(self, alphas: Mapping[str, float] | Sequence[float], criteria: Sequence[str] | None = None, *,
                 normalisation: str = "minmax", reduction: str = "mean"):
        if isinstance(alphas, Mapping):
            if criteria is not None:
                raise ValueError("pass criteria only with a sequence of alphas (a dict already names them)")
            names, values = list(alphas), [alphas[k] for k in alphas]
        else:
            if criteria is None:
                raise ValueError("alphas given as a sequence need criteria=[names] in the same order")
            names, values = list(criteria), list(alphas)
            if len(names) != len(values):
                raise ValueError(f"{len(values)} alphas for {len(names)} criteria {names}; give one α per criterion")
        if not names:
            raise ValueError("alphas must name at least one criterion")
        if len(set(names)) != len(names):
            raise ValueError(f"criteria must be distinct, got {names}")
        for n in names:
            if n not in CRITERIA:
                raise ValueError(f"unknown pruning criterion {n!r}; choose from: {', '.join(CRITERIA)}")
        vals = []
        for n, v in zip(names, values):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(float(v)) or float(v) < 0:
                raise ValueError(f"alpha for {n!r} must be a finite number >= 0, got {v!r}")
            vals.append(float(v))
        if not any(v > 0 for v in vals):
            raise ValueError(f"at least one alpha must be > 0, got {dict(zip(names, vals))}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}")
        self.criteria = names
        self.alphas = dict(zip(names, vals))
        self.normalisation = normalisation
        self.reduction = reduction
        self._importances = {n: make_importance(n, reduction=reduction) for n in names}

    def __repr__(self) -> str:
        a = ", ".join(f"{k}={v:.3g}" for k, v in self.alphas.items())
        return f"BlendedImportance({a}; {self.normalisation})"

    @torch.no_grad()
    def criterion_scores(self, group) -> dict[str, Tensor]:
        """Each criterion's raw (unnormalised) scores of the group's channels; criteria that
        cannot score this group are absent."""
        out = {}
        for n, imp in self._importances.items():
            if self.alphas[n] == 0.0:
                continue  # not needed, and Taylor would demand gradients for nothing
            s = imp(group)
            if s is not None:
                out[n] = s
        return out

    @torch.no_grad()
    def __call__(self, group) -> Tensor | None:
        scores = self.criterion_scores(group)
        if not scores:
            return None
        total = None
        for n, s in scores.items():
            term = self.alphas[n] * normalise_scores(s, self.normalisation)
            total = term if total is None else total + term
        return total.float()
