"""AttSolver with the DIA unit: one unit shared by the residual body's layers, its LSTM state
carried from layer to layer within a call (docs/method.md, "Residual body with a shared gate")."""

from __future__ import annotations

import pytest
import torch

import attsolver
from attsolver.correctors import AttSolver, load_corrector
from attsolver.data import generate_trajectories
from attsolver.systems import make_system
from attsolver.training.trainer import fit


def _randomize(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def test_dia_defaults_to_the_residual_body_and_refuses_the_plain_one():
    model = AttSolver(3, method="rk4", step_size=0.1, attention="dia")
    assert model.residual and model.config()["residual"] is True
    assert AttSolver(3, method="rk4", step_size=0.1).residual is False  # stateless gates: as before
    with pytest.raises(ValueError, match="residual"):
        AttSolver(3, method="rk4", step_size=0.1, attention="dia", residual=False)
    with pytest.raises(TypeError, match="residual"):
        AttSolver(3, method="rk4", step_size=0.1, residual="yes")


@pytest.mark.parametrize("combine", ["add", "mul"])
@pytest.mark.parametrize("attention", ["dia", "se", "none"])
def test_untrained_residual_corrector_is_bitwise_classical(attention, combine):
    system = make_system("lorenz63")
    y0 = system.sample_initial(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.linspace(0, 2, 21, dtype=torch.float64)
    model = AttSolver(3, method="rk4", step_size=0.1, attention=attention, combine=combine, depth=3,
                      residual=True, dtype=torch.float64)
    classical = attsolver.solve(system, y0, t, method="rk4", step_size=0.1)
    corrected = attsolver.solve(system, y0, t, method="rk4", step_size=0.1, corrector=model)
    assert torch.equal(classical, corrected)


def test_shared_unit_parameter_count_does_not_depend_on_depth():
    def counts(depth):
        m = AttSolver(5, method="euler", step_size=0.1, attention="dia", width=32, depth=depth)
        gate = sum(p.numel() for p in m.gate.parameters())
        return gate, sum(p.numel() for p in m.parameters()), sum(p.numel() for p in m.body.parameters())

    g1, total1, body1 = counts(1)
    for depth in (2, 4, 8):
        g, total, body = counts(depth)
        assert g == g1  # one unit, shared
        assert total - body == total1 - body1  # everything but the body's own layers is fixed
    # the same residual layers with an SE gate differ only by the gate
    se = AttSolver(5, method="euler", step_size=0.1, attention="se", width=32, depth=3, residual=True)
    dia = AttSolver(5, method="euler", step_size=0.1, attention="dia", width=32, depth=3)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    gate = lambda m: sum(p.numel() for p in m.gate.parameters())  # noqa: E731
    assert n(dia) - gate(dia) == n(se) - gate(se)


def test_gate_in_unit_interval_and_state_carried_within_a_call_only():
    model = _randomize(AttSolver(3, method="rk4", step_size=0.1, attention="dia", combine="mul", width=16,
                                 depth=3, dtype=torch.float64)).eval()
    gates, states = [], []
    original = model.gate.forward

    def spy(x, state=None):
        states.append(state)
        a, new = original(x, state)
        gates.append(a)
        return a, new

    model.gate.forward = spy
    u = torch.randn(64, model.feature_dim, dtype=torch.float64)
    out1 = model.network(u)
    assert len(gates) == 3  # once per layer
    assert states[0] is None and states[1] is not None and states[2] is not None  # carried layer to layer
    for a in gates:
        assert bool((a > 0).all()) and bool((a < 1).all())
    out2 = model.network(u)
    assert states[3] is None  # a new call starts afresh: no state across solver steps
    assert torch.equal(out1, out2)


def test_save_load_round_trip(tmp_path):
    model = _randomize(AttSolver(3, method="rk4", step_size=0.1, attention="dia", depth=3)).eval()
    model.save(tmp_path / "dia.pt")
    loaded = load_corrector(tmp_path / "dia.pt")
    y = torch.randn(5, 3)
    assert loaded.config() == model.config()
    assert torch.equal(loaded(None, y, 0.1 * y, 0.1), model(None, y, 0.1 * y, 0.1))


def test_dia_corrector_trains():
    torch.manual_seed(0)
    data = generate_trajectories("lorenz63", 6, t_final=3.0, dt=0.1, spin_up=5.0, refine=10, progress=False)
    model = AttSolver(3, method="rk4", step_size=0.1, attention="dia", width=32, depth=3)
    hist = fit(model, data, epochs=15, lr=3e-3, batch_size=32, val_fraction=0.0, patience=None, progress=False)
    assert hist.train_loss[-1] < 0.5 * hist.train_loss[0]
