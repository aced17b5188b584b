"""Optimizers for flat minima: AlterSGD (alternating descent/ascent after a loss plateau),
a minimal SAM, and a flatness measure (loss increase under random weight perturbations).

    from attsolver.optim import AlterSGD, SAM, perturbed_loss_increase
"""

from .altersgd import TRIGGERS, AlterSGD
from .flatness import perturbed_loss_increase
from .sam import SAM

__all__ = ["AlterSGD", "SAM", "TRIGGERS", "perturbed_loss_increase"]
