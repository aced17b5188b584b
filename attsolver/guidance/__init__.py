"""Latent classifier guidance (LCG, 2304.12536): a DDPM on the latent codes of a frozen
generator, time-conditioned latent classifiers, and classifier-guided generation and editing
— multi-attribute, with semantic-preservation terms, sequential — plus the latent-arithmetic
baseline (InterFaceGAN) that it reduces to with linear classifiers.

The method never looks inside the generator: a :class:`LatentSpace` is a latent dimension,
a ``decode`` callable and (to edit real inputs) an ``encode`` callable.

    space = LatentSpace(dim, decode=G, encode=E)
    ddpm = LatentDDPM(dim, NoiseSchedule.linear(1000)); train_ddpm(ddpm, z_train)
    clf = TimeLatentClassifier(dim, {"shape": 3, "size": 2}); train_latent_classifier(clf, ddpm.schedule, z_train, labels)
    lcg = LatentGuidance(ddpm, clf, space)
    z = lcg.generate(16, {"shape": 1, "size": 0}, scales={"shape": 2.0, "size": 2.0})
    z_edits = lcg.edit_sequential(space.encode(x), [("shape", 2), ("size", 1)], scales=10.0,
                                  t0=500, source_scale=0.05, hold_scale=5.0)
    images = space.decode(z_edits[-1])

Plugging in a pretrained StyleGAN (W space)
-------------------------------------------
With a StyleGAN2/3 generator ``G`` (``G.mapping(z, c) -> ws [N, num_ws, 512]``,
``G.synthesis(ws) -> images``), the latent space is W, ``dim = 512``:

    def decode(w):                       # [N, 512] -> images
        ws = w[:, None, :].repeat(1, G.num_ws, 1)
        return G.synthesis(ws, noise_mode="const")
    space = LatentSpace(512, decode, encode=invert)   # invert: e.g. an e4e/pSp encoder, or optimisation

Sample the DDPM's training set as ``w = G.mapping(randn(N, 512), None)[:, 0]`` (no truncation)
and standardise it (keep the mean and std to undo in ``decode``); label the attributes of
``G.synthesis`` outputs with any image classifier (e.g. CelebA attribute heads) to train
:class:`TimeLatentClassifier` on those ``w``; a larger :class:`EpsMLP` (hidden 1024–2048,
depth 4–6) suits 512 dimensions.  For W+ (``[N, num_ws·512]``) flatten the codes.  Nothing
else changes.  :mod:`attsolver.guidance.shapes` is the offline stand-in used by the
benchmark and tests: a VAE on procedurally rendered shapes whose attributes are exact.
"""

from .classifier import LinearLatentClassifier, LogisticDirections, TimeLatentClassifier, train_latent_classifier
from .ddpm import (EpsMLP, LatentDDPM, ddim_invert, ddim_sample, ddpm_sample, gaussian_eps, timestep_embedding,
                   train_ddpm)
from .evaluate import attribute_agreement, frechet_distance
from .guide import LatentGuidance, latent_arithmetic, sequential_arithmetic
from .latent import LatentSpace, check_latent
from .schedule import NoiseSchedule

__all__ = [
    "LatentSpace", "check_latent", "NoiseSchedule",
    "EpsMLP", "LatentDDPM", "train_ddpm", "ddpm_sample", "ddim_sample", "ddim_invert", "gaussian_eps",
    "timestep_embedding",
    "TimeLatentClassifier", "train_latent_classifier", "LogisticDirections", "LinearLatentClassifier",
    "LatentGuidance", "latent_arithmetic", "sequential_arithmetic",
    "frechet_distance", "attribute_agreement",
]
