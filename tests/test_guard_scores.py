"""The guard's feature scores of every step over their thresholds (integrate/guard_scores.py):
the inverse-covariance and nearest-neighbour forms, and agreement with the guard's step-0 verdict."""

import numpy as np
import pytest
import torch

import attsolver
from attsolver.integrate.guard import TrainingDomain
from attsolver.integrate.guard_scores import domain_scores
from conftest import GUARD_H

H = GUARD_H


def _domain_and_features():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    z = torch.randn(400, 4, generator=g, dtype=torch.float64) @ a + 2.0
    ratios = torch.rand(400, generator=g, dtype=torch.float64)
    return TrainingDomain.from_samples(z, ratios, horizon=1.0, step_size=0.1), z


def test_scores_are_the_inverse_covariance_nearest_point_and_ratio_forms():
    dom, z = _domain_and_features()
    q = z[:7] * 1.3 - 0.4  # some inside, some outside
    y, dy = q[:, :2], q[:, 2:] * 0.1  # features (y, dy / h) with h = 0.1
    c = 0.05 * dy.flip(1)
    got = domain_scores(dom, y, dy, c, 0.1)
    zn = z.numpy()
    prec = np.linalg.inv(np.cov(zn.T))
    dev = q.numpy() - zn.mean(0)
    np.testing.assert_allclose(got["distance"].numpy() * dom.distance_threshold,
                               np.einsum("ij,jk,ik->i", dev, prec, dev), rtol=1e-6)  # the 1e-9 ridge
    # the coreset in feature coordinates, and the Mahalanobis distance to the nearest of its points
    core = dom.coreset.numpy() @ np.linalg.inv(dom.whiten.numpy()) + dom.mean.numpy()
    diff = q.numpy()[:, None, :] - core[None]
    nearest = np.sqrt(np.einsum("bmi,ij,bmj->bm", diff, prec, diff).min(1))
    np.testing.assert_allclose(got["nearest"].numpy() * dom.knn_threshold, nearest, rtol=1e-6)
    np.testing.assert_allclose(got["correction"].numpy() * dom.ratio_threshold,
                               (c.norm(dim=1) / dy.norm(dim=1)).numpy(), rtol=1e-12)


def test_a_far_start_is_flagged_at_step_0_and_an_in_domain_one_is_not(guard_setting):
    """The guard scores the first step: a start whose step-0 scores are above 1 is flagged there, one
    whose scores are all at most 1 is not (a one-step solve holds the step-0 verdict alone)."""
    system, data, model = guard_setting
    centre = torch.tensor([0.0, 0.0, 23.5], dtype=torch.float64)
    starts = data.y[:, 0]
    y0 = torch.cat([centre + s * (starts - centre) for s in (1.0, 1.1, 1.5, 3.0)])  # training starts, scaled
    dy = attsolver.solve(system, y0, torch.tensor([0.0, H], dtype=torch.float64), step_size=H)[-1] - y0
    scores = domain_scores(model.domain, y0, dy, model(torch.tensor(0.0), y0, dy, H), H)
    worst = torch.stack([scores["distance"], scores["nearest"], scores["correction"]]).amax(0)
    clear = (worst - 1).abs() > 1e-3  # away from the threshold (the guard's nearest distance is float32)
    # the training starts are inside; scaled 3x about the attractor's centre most leave (one near the
    # centre lands 3x out still close to the attractor: scaling is not the same as leaving the domain)
    assert bool((worst[:6] <= 1).all()) and int((worst[-6:] > 1).sum()) >= 4
    _, st = attsolver.solve(system, y0, torch.tensor([0.0, H], dtype=torch.float64), step_size=H, corrector=model,
                            guard="fallback", return_stats=True)
    flagged = torch.tensor(st.guard.flagged)
    assert torch.equal(flagged[clear], (worst > 1)[clear]) and int(clear.sum()) >= 18
    assert st.guard.first == (0.0, int(torch.nonzero(worst > 1)[0]))


def test_scores_refuse_mismatched_shapes(guard_setting):
    _, _, model = guard_setting
    with pytest.raises(ValueError, match="one shape with a multiple of the domain's 3 state entries"):
        domain_scores(model.domain, torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3), H)
