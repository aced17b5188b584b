"""Attention modules of attsolver.nn: SE, the DIA unit, IEBN — their formulas, ranges,
parameter counts, state handling and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attsolver.nn import (
    DIAUnit, IEBatchNorm, IEBNGate, SEGate, SqueezeExcitation, list_attention, make_attention,
)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --------------------------------------------------------------------------- every registered gate


@pytest.mark.parametrize("name", list_attention())
@pytest.mark.parametrize("shape", [(6, 12), (6, 12, 5, 7)])
def test_every_gate_works_on_vectors_and_maps_and_passes_gradients(name, shape):
    torch.manual_seed(0)
    gate = make_attention(name, 12, reduction=4, dtype=torch.float64)
    x = (3 * torch.randn(shape, dtype=torch.float64)).requires_grad_()
    a = gate(x)[0] if gate.stateful else gate(x)
    assert a.shape == (shape[0], 12, *([1] * (len(shape) - 2)))
    assert bool((a > 0).all() and (a < 1).all())
    (x * a).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_registry_lists_the_vision_gates_and_names_the_choices():
    assert {"se", "iebn", "dia"} <= set(list_attention())
    with pytest.raises(ValueError, match=r"unknown attention 'cbam'; choose one of: dia, iebn, se"):
        make_attention("cbam", 8)


# --------------------------------------------------------------------------- SE


def test_se_gate_of_a_map_is_the_gate_of_its_average():
    torch.manual_seed(0)
    se = SEGate(16, reduction=4, dtype=torch.float64)
    x = torch.randn(5, 16, 6, 6, dtype=torch.float64)
    a_map = se(x)
    a_vec = se(x.mean(dim=(2, 3)))
    assert a_map.shape == (5, 16, 1, 1) and a_vec.shape == (5, 16)
    torch.testing.assert_close(a_map.squeeze(-1).squeeze(-1), a_vec, rtol=0, atol=1e-14)
    # and it is sigmoid(W2 relu(W1 m + b1) + b2)
    m = x.mean(dim=(2, 3))
    ref = torch.sigmoid(se.fc2(torch.relu(se.fc1(m))))
    torch.testing.assert_close(a_vec, ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("shape", [(4, 32), (4, 32, 3, 3)])
def test_squeeze_excitation_rescales_each_channel_by_its_gate(shape):
    torch.manual_seed(1)
    block = SqueezeExcitation(32, reduction=16)
    x = torch.randn(shape)
    y = block(x)
    assert y.shape == x.shape
    ratio = (y / x).reshape(shape[0], shape[1], -1)
    assert bool((ratio > 0).all() and (ratio < 1).all())
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio))  # one factor per sample and channel
    # Hu et al.'s SE at r=16: 2 C^2/16 weights + C/16 + C biases
    assert n_params(block) == 2 * 32 * 32 // 16 + 32 // 16 + 32


# --------------------------------------------------------------------------- DIA


def test_dia_step_is_the_modified_lstm_formula():
    torch.manual_seed(0)
    unit = DIAUnit(8, reduction=4, dtype=torch.float64)
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    h0, c0 = torch.rand(3, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    a, (h, c) = unit(x, (h0, c0))
    m = x.mean(dim=(2, 3))

    def mlp(seq, v):  # Linear -> ReLU -> Linear
        return seq[2](torch.relu(seq[0](v)))

    z = mlp(unit.input_map, m) + mlp(unit.hidden_map, h0)
    i, f, g, o = z[:, :8], z[:, 8:16], z[:, 16:24], z[:, 24:]
    c_ref = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
    h_ref = torch.sigmoid(o) * torch.sigmoid(c_ref)  # sigmoid, not tanh
    torch.testing.assert_close(c, c_ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(a, h_ref[:, :, None, None], rtol=0, atol=1e-14)


def test_dia_parameter_count_is_two_bottleneck_mlps():
    c, r = 64, 4
    unit = DIAUnit(c, reduction=r)
    one_mlp = c * (c // r) + c // r + (c // r) * 4 * c + 4 * c
    assert n_params(unit) == 2 * one_mlp == 10784


def test_dia_gate_stays_in_open_unit_interval_over_a_long_sequence():
    torch.manual_seed(0)
    unit = DIAUnit(16, dtype=torch.float64)
    with torch.no_grad():
        for p in unit.parameters():
            p.mul_(5)  # large weights: saturating gates, growing cell state
    state = None
    for _ in range(30):
        a, state = unit(10 * torch.randn(4, 16, 3, 3, dtype=torch.float64), state)
        assert bool((a > 0).all() and (a < 1).all())
    h, c = state
    assert bool((h > 0).all() and (h < 1).all())


def test_dia_state_none_starts_from_zeros_and_the_state_matters():
    torch.manual_seed(0)
    unit = DIAUnit(8)
    x = torch.randn(2, 8, 5, 5)
    a_fresh, state = unit(x)
    a_zeros, _ = unit(x, unit.initial_state(2))
    assert torch.equal(a_fresh, a_zeros)
    a_second, _ = unit(x, state)  # the same input, a carried state: a different gate
    assert not torch.allclose(a_second, a_fresh)
    a_reset, _ = unit(x, None)  # a reset state: the first gate again
    assert torch.equal(a_reset, a_fresh)


def test_dia_gradients_reach_both_maps_through_the_recurrence():
    torch.manual_seed(0)
    unit = DIAUnit(32)  # 8 hidden units: with C=8 (2 units) both ReLUs can be dead for h in (0, 1)
    xs = [torch.randn(3, 32, 4, 4, requires_grad=True) for _ in range(3)]
    state, loss = None, 0.0
    for x in xs:
        a, state = unit(x, state)
        loss = loss + (a * x).sum()
    loss.backward()
    for name, p in unit.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert all(float(x.grad.abs().sum()) > 0 for x in xs)
    # the first input influences the last gate only through the state
    a_last_grad = torch.autograd.grad(unit(xs[2], unit(xs[1], unit(xs[0])[1])[1])[0].sum(), xs[0])[0]
    assert float(a_last_grad.abs().sum()) > 0


def test_dia_lipschitz_bound_holds_with_a_carried_state():
    torch.manual_seed(0)
    unit = DIAUnit(16, lipschitz_cap=1.0, dtype=torch.float64).eval()
    with torch.no_grad():
        for p in unit.parameters():
            p.add_(torch.randn_like(p))
    h0 = torch.rand(64, 16, dtype=torch.float64)
    c0 = 3 * (2 * torch.rand(64, 16, dtype=torch.float64) - 1)  # |c| <= 3
    x = 3 * torch.randn(64, 16, dtype=torch.float64)
    x2 = x + 0.05 * torch.randn_like(x)
    da = (unit(x, (h0, c0))[0] - unit(x2, (h0, c0))[0]).norm(dim=1)
    bound = unit.lipschitz_bound(cell_bound=3.0)
    assert bound == pytest.approx(math.sqrt(33 + 9) / 16)
    assert bool((da <= bound * (x - x2).norm(dim=1) * (1 + 1e-9)).all())


def test_dia_rejects_a_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        DIAUnit(8, reduction=0)


# --------------------------------------------------------------------------- IEBN


def test_iebn_gate_starts_at_sigmoid_minus_one_for_every_input():
    gate = IEBNGate(6)
    a = gate(100 * torch.randn(4, 6, 3, 3))
    torch.testing.assert_close(a, torch.full((4, 6, 1, 1), 1 / (1 + math.e)))


def test_iebn_is_batchnorm_with_a_recalibrated_weight():
    torch.manual_seed(0)
    layer = IEBatchNorm(5).double()
    x = 2 + 3 * torch.randn(8, 5, 4, 4, dtype=torch.float64)
    # at initialisation: BN(x) * sigmoid(-1)
    x_hat = F.batch_norm(x, None, None, training=True, eps=layer.eps)
    torch.testing.assert_close(layer(x), x_hat / (1 + math.e))
    # in general: x_hat * (gamma * sigmoid(w * GAP(x) + b)) + beta, per sample and channel
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p))
    w, b = layer.gate.weight, layer.gate.bias
    a = torch.sigmoid(w * x.mean(dim=(2, 3)) + b)[:, :, None, None]
    ref = x_hat * (layer.weight[:, None, None] * a) + layer.bias[:, None, None]
    torch.testing.assert_close(layer(x), ref)


def test_iebn_adds_2c_parameters_to_batchnorm():
    for c in (1, 16, 64):
        assert n_params(IEBatchNorm(c)) == n_params(nn.BatchNorm2d(c)) + 2 * c


def test_iebn_running_statistics_match_batchnorm_and_eval_uses_them():
    torch.manual_seed(0)
    for momentum in (0.1, None):
        ie, bn = IEBatchNorm(4, momentum=momentum), nn.BatchNorm2d(4, momentum=momentum)
        for _ in range(5):
            x = 1 + 2 * torch.randn(16, 4, 3, 3)
            ie(x)
            bn(x)
        torch.testing.assert_close(ie.running_mean, bn.running_mean)
        torch.testing.assert_close(ie.running_var, bn.running_var)
        assert int(ie.num_batches_tracked) == 5
    ie.eval()
    x = torch.randn(3, 4, 3, 3)
    x_hat = (x - ie.running_mean[:, None, None]) / torch.sqrt(ie.running_var[:, None, None] + ie.eps)
    torch.testing.assert_close(ie(x), x_hat / (1 + math.e))
    # eval mode: one sample's output does not depend on the rest of the batch
    torch.testing.assert_close(ie(x[:1]), ie(x)[:1])


def test_iebn_on_feature_vectors_and_bad_shapes():
    layer = IEBatchNorm(6)
    y = layer(torch.randn(10, 6))
    assert y.shape == (10, 6)
    with pytest.raises(ValueError, match=r"IEBatchNorm\(6\) expects \[batch, 6"):
        layer(torch.randn(10, 5, 2, 2))
