"""``attsolver bench ood`` and ``ood_misses``: the missed-rollout diagnosis and the offline start check
(their arithmetic, on small hand-made errors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attsolver
from _scripts import load_script
from attsolver.integrate.guard_scores import domain_scores
from conftest import GUARD_H


def test_misses_report_the_rms_ratio_the_first_worse_step_and_the_scores(guard_setting):
    ood = load_script("benchmarks/ood.py")
    system, data, model = guard_setting
    test = data
    classical = attsolver.solve(system, test.y[:, 0], test.t, step_size=GUARD_H)
    corrected = classical.clone()
    corrected[7:, 0] += 0.3  # rollout 0 is worse from output step 7 on
    s = {"classical": classical, "corrected": corrected}
    missed = np.zeros(len(test), dtype=bool)
    missed[0] = True
    (m,) = ood._misses(model, system, s, test, GUARD_H, missed)
    truth = test.y.transpose(0, 1)
    err = {k: torch.linalg.vector_norm(v[:, 0] - truth[:, 0], dim=-1) for k, v in s.items()}
    rms = {k: float(v.square().mean().sqrt()) for k, v in err.items()}
    assert m["rollout"] == 0 and m["over_classical"] == pytest.approx(rms["corrected"] / rms["classical"])
    expect_first = int(torch.nonzero(err["corrected"][1:] > err["classical"][1:])[0]) + 1
    assert m["first_step_worse"] == expect_first and expect_first <= 7
    y0 = corrected[0, :1]
    dy = attsolver.solve(system, y0, torch.tensor([0.0, GUARD_H], dtype=torch.float64), step_size=GUARD_H)[-1] - y0
    sc = domain_scores(model.domain, y0, dy, torch.zeros_like(y0), GUARD_H)
    assert m["score_step0"] == pytest.approx(max(float(v) for v in sc.values() if v is not None), rel=1e-9)
    assert m["score_max"] >= m["score_step0"]


def test_start_check_flags_by_the_error_ratio_after_w_steps():
    mis = load_script("benchmarks/ood_misses.py")
    steps = 20
    cls = np.ones((steps, 3))
    cor = np.full((steps, 3), 0.5)
    cor[:, 1] = 2.0  # rollout 1: twice the classical error at every step (worse, unflagged)
    cor[4:, 2] = 4.0  # rollout 2: worse from step 4 on, flagged by the guard
    row = mis._row({"classical": cls, "corrected": cor, "flagged": np.array([False, False, True])})
    assert (row["worse"], row["flagged"], row["missed"], row["missed_material"]) == (2, 1, 1, 1)
    # after 1 step rollout 1's ratio is 2: flagged at r <= 1.5, not at r = 2 or 3; rollout 2 by the guard
    assert row["start_check"]["1x1.5"] == {"flagged": 2, "missed": 0}
    assert row["start_check"]["1x2"] == {"flagged": 1, "missed": 1}
    assert row["start_check"]["4x3"] == {"flagged": 1, "missed": 1}


def test_training_choice_fewest_worse_among_the_useful_then_the_median():
    ood = load_script("benchmarks/ood.py")
    fig = lambda worse, median: {"worse": worse, "median_ratio": median}  # noqa: E731
    # the fewest worse wins among candidates that at least halve the typical error
    assert ood.choose([fig(3, 0.15), fig(0, 0.48), fig(1, 0.02)]) == 1
    # one that does not halve it is passed over, however few rollouts it makes worse
    assert ood.choose([fig(3, 0.15), fig(0, 0.75)]) == 0
    # ties go to the lower median; none useful: all compete
    assert ood.choose([fig(1, 0.3), fig(1, 0.2)]) == 1
    assert ood.choose([fig(2, 0.9), fig(1, 0.8)]) == 1


def test_every_ood_case_chooses_among_the_same_candidates():
    """One protocol: every case of ``bench ood`` chooses on the calibration trajectories among
    fit's two losses at its epochs and three times as many (Lorenz-96 also keeps its previous
    training, the dense NeurVec, as a candidate that shows why it loses)."""
    ood = load_script("benchmarks/ood.py")
    for case in ood.cases(quick=True):
        pairs = [c[:2] for c in case["training"] if len(c) == 2]
        base = min(e for _, e in pairs)
        assert sorted(pairs) == sorted((loss, e) for loss in ("mse", "relative") for e in (base, 3 * base)), case["name"]
    l96 = next(c for c in ood.cases(quick=True) if c["name"] == "lorenz96")
    assert ood._form(l96) == ("LocalNeurVec", 32)
    assert ood._form(l96, l96["training"][0][2]) == ("NeurVec", 256)
    assert sorted(c[:2] for c in l96["training"] if len(c) == 3) == sorted(ood._candidates(30))


def test_the_van_der_pol_shift_keeps_only_doubled_starts_outside_the_training_box():
    ood = load_script("benchmarks/ood.py")
    y0 = torch.tensor([[0.05, 0.1], [1.5, 0.2], [-0.2, -1.2], [0.9, 0.99], [2.5, -3.0]], dtype=torch.float64)
    got = ood.doubled_outside_box(y0)
    # doubled: (0.1, 0.2) and (1.8, 1.98) lie inside [-2, 2]^2; the other three do not
    torch.testing.assert_close(got, 2.0 * y0[[1, 2, 4]], rtol=0, atol=0)
    assert ood.doubled_outside_box.candidates > 1

    def linear(t, y):
        return -y

    def sampler(n, *, generator=None, dtype=torch.float64, device=None):
        return torch.rand(n, 2, generator=generator, dtype=dtype) * 4 - 2

    data = ood._data(linear, 6, 0.5, 0.25, 0.0, seed=2, y0_map=ood.doubled_outside_box, sampler=sampler)
    assert data.y.shape[:2] == (6, 3) and bool((data.y[:, 0].abs() > ood.VDP_BOX).any(1).all())

    def keeps_one(y):
        return y[:1]

    keeps_one.candidates = 2
    with pytest.raises(RuntimeError, match="kept 1 of 12 candidate starts, fewer than 6"):
        ood._data(linear, 6, 0.5, 0.25, 0.0, seed=2, y0_map=keeps_one, sampler=sampler)
