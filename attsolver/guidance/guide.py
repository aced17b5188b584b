"""Latent classifier guidance (2304.12536): guided generation, editing of real inputs,
sequential editing, and the latent-arithmetic baseline it reduces to.

The guided noise prediction at ``(z_t, t)`` is

    ε̂ = ε_θ(z_t, t) − sqrt(1−ᾱ_t) · [ Σ_k λ_k ∇ log p(c_k | z_t, t)            (edit targets)
                                      + λ_h Σ_j ∇ log p(h_j | z_t, t) ]          (hold unedited attributes)
        + λ_s (z_t − sqrt(ᾱ_t) z_src) / sqrt(1−ᾱ_t)                              (source pull)

The last term is ``−sqrt(1−ᾱ_t)`` times λ_s times the score of ``N(sqrt(ᾱ_t) z_src, (1−ᾱ_t) I)``,
i.e. a Gaussian pull towards the noised source; the hold term keeps the attributes that are
not being edited at their source values.  Both are the "semantic preservation" terms and each
can be switched off (scale 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .classifier import LogisticDirections, TimeLatentClassifier, _check_labels
from .ddpm import LatentDDPM, ddim_invert, ddim_sample
from .latent import LatentSpace, check_latent

__all__ = ["LatentGuidance", "latent_arithmetic", "sequential_arithmetic", "check_scale"]


def check_scale(x, name: str) -> float:
    """A finite real number, else ValueError naming ``name``."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    return float(x)


def _edit_list(edits, attributes) -> list[tuple[str, object]]:
    """``[(attribute, target), ...]`` from a list of pairs or of one-entry dicts."""
    if isinstance(edits, dict):
        edits = list(edits.items())
    out = []
    for e in edits:
        if isinstance(e, dict) and len(e) == 1:
            e = next(iter(e.items()))
        if not (isinstance(e, (tuple, list)) and len(e) == 2):
            raise ValueError(f"edits must be a list of (attribute, target) pairs, got {e!r}")
        if e[0] not in attributes:
            raise ValueError(f"unknown attribute {e[0]!r} in edits; known attributes: {list(attributes)}")
        out.append((e[0], e[1]))
    if not out:
        raise ValueError("edits is empty: give at least one (attribute, target) pair")
    return out


class LatentGuidance:
    """A latent DDPM plus a time-conditioned latent classifier, for guided sampling and editing.

    Args:
        ddpm: the noise predictor with its schedule, trained on latents of ``space``.
        classifier: ``p(c_k | z_t, t)`` (:class:`TimeLatentClassifier` or anything with its
            ``attributes``/``log_prob``/``predict``/``check_labels``).
        space: optional :class:`LatentSpace`, used by :meth:`decode` / :meth:`encode`.
    """

    def __init__(self, ddpm: LatentDDPM, classifier: TimeLatentClassifier, space: LatentSpace | None = None):
        if classifier.dim != ddpm.dim:
            raise ValueError(f"classifier.dim={classifier.dim} does not match ddpm.dim={ddpm.dim}")
        if space is not None and space.dim != ddpm.dim:
            raise ValueError(f"space.dim={space.dim} does not match ddpm.dim={ddpm.dim}")
        self.ddpm, self.classifier, self.space = ddpm, classifier, space
        self.schedule = ddpm.schedule
        self.dim = ddpm.dim

    @property
    def attributes(self) -> dict[str, int]:
        return self.classifier.attributes

    # -- validation at the boundary -------------------------------------------------------------
    def _targets(self, targets, n: int, name: str = "targets") -> dict[str, Tensor]:
        return self.classifier.check_labels(targets, n, name)

    def _scales(self, scales, targets: dict) -> dict[str, float]:
        if isinstance(scales, dict):
            unknown = [k for k in scales if k not in self.attributes]
            if unknown:
                raise ValueError(f"unknown attribute(s) {unknown} in scales; known attributes: {list(self.attributes)}")
            missing = [k for k in targets if k not in scales]
            if missing:
                raise ValueError(f"scales has no entry for target attribute(s) {missing}")
            return {k: check_scale(scales[k], f"scales[{k!r}]") for k in targets}
        s = check_scale(scales, "scales")
        return {k: s for k in targets}

    # -- the guided noise prediction ------------------------------------------------------------
    def guided_eps(self, z: Tensor, t, targets, scales=1.0, *, source: Tensor | None = None,
                   source_scale: float = 0.0, hold=None, hold_scale: float = 0.0) -> Tensor:
        """ε̂ at ``(z, t)`` (formula in the module docstring).

        Args:
            z: ``[N, D]`` noisy latents at timestep ``t`` (int or ``[N]`` long tensor).
            targets: ``{attribute: class index or [N] indices}`` to steer towards.
            scales: λ_k, one float for all targets or ``{attribute: float}``.
            source, source_scale: ``z_src`` ``[N, D]`` and λ_s of the source pull.
            hold, hold_scale: ``{attribute: classes}`` to keep, and λ_h.
        """
        check_latent(z, self.dim, "z")
        n = len(z)
        if isinstance(t, int) or (isinstance(t, Tensor) and t.dim() == 0):
            t = torch.full((n,), self.schedule.check_timestep(int(t), "t"), dtype=torch.long)
        targets = self._targets(targets, n)
        scales = self._scales(scales, targets)
        hold = self._targets(hold or {}, n, "hold")
        source_scale = check_scale(source_scale, "source_scale")
        hold_scale = check_scale(hold_scale, "hold_scale")
        if source is not None:
            check_latent(source, self.dim, "source")
            if len(source) != n:
                raise ValueError(f"source has {len(source)} latents, z has {n}")
        return self._eps(z, t, targets, scales, source, source_scale, hold, hold_scale)

    def _eps(self, z, t, targets, scales, source, source_scale, hold, hold_scale) -> Tensor:
        with torch.no_grad():
            eps = self.ddpm(z, t)
        ab = self.schedule.abar(t).to(z.dtype)[:, None]
        terms = {k: v for k, v in targets.items() if scales[k] != 0}
        held = {k: v for k, v in hold.items() if k not in targets} if hold_scale != 0 else {}
        if terms or held:
            with torch.enable_grad():
                zg = z.detach().requires_grad_(True)
                logp = self.classifier.log_prob(zg, t, {**terms, **held})
                obj = sum(scales[k] * logp[k].sum() for k in terms) + sum(hold_scale * logp[k].sum() for k in held)
                grad = torch.autograd.grad(obj, zg)[0]
            eps = eps - (1 - ab).sqrt() * grad
        if source is not None and source_scale != 0:
            eps = eps + source_scale * (z - ab.sqrt() * source) / (1 - ab).sqrt()
        return eps.detach()

    # -- generation -----------------------------------------------------------------------------
    def generate(self, n: int, targets, scales=1.0, *, steps: int = 50, eta: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents from the guided DDIM sampler (pure noise at ``T-1`` down to clean)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        targets = self._targets(targets, n)
        scales = self._scales(scales, targets)
        z = torch.randn(n, self.dim, generator=generator)
        fn = lambda zz, tt: self._eps(zz, tt, targets, scales, None, 0.0, {}, 0.0)  # noqa: E731
        return ddim_sample(fn, self.schedule, z, self.schedule.timesteps(steps), eta=eta, generator=generator)

    # -- editing --------------------------------------------------------------------------------
    def source_labels(self, z: Tensor) -> dict[str, Tensor]:
        """The classifier's reading of clean latents (t = 0): what "hold" keeps by default."""
        return self.classifier.predict(z, 0)

    def edit(self, z_src: Tensor, targets, scales=1.0, *, t0: int, steps: int = 50, invert: bool = True,
             eta: float = 0.0, source_scale: float = 0.0, hold_scale: float = 0.0, hold=None,
             generator: torch.Generator | None = None) -> Tensor:
        """Edit source latents towards ``targets``.

        ``z_src`` is taken to ``t0`` — by η = 0 DDIM inversion (``invert=True``, deterministic) or by
        the forward process ``q(z_t0 | z_src)`` — then denoised with the guided ε̂ along ``steps``
        DDIM steps.  ``source_scale`` (λ_s) and ``hold_scale`` (λ_h) are the preservation terms;
        ``hold`` defaults to the classifier's reading of ``z_src`` for every attribute not edited.
        """
        check_latent(z_src, self.dim, "z_src")
        n = len(z_src)
        t0 = self.schedule.check_timestep(t0, "t0")
        targets = self._targets(targets, n)
        scales = self._scales(scales, targets)
        source_scale = check_scale(source_scale, "source_scale")
        hold_scale = check_scale(hold_scale, "hold_scale")
        hold = self._targets(hold, n, "hold") if hold is not None else self.source_labels(z_src)
        hold = {k: v for k, v in hold.items() if k not in targets}
        ts = self.schedule.timesteps(steps, t0)
        with torch.no_grad():
            if invert:
                z = ddim_invert(self.ddpm, self.schedule, z_src, ts)
            else:
                z = self.schedule.q_sample(z_src, t0, generator=generator)
        fn = lambda zz, tt: self._eps(zz, tt, targets, scales, z_src, source_scale, hold, hold_scale)  # noqa: E731
        return ddim_sample(fn, self.schedule, z, ts, eta=eta, generator=generator)

    def edit_sequential(self, z_src: Tensor, edits, scales=1.0, *, source_labels=None, **kw) -> list[Tensor]:
        """Apply ``edits`` (``[(attribute, target), ...]``) one after another; each edit starts from
        the previous result, its source pull points at that result, and its hold term keeps every
        other attribute at its current value (earlier edits at their targets, unedited ones at
        ``source_labels``, default the classifier's reading of ``z_src``).  Returns the latents
        after each edit.  Keywords go to :meth:`edit`."""
        check_latent(z_src, self.dim, "z_src")
        edits = _edit_list(edits, self.attributes)
        n = len(z_src)
        current = (self._targets(source_labels, n, "source_labels") if source_labels is not None
                   else self.source_labels(z_src))
        if isinstance(scales, dict):
            unknown = [k for k in scales if k not in self.attributes]
            if unknown:
                raise ValueError(f"unknown attribute(s) {unknown} in scales; known attributes: {list(self.attributes)}")
        out, z = [], z_src
        if isinstance(scales, dict):
            missing = [a for a, _ in edits if a not in scales]
            if missing:
                raise ValueError(f"scales has no entry for edited attribute(s) {missing}")
        for attr, target in edits:
            tgt = self._targets({attr: target}, n, "edits")
            s = scales[attr] if isinstance(scales, dict) else scales
            hold = {k: v for k, v in current.items() if k != attr}
            z = self.edit(z, tgt, {attr: s}, hold=hold, **kw)
            current = {**current, attr: tgt[attr]}
            out.append(z)
        return out

    # -- generator round trip -------------------------------------------------------------------
    def decode(self, z: Tensor) -> Tensor:
        if self.space is None:
            raise ValueError("no LatentSpace given: pass space=LatentSpace(dim, decode, encode) to LatentGuidance")
        return self.space.decode(z)

    def encode(self, x) -> Tensor:
        if self.space is None:
            raise ValueError("no LatentSpace given: pass space=LatentSpace(dim, decode, encode) to LatentGuidance")
        return self.space.encode(x)


def latent_arithmetic(directions: LogisticDirections, z: Tensor, targets, strength: float = 1.0,
                      source_labels=None) -> Tensor:
    """``z + Σ_k s·L_k·d_k``: move each latent along the logistic direction ``d_k`` from its current
    class (``source_labels``, default the logistic prediction) to ``targets[k]``; the length
    ``L_k`` is the distance between the two class means along ``d_k`` times ``strength``."""
    directions._require_fit()
    check_latent(z, directions.dim, "z")
    strength = check_scale(strength, "strength")
    n = len(z)
    targets = _check_labels(targets, directions.attributes, n, "targets")
    src = (_check_labels(source_labels, directions.attributes, n, "source_labels")
           if source_labels is not None else directions.predict(z))
    out = z.clone()
    for k, tgt in targets.items():
        s = src[k]
        out = out + strength * directions.step_length(k, s, tgt)[:, None] * directions.direction(k, s, tgt)
    return out


def sequential_arithmetic(directions: LogisticDirections, z: Tensor, edits, strength: float = 1.0,
                          source_labels=None) -> list[Tensor]:
    """Latent arithmetic one attribute after another (the result after each edit)."""
    directions._require_fit()
    check_latent(z, directions.dim, "z")
    edits = _edit_list(edits, directions.attributes)
    n = len(z)
    current = (_check_labels(source_labels, directions.attributes, n, "source_labels")
               if source_labels is not None else directions.predict(z))
    out = []
    for attr, target in edits:
        tgt = _check_labels({attr: target}, directions.attributes, n, "edits")
        z = latent_arithmetic(directions, z, tgt, strength, {attr: current[attr]})
        current = {**current, attr: tgt[attr]}
        out.append(z)
    return out
