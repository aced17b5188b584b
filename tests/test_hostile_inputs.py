"""Hostile and extreme inputs (issue 26): one validation and budget path for every solve
path, declared precisions, non-differentiable methods refused under autograd."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

from attsolver import solve
from attsolver.evaluate import compare
from attsolver.steppers import get_method, list_methods


def _decay(t, y):
    return -y


_T = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
_Y = torch.ones(2, dtype=torch.float64)

# (y0, t, kwargs, expected error type, a phrase of its message)
with warnings.catch_warnings():  # torch: "ComplexHalf support is experimental"
    warnings.simplefilter("ignore", UserWarning)
    _C32 = torch.ones(2, dtype=torch.complex32)

_BAD_INPUTS = [
    ([1.0, 2.0], _T, {}, TypeError, "y0 must be a torch.Tensor"),
    (np.ones(2), _T, {}, TypeError, "y0 must be a torch.Tensor"),
    (None, _T, {}, TypeError, "y0 must be a torch.Tensor"),
    (torch.ones(2, dtype=torch.int64), _T, {}, TypeError, "floating dtype"),
    (_Y, torch.tensor([0.0, 1.0, 0.5, 2.0], dtype=torch.float64), {}, ValueError, "strictly monotone"),
    (_Y, torch.tensor([0.0, float("nan"), 2.0], dtype=torch.float64), {}, ValueError, "NaN"),
    (_Y, torch.zeros(2, 3, dtype=torch.float64), {}, ValueError, "1-D"),
    (_Y, _T, {"options": {"bogus": 1}}, ValueError, "unknown key"),
    (_Y, _T, {"step_size": -1.0}, ValueError, "positive finite"),
    (_Y, torch.linspace(0, 1000, 101, dtype=torch.float64), {"step_size": 1e-7}, ValueError, "max_steps"),
    (_Y, _T, {"options": {"max_output_bytes": 16}}, ValueError, "max_output_bytes"),
    (_C32, _T, {}, TypeError, "complex32"),
]


@pytest.mark.parametrize("progress", [False, True])
@pytest.mark.parametrize("case", range(len(_BAD_INPUTS)))
def test_progress_and_silent_paths_validate_alike(case, progress):
    """The whole input matrix gives the same clear error with progress on and off (the
    progress path used to skip the checks: AttributeError for a list y0, a non-monotone t
    accepted, the step-count guard skipped)."""
    y0, t, kwargs, err, phrase = _BAD_INPUTS[case]
    with pytest.raises(err, match=phrase):
        solve(_decay, y0, t, method="rk4", progress=progress, **kwargs)


def test_progress_result_equals_silent_result():
    t = torch.linspace(0.0, 2.0, 11, dtype=torch.float64)
    a = solve(_decay, _Y, t, step_size=0.05, progress=False)
    b = solve(_decay, _Y, t, step_size=0.05, progress=True)
    assert torch.equal(a, b)
    assert torch.allclose(a[-1], torch.exp(torch.tensor(-2.0, dtype=torch.float64)) * _Y, rtol=1e-6)


def test_raised_max_steps_never_silently_returns_y0():
    """10**30 steps of 1e-20 used to overflow the int64 step count and return y0 unchanged."""
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="steps"):
        solve(_decay, _Y, t, step_size=1e-20, options={"max_steps": 10**30})


def test_step_below_time_resolution_is_an_error():
    """A step that cannot move time (1e-10 at t = 1e10) is refused whatever the budget."""
    t = torch.tensor([1e10, 1e10 + 1e-5], dtype=torch.float64)
    with pytest.raises(ValueError, match="underflows the time grid"):
        solve(_decay, _Y, t, step_size=1e-10, options={"max_steps": 10**9})


def test_adaptive_wall_budget_ends_a_span_of_1e300():
    t = torch.tensor([0.0, 1e300], dtype=torch.float64)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="max_wall_s"):
        solve(_decay, _Y, t, method="dopri5", options={"max_wall_s": 0.5})
    assert time.monotonic() - started < 30


def test_output_count_refused_before_work():
    """10**9 output times (24 GB for a 3-component state) are refused by the default budget
    before t is even differenced (a stride-0 view of 10**9 times costs no memory); so is a
    result of 2000 times x 10**6 components (16 GB), before f is ever called."""
    calls = []

    def f(t, y):
        calls.append(1)
        return -y

    t = torch.zeros(1, dtype=torch.float64).expand(10**9)
    with pytest.raises(ValueError, match="max_output_bytes"):
        solve(f, torch.ones(3, dtype=torch.float64), t)
    with pytest.raises(ValueError, match="max_output_bytes"):
        solve(f, torch.ones(10**6, dtype=torch.float64), torch.linspace(0, 1, 2000, dtype=torch.float64),
              progress=True)
    assert not calls


@pytest.mark.parametrize("method", list_methods())
def test_every_method_declares_its_dtypes(method):
    spec = get_method(method)
    assert "float64" in spec.dtypes and "complex32" not in spec.dtypes


@pytest.mark.parametrize("method,dtype", [("dopri5", torch.bfloat16), ("dopri8", torch.bfloat16),
                                          ("dopri5", torch.float16), ("etdrk4", torch.float16),
                                          ("ifrk4", torch.float16), ("scipy_dop853", torch.float16),
                                          ("rk4", torch.complex32), ("dopri5", torch.complex32)])
def test_below_declared_precision_is_refused(method, dtype):
    """dopri5 in bfloat16 returned 0.996 for exp(-1) = 0.368; float16 failed inside torch."""
    with pytest.raises(TypeError, match=f"{method}.*{str(dtype).replace('torch.', '')}"):
        solve(_decay, torch.ones(4, dtype=dtype), torch.tensor([0.0, 1.0]), method=method)


def test_half_precision_rk4_is_still_right():
    """rk4 declares half precision: one step of h = 1 is 1 - 1 + 1/2 - 1/6 + 1/24 = 0.375."""
    out = solve(_decay, torch.ones(1, dtype=torch.bfloat16), torch.tensor([0.0, 1.0]), step_size=1.0)
    assert float(out[-1]) == pytest.approx(0.375, abs=1e-3)


@pytest.mark.parametrize("method", [m for m in list_methods() if m.startswith("scipy_")])
def test_scipy_refuses_inputs_that_require_grad(method):
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="not differentiable.*dopri5"):
        solve(_decay, y0, _T, method=method)
    lin = torch.nn.Linear(2, 2).double()
    with pytest.raises(ValueError, match="f's parameters"):
        solve(_Module(lin), _Y, _T, method=method)
    with torch.no_grad():  # no gradient wanted: allowed, and right
        out = solve(_decay, y0, _T, method=method)
    assert torch.allclose(out[-1], torch.exp(torch.tensor(-1.0, dtype=torch.float64)) * torch.ones(2,
                          dtype=torch.float64), rtol=1e-5)


class _Module(torch.nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, t, y):
        return self.lin(y)


# --------------------------------------------------------------------------- compare

def _compare(**kw):
    y0 = torch.ones(2, 2, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    args = dict(method="rk4", step_size=0.1, progress=False, lyapunov_exponent=None, rounds=1)
    args.update(kw)
    return compare(_decay, y0, t, **args)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "", "/tmp/x"])
def test_compare_name_is_a_file_name(name, tmp_path):
    with pytest.raises(ValueError, match="name must be a file name"):
        _compare(out=tmp_path / "out", name=name)
    assert not (tmp_path / "x.json").exists() and not list(tmp_path.rglob("*.json"))


def test_compare_out_must_be_a_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("keep")
    with pytest.raises(ValueError, match="out must be a folder"):
        _compare(out=f)
    assert f.read_text() == "keep"


def test_compare_nan_reference_and_half_dtype(tmp_path):
    ref = torch.exp(-torch.linspace(0.0, 1.0, 11, dtype=torch.float64))[None, :, None].expand(2, 11, 2).clone()
    ref[1, 5, 0] = float("nan")
    with pytest.raises(ValueError, match=r"reference contains NaN.*\[1\]"):
        _compare(reference=ref)
    with pytest.raises(TypeError, match="float32 or float64.*float16"):
        _compare(dtype=torch.float16)
