"""The wrapped-field stencil reader of the 2-D systems: every view is the periodic
neighbour that ``torch.roll`` gives, and offsets outside the wrap are refused."""

import pytest
import torch

from attsolver.systems._halo import Halo


def _neighbour(a, di, dj):
    """``a`` at ``(i + di, j + dj)``, ``i`` along the last axis: the periodic shift by roll."""
    return torch.roll(a, shifts=(-dj, -di), dims=(-2, -1))


@pytest.mark.parametrize("p", [1, 2, 3])
def test_every_view_is_the_periodic_neighbour(p):
    a = torch.randn(2, 3, 7, 9, dtype=torch.float64)  # batched, not square
    h = Halo(a, p)
    for di in range(-p, p + 1):
        for dj in range(-p, p + 1):
            assert torch.equal(h(di, dj), _neighbour(a, di, dj)), (di, dj)


def test_a_view_shares_the_one_wrapped_copy():
    a = torch.randn(5, 6)
    h = Halo(a, 2)
    assert h(1, -2).untyped_storage().data_ptr() == h.a.untyped_storage().data_ptr()
    assert h(1, -2)._base is h.a  # a view, not a copy


def test_gradients_flow_back_to_the_field():
    a = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    h = Halo(a, 2)
    (h(2, -1) * torch.arange(36.0, dtype=torch.float64).reshape(6, 6)).sum().backward()
    expected = _neighbour(torch.arange(36.0, dtype=torch.float64).reshape(6, 6), -2, 1)
    assert torch.equal(a.grad, expected)


def test_refuses_offsets_beyond_the_wrap_and_a_wrap_wider_than_the_field():
    h = Halo(torch.zeros(4, 4), 1)
    with pytest.raises(ValueError, match=r"offset \(2, 0\) is beyond the 1-cell halo"):
        h(2, 0)
    with pytest.raises(ValueError, match=r"p must be in \[1, 3\]"):
        Halo(torch.zeros(3, 5), 4)
    with pytest.raises(ValueError, match=r"p must be in"):
        Halo(torch.zeros(3, 5), 0)
