"""Issue 24, item 5: the cuts of ``solve``'s fixed cost change no answer and no message.

``solve`` keys its ``t`` once per call (``call_cache.times_entry_again`` hands the entry that
``t``'s check just found to the step grid's look-up), ``all_finite`` detaches only a tensor
that requires grad, and ``check_dtype`` remembers dtype names."""

from __future__ import annotations

import math

import pytest
import torch

from attsolver import solve
from attsolver.integrate import call_cache
from attsolver.integrate.checks import check_dtype
from attsolver.integrate.errors import all_finite
from attsolver.steppers import get_method


@pytest.fixture(autouse=True)
def _cold():
    call_cache.clear()
    yield
    call_cache.clear()


def decay(t, y):
    return -y


def test_the_entry_is_handed_on_only_for_the_same_unchanged_t():
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    first = call_cache.times_entry(t)
    assert call_cache.times_entry_again(t) is first  # the same tensor, unchanged: no re-keying
    # taken once: a second look-up keys t again (and finds the same entry)
    assert call_cache.times_entry_again(t) is first
    call_cache.times_entry(t)
    t.mul_(3.0)  # changed in place: the version counter moves, the entry is t's new one
    again = call_cache.times_entry_again(t)
    assert again is not first and again.t_np.tolist() == (3.0 * torch.linspace(0, 1, 5, dtype=torch.float64)).tolist()
    call_cache.times_entry(t)
    other = t.clone()  # equal values, another tensor: keyed afresh, and found
    assert call_cache.times_entry_again(other) is again
    # a t that is not cached (requires grad) leaves nothing to hand on
    call_cache.times_entry(t)
    assert call_cache.times_entry(t.clone().requires_grad_(True)) is None
    assert call_cache.times_entry_again(t) is again  # keyed afresh


def test_solves_on_a_t_changed_between_calls_follow_the_new_times():
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    for scale in (1.0, 2.0, 0.5):
        sol = solve(decay, y0, t, method="rk4", step_size=1 / 64)
        # RK4 on y' = -y with h <= 1/64: error below 1e-8 at every output time up to t = 2
        torch.testing.assert_close(sol[:, 0], torch.exp(-t), rtol=1e-8, atol=0)
        t.mul_(2.0 if scale == 1.0 else 0.25)
    t[1] = t[2]
    with pytest.raises(ValueError, match="strictly monotone"):
        solve(decay, y0, t, method="rk4", step_size=0.1)


def test_a_t_made_in_inference_mode_is_keyed_every_call():
    # inference tensors have no version counter: their entry is never handed on, and they solve
    y0 = torch.ones(2, dtype=torch.float64)
    want = solve(decay, y0, torch.linspace(0, 1, 3, dtype=torch.float64), method="rk4", step_size=0.125)
    with torch.inference_mode():
        t = torch.linspace(0, 1, 3, dtype=torch.float64)
        assert torch.equal(solve(decay, y0, t, method="rk4", step_size=0.125), want)
        t.mul_(2.0)  # changed in place, untracked: the next solve still sees the new times
        got = solve(decay, y0, t, method="rk4", step_size=0.125)
    torch.testing.assert_close(got[:, 0], torch.exp(-t), rtol=1e-5, atol=0)
    assert torch.equal(solve(decay, y0, t, method="rk4", step_size=0.125), got)  # t used outside inference mode


def test_all_finite_with_and_without_grad():
    x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    assert all_finite(x) and all_finite(x * 2)
    assert not all_finite(torch.cat((x, torch.tensor([math.nan], dtype=torch.float64))))
    assert not all_finite(torch.tensor([1.0, math.inf]))
    assert not all_finite(torch.tensor([1e308, 1e308, -math.inf], dtype=torch.float64))
    assert all_finite(torch.tensor([1e308, 1e308], dtype=torch.float64))  # the sum overflows, the values do not
    y = x * 3
    all_finite(y)
    assert y.grad_fn is not None and x.grad is None  # no graph grows from the check


def test_check_dtype_names_the_dtype_the_same_way_every_call():
    spec = get_method("scipy_dop853")
    for _ in range(2):
        check_dtype(spec, torch.zeros(2, dtype=torch.float64))
        with pytest.raises(TypeError, match="does not support y0 of dtype torch.float16"):
            check_dtype(spec, torch.zeros(2, dtype=torch.float16))
