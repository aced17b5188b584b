"""Attention building blocks shared by the solver correctors and the vision models.

* gates (:func:`make_attention` / :func:`list_attention`): ``"se"`` (squeeze-and-excitation),
  ``"iebn"`` (the instance-enhancement gate); each maps an input to a gate in ``(0, 1)``.
* :func:`spectral_cap`: a cap on a layer's spectral norm (its Lipschitz constant).
* :func:`make_activation`: activations by name, with NeurVec's learnable :class:`Rational`.
"""

from .activations import ACTIVATIONS, Rational, make_activation
from .lipschitz import SpectralCap, refresh_spectral_caps, spectral_cap, spectral_norm_of
from .registry import get_attention, list_attention, make_attention, register_attention
from .se import SEGate
from .iebn import IEBNGate

__all__ = [
    "make_attention", "list_attention", "get_attention", "register_attention",
    "SEGate", "IEBNGate", "SpectralCap", "spectral_cap", "spectral_norm_of", "refresh_spectral_caps",
    "Rational", "make_activation", "ACTIVATIONS",
]
