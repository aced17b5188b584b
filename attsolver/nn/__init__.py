"""Attention building blocks shared by the solver correctors and the vision models.

* gates (:func:`make_attention` / :func:`list_attention`): ``"se"`` (squeeze-and-excitation),
  ``"iebn"`` (the instance-enhancement gate), ``"dia"`` (DIA's modified LSTM cell, a
  *stateful* gate that one ResNet stage shares across its blocks); each maps an input
  (``[B, C]`` or ``[B, C, H, W]``) to a gate in ``(0, 1)``.
* layers: :class:`SqueezeExcitation` (``x ⊙ SE(x)``), :class:`IEBatchNorm` (BatchNorm with
  IEBN's per-sample recalibrated affine weight).
* :func:`spectral_cap`: a cap on a layer's spectral norm (its Lipschitz constant).
* :func:`make_activation`: activations by name, with NeurVec's learnable :class:`Rational`.
"""

from .activations import ACTIVATIONS, Rational, make_activation
from .lipschitz import SpectralCap, refresh_spectral_caps, spectral_cap, spectral_norm_of
from .registry import get_attention, list_attention, make_attention, register_attention
from .se import SEGate, SqueezeExcitation
from .iebn import IEBatchNorm, IEBNGate
from .dia import DIAState, DIAUnit

__all__ = [
    "make_attention", "list_attention", "get_attention", "register_attention",
    "SEGate", "SqueezeExcitation", "IEBNGate", "IEBatchNorm", "DIAUnit", "DIAState",
    "SpectralCap", "spectral_cap", "spectral_norm_of", "refresh_spectral_caps",
    "Rational", "make_activation", "ACTIVATIONS",
]
