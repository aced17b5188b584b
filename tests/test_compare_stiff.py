"""``compare`` on stiff problems: the test of stiffness (the fastest decay rate of ``df/dy`` at the
initial states against the coarse step and the horizon), and the registry's ``"stiff"`` ladder
(``kvaerno5`` over tolerances) joining the comparison when a problem is detected or declared stiff."""

from __future__ import annotations

import importlib

import pytest
import torch

import attsolver
from attsolver.evaluate import compare
from attsolver.evaluate.contenders import build_ladders
from attsolver.evaluate.stiffness import STEP_LIMIT, decay_rate, stiffness_of
from attsolver.steppers import list_methods
from attsolver.systems import Lorenz63

F64 = torch.float64
CLI = importlib.import_module("attsolver.cli.main")  # the module (attsolver.cli.main is also its main function)


def vdp(t, y, mu=1000.0):
    x, v = y[..., 0], y[..., 1]
    return torch.stack((v, mu * (1 - x * x) * v - x), -1)


def robertson(t, y):
    a, b, c = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack((-0.04 * a + 1e4 * b * c, 0.04 * a - 1e4 * b * c - 3e7 * b * b, 3e7 * b * b), -1)


def test_the_decay_rate_is_the_jacobians_fastest_decaying_eigenvalue():
    # a linear f: J = A, eigenvalues -1000 and -1 (and an oscillation +-5i that does not count)
    A = torch.tensor([[-1000.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 5.0], [0, 0, -5.0, 0]], dtype=F64)
    y0 = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert decay_rate(lambda t, y: y @ A.T, y0, torch.tensor(0.0, dtype=F64)) == pytest.approx(1000.0, rel=1e-12)
    # Van der Pol at (2, 0): J = [[0, 1], [-1 - 2 mu x v, mu (1 - x^2)]] = [[0, 1], [-1, -3 mu]]:
    # eigenvalues (-3 mu +- sqrt(9 mu^2 - 4)) / 2, the fast one ~ -3 mu
    fast = (3000.0 + (9e6 - 4.0) ** 0.5) / 2
    assert decay_rate(vdp, torch.tensor([[2.0, 0.0]], dtype=F64), torch.tensor(0.0, dtype=F64)) == \
        pytest.approx(fast, rel=1e-12)


def test_van_der_pol_is_detected_stiff_and_lorenz_is_not():
    t = torch.linspace(0, 1, 11, dtype=F64)
    rec = stiffness_of(vdp, torch.tensor([[2.0, 0.0], [1.5, 0.0]], dtype=F64), t, 0.1, "any", None)
    assert rec["stiff"] and rec["step_ratio"] > STEP_LIMIT and rec["declared"] is None
    s = Lorenz63()
    y0 = s.sample_initial(4, generator=torch.Generator().manual_seed(1))
    rec = stiffness_of(s, y0, torch.linspace(0, 10, 101, dtype=F64), 0.01, "any", None)
    assert not rec["stiff"] and 1.0 < rec["decay_rate"] < 100.0  # Lorenz's decay rates are tens at most


def test_declared_stiffness_decides_and_an_undifferentiable_f_is_not_tested():
    t = torch.linspace(0, 40, 5, dtype=F64)
    y0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    # Robertson starts slow (its fast modes need the intermediate species): not detected, but declared
    assert not stiffness_of(robertson, y0, t, 10.0, "any", None)["stiff"]
    assert stiffness_of(robertson, y0, t, 10.0, "any", True)["stiff"]
    assert not stiffness_of(vdp, torch.tensor([[2.0, 0.0]], dtype=F64), t, 0.1, "any", False)["stiff"]
    numpy_f = lambda t, y: torch.as_tensor(-y.numpy())  # noqa: E731 - autograd cannot see through NumPy
    rec = stiffness_of(numpy_f, y0, t, 0.1, "any", None)
    assert not rec["stiff"] and rec["note"].startswith("not tested: no Jacobian of f")
    with pytest.raises(TypeError, match="stiff must be True or False"):
        stiffness_of(vdp, y0, t, 0.1, "any", 1)


def test_the_stiff_ladder_comes_from_the_registry_and_only_for_stiff_problems():
    args = dict(refinements=(1, 2), step_refinements=(1,), spectral_refinements=(1,), tolerances=(1e-3, 1e-6, 1e-9))
    plain = build_ladders("rk4", "any", **args)
    stiff = build_ladders("rk4", "any", **args, stiff=True)
    implicit = list_methods(ladder="stiff")
    assert implicit == ["kvaerno5"] and not set(implicit) & {lad.family for lad in plain}
    assert [lad.family for lad in stiff] == [lad.family for lad in plain] + implicit
    assert stiff[-1].over == "tolerance" and stiff[-1].rungs == (1e-3, 1e-6, 1e-9)
    # the explicit adaptive ladders keep their loosest tolerances only (stability sets their cost)
    for a, b in zip(plain, stiff):
        assert b.rungs == (a.rungs[:2] if a.over == "tolerance" else a.rungs)


@pytest.mark.slow
def test_compare_on_van_der_pol_mu_1000_includes_kvaerno5_and_cuts_the_explicit_ladders():
    y0 = torch.tensor([[2.0, -0.00066], [-1.9, 0.0007]], dtype=F64)  # near the slow manifold
    t = torch.linspace(0, 0.2, 5, dtype=F64)
    zero = attsolver.AttSolver(2, method="kvaerno5_fixed", step_size=0.05)  # untrained: exactly zero
    res = compare(vdp, y0, t, corrector=zero, refinements=(1, 2), rk4_refinements=(1,), dopri_rtols=(1e-3, 1e-5),
                  lyapunov_exponent=None, rounds=1, max_rounds=1, time_budget=2.0, progress=False)
    assert res.setting["stiffness"]["stiff"]
    ours = {e["label"]: e for e in res.entries}
    k5 = [e for e in res.entries if e["method"] == "kvaerno5"]
    assert k5 and all(e["err_full"] < 1e-6 for e in k5)  # the implicit ladder is accurate on it
    assert ours["rk4 h/1"]["err_full"] > 1.0  # the explicit coarse step is unstable (|h lambda| = 150)
    # every explicit adaptive ladder either ran or was cut early with a note
    assert all(lab in ours or "ladder stopped" in why or "failed" in why
               for lab, why in res.setting["skipped"].items())
    assert res.verdict is not None and "kvaerno5" in {e["method"] for e in res.entries if e["family"] != "corrected"}


@pytest.mark.parametrize("flag, expected", [("yes", True), ("no", False), ("auto", None)])
def test_the_cli_passes_stiff_through(monkeypatch, tmp_path, flag, expected):
    seen = {}

    def fake_compare(f, **kw):
        seen["stiff"] = kw["stiff"]
        raise KeyboardInterrupt  # stop here: only the argument is under test

    monkeypatch.setattr(CLI, "compare", fake_compare)
    CLI.main(["compare", "lorenz63", "--method", "rk4", "--step", "0.01", "--t-final", "0.1", "--dt",
              "0.01", "--n", "2", "--no-progress", "--out", str(tmp_path), "--stiff", flag])
    assert seen == {"stiff": expected}
