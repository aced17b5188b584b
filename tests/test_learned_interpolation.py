"""The learned interpolation inside NavierStokes2DFD (Kochkov's form): the base scheme when
the learned part is zero, exact conservation of the mean, consistent weights for any input,
2nd-order convergence of the advection, gradients through ``solve``, and the refusals."""

import math

import pytest
import torch

from attsolver import fit
from attsolver.correctors import InterpolationHost
from attsolver.data import TrajectoryDataset
from attsolver.integrate import NonFiniteSolutionError, solve
from attsolver.systems import LearnedInterpolation, NavierStokes2D, NavierStokes2DFD
from attsolver.systems.grid import restrict_2d
from attsolver.systems.learned_interpolation import check_weights, constraint_matrix, face_velocities, flux_advection

NU = 1.0 / 500.0


def _model(n, *, scale=0.0, seed=0, **kw):
    torch.manual_seed(seed)
    li = LearnedInterpolation(n, NU, **kw).double()
    if scale:
        torch.nn.init.normal_(li.net[-1].weight, std=scale)
        torch.nn.init.normal_(li.net[-1].bias, std=scale)
    return li


def _field(n, seed=1):
    return NavierStokes2DFD(n=n, nu=NU).sample_initial(2, generator=torch.Generator().manual_seed(seed))


def _advection(system, w):
    """The advection part of the right-hand side (the rest is linear and known)."""
    rest = system.laplacian(w) * system.nu - system.drag * w + system.forcing(w.dtype)
    return system(torch.tensor(0.0), w) - rest


def _roll(a, di, dj):
    return torch.roll(a, shifts=(-dj, -di), dims=(-2, -1))


def test_zero_learned_part_is_the_centred_flux_form_exactly():
    n = 24
    s = NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n))
    w = _field(n)
    u, v = face_velocities(s.streamfunction(w), s.dx)
    fx = u * 0.5 * (w + _roll(w, 1, 0))  # the x-face (i+1/2, j): mean of cells i and i+1
    fy = v * 0.5 * (w + _roll(w, 0, 1))
    expected = -((fx - _roll(fx, -1, 0)) + (fy - _roll(fy, 0, -1))) / s.dx
    assert torch.allclose(_advection(s, w), expected, rtol=0, atol=1e-12)


def test_zero_learned_part_centred4_is_the_four_point_rule():
    n = 24
    s = NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n, base="centred4"))
    w = _field(n)
    u, v = face_velocities(s.streamfunction(w), s.dx)
    fx = u * (9 * (w + _roll(w, 1, 0)) - (_roll(w, -1, 0) + _roll(w, 2, 0))) / 16
    fy = v * (9 * (w + _roll(w, 0, 1)) - (_roll(w, 0, -1) + _roll(w, 0, 2))) / 16
    expected = -((fx - _roll(fx, -1, 0)) + (fy - _roll(fy, 0, -1))) / s.dx
    assert torch.allclose(_advection(s, w), expected, rtol=0, atol=1e-12)


def test_face_velocities_are_discretely_divergence_free():
    s = NavierStokes2DFD(n=20, nu=NU)
    u, v = face_velocities(s.streamfunction(_field(20)), s.dx)
    div = (u - _roll(u, -1, 0)) + (v - _roll(v, 0, -1))
    assert float(div.abs().max()) < 1e-12


def test_mean_vorticity_conserved_exactly_through_solve():
    n = 16
    s = NavierStokes2DFD(n=n, nu=NU, drag=0.0, forcing_amplitude=0.0,
                         interpolation=_model(n, scale=0.3, drag=0.0))
    w0 = _field(n) + 0.7  # a non-zero mean
    t = torch.linspace(0.0, 0.5, 3, dtype=torch.float64)
    w = solve(s, w0, t, method="ssprk3", step_size=0.25 * s.max_step_size(w0)).detach()
    assert float((w.mean(dim=(-2, -1)) - w0.mean(dim=(-2, -1))).abs().max()) < 1e-12
    assert float((w[-1] - w0).abs().max()) > 1e-2  # it did move


@pytest.mark.parametrize("degree,transverse,base", [(0, 1, "centred2"), (1, 1, "centred2"),
                                                    (1, 3, "centred2"), (2, 3, "centred4")])
def test_weights_are_consistent_for_any_input(degree, transverse, base):
    n = 16
    li = _model(n, scale=1.0, degree=degree, transverse=transverse, width=4, base=base)
    g = torch.Generator().manual_seed(3)
    w, u, v = (10 * torch.randn(3, n, n, generator=g, dtype=torch.float64) for _ in range(3))
    a = constraint_matrix(4, transverse, degree)
    for wt in li(w, u, v):
        wt = wt.detach()
        assert float(wt.std()) > 0.1  # the learned part is active
        moments = torch.einsum("ms,...sij->...mij", a, wt)
        assert torch.allclose(moments[..., 0, :, :], torch.ones(()).double(), atol=1e-10)  # sum to one
        if degree:
            assert float(moments[..., 1:, :, :].abs().max()) < 1e-10  # exact to degree


def _smooth(n):
    s = NavierStokes2DFD(n=n, nu=NU)
    x, y = s.grid()
    w = torch.sin(x) * torch.cos(2 * y) + 0.5 * torch.cos(3 * x + y) + 0.3 * torch.sin(2 * x - y)
    wh = torch.fft.rfft2(w)
    ky = torch.fft.fftfreq(n, 1 / n, dtype=torch.float64)[:, None]
    kx = torch.arange(n // 2 + 1, dtype=torch.float64)[None, :]
    k2 = kx**2 + ky**2
    ph = wh / k2.clamp_min(1.0)

    def d(a, k):
        return torch.fft.irfft2(1j * k * a, s=(n, n))
    return w, -(d(ph, ky) * d(wh, kx) - d(ph, kx) * d(wh, ky))  # exact -u.grad(omega)


@pytest.mark.parametrize("scale,base", [(0.0, "centred2"), (0.1, "centred2"), (0.0, "centred4")])
def test_advection_converges_at_second_order(scale, base):
    errs = []
    for n in (32, 64, 128):
        w, exact = _smooth(n)
        s = NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n, scale=scale, base=base))
        errs.append(float((_advection(s, w) - exact).abs().max()))
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert min(orders) > 1.85, (errs, orders)


def test_gradients_reach_the_cnn_through_solve():
    n = 16
    li = _model(n, scale=0.05)
    s = NavierStokes2DFD(n=n, nu=NU, interpolation=li)
    w0 = _field(n)[:1]
    t = torch.linspace(0.0, 0.2, 2, dtype=torch.float64)
    h = 0.25 * s.max_step_size(w0)

    def loss():
        return solve(s, w0, t, method="ssprk3", step_size=h)[-1].square().mean()

    p = li.net[-1].bias
    p.grad = None
    loss().backward()
    g = p.grad.clone()
    assert float(g.abs().max()) > 0
    eps = 1e-6
    with torch.no_grad():
        p[0] += eps
        up = float(loss())
        p[0] -= 2 * eps
        down = float(loss())
        p[0] += eps
    assert math.isclose(float(g[0]), (up - down) / (2 * eps), rel_tol=1e-5, abs_tol=1e-10)
    first = li.net[0].weight.grad
    assert first is not None and float(first.abs().max()) > 0


def test_refuses_a_model_trained_for_another_grid_or_reynolds_number():
    li = LearnedInterpolation(32, 1.0 / 500.0)
    with pytest.raises(ValueError, match=r"trained for n=32, nu=0.002 \(Re=1/nu=500\).*n=64"):
        NavierStokes2DFD(n=64, nu=1.0 / 500.0, interpolation=li)
    with pytest.raises(ValueError, match=r"trained for n=32.*Re=1/nu=500.*nu=0.001"):
        NavierStokes2DFD(n=32, nu=1.0 / 1000.0, interpolation=li)
    with pytest.raises(TypeError, match="interpolation must be None or an"):
        NavierStokes2DFD(n=32, nu=1.0 / 500.0, interpolation=torch.nn.Conv2d(1, 1, 3))


def test_refuses_weights_trained_for_another_base_scheme():
    saved = LearnedInterpolation(32, NU, base="centred4").state_dict()
    with pytest.raises(ValueError, match=r"trained for n=32.*base='centred4'.*built for.*base='centred2'"):
        LearnedInterpolation(32, NU, base="centred2").load_state_dict(saved)
    other = LearnedInterpolation(32, NU, base="centred4")
    other.load_state_dict(saved)  # the same build loads


def test_refuses_inconsistent_weights():
    n = 16
    li = _model(n)

    def forward(w, u, v):  # a tampered model: weights no longer sum to one
        wx, wy = LearnedInterpolation.forward(li, w, u, v)
        return wx * 1.1, wy

    li.forward = forward
    s = NavierStokes2DFD(n=n, nu=NU, interpolation=li)
    w0 = _field(n)
    t = torch.linspace(0.0, 0.1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="x-face weights violate the consistency constraint"):
        solve(s, w0, t, method="ssprk3", step_size=0.25 * s.max_step_size(w0))
    bad = _model(n)
    bad.w0[0] += 0.5
    with pytest.raises(ValueError, match="violate the consistency constraint"):
        NavierStokes2DFD(n=n, nu=NU, interpolation=bad)


def test_refuses_a_network_with_non_finite_output_by_name():
    """A NaN in the network's parameters makes every face weight NaN: refused as "not finite"
    (with the count of bad entries), not as a consistency violation, whose moment error would be
    NaN too and say nothing about the cause."""
    n = 16
    li = _model(n)
    with torch.no_grad():
        next(p for p in li.net.parameters() if p.dim() > 1).view(-1)[0] = float("nan")
    s = NavierStokes2DFD(n=n, nu=NU, interpolation=li)
    w0 = _field(n)
    t = torch.linspace(0.0, 0.1, 2, dtype=torch.float64)
    h = 0.25 * s.max_step_size(w0)
    with pytest.raises(NonFiniteSolutionError, match="f itself produced them"):
        solve(s, w0, t, method="ssprk3", step_size=h)  # solve's own check of f comes first
    with pytest.raises(ValueError, match=r"x-face weights are not finite \(\d+ of \d+ entries NaN or inf\)"):
        solve(s, w0, t, method="ssprk3", step_size=h, options={"check_finite": False})
    w = torch.full((1, 4, 8, 8), 0.25, dtype=torch.float64)
    check_weights(w, 4, 1, 0)  # the mean of four cells is exact to degree 0
    w[0, 1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match=r"weights are not finite \(1 of 256 entries"):
        check_weights(w, 4, 1, 0)


def test_refuses_a_degree_the_base_scheme_does_not_reach():
    with pytest.raises(ValueError, match="base='centred2' is exact to degree 1 only"):
        LearnedInterpolation(32, NU, degree=2)


def test_refuses_a_step_above_the_cfl_limit():
    n = 16
    s = NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n))
    w0 = _field(n)
    t = torch.linspace(0.0, 1.0, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="exceeds the CFL limit"):
        solve(s, w0, t, method="ssprk3", step_size=2.0 * s.max_step_size(w0))


def test_config_names_the_interpolation_and_plain_config_is_unchanged():
    assert "interpolation" not in NavierStokes2DFD(n=32).config()["params"]
    cfg = NavierStokes2DFD(n=32, nu=NU, interpolation=_model(32)).config()
    assert "n=32" in cfg["learned_interpolation"] and "interpolation" not in cfg["params"]


@pytest.mark.slow
def test_fit_trains_the_interpolation_by_unrolling_solve():
    n, h = 16, 0.05
    fine = NavierStokes2D(n=32, nu=NU)
    w0 = fine.sample_initial(4, generator=torch.Generator().manual_seed(5), dtype=torch.float32, peak_wavenumber=2.0)
    t = torch.arange(6, dtype=torch.float64) * 0.1
    y = restrict_2d(solve(fine, w0, t, method="etdrk4", step_size=0.025).transpose(0, 1), n)
    data = TrajectoryDataset(t=t, y=y.contiguous(), system=NavierStokes2DFD(n=n, nu=NU).config())
    host = InterpolationHost(LearnedInterpolation(n, NU, hidden=4, layers=2), step_size=h)
    system = host.system()
    assert system.interpolation is host.interpolation
    before = [p.detach().clone() for p in host.interpolation.parameters()]
    fit(host, data, system=system, epochs=2, lr=1e-2, batch_size=8, rollout_schedule=[(0, 1), (1, 2)],
        val_fraction=0.0, patience=None, progress=False, check=False, restore_best=False)
    after = list(host.interpolation.parameters())
    assert any(float((a - b).abs().max()) > 0 for a, b in zip(after, before))  # the CNN was trained
    state = host.interpolation.state_dict()
    again = LearnedInterpolation(n, NU, hidden=4, layers=2)
    again.load_state_dict(state)  # a model built for the same flow loads what fit trained
    with pytest.raises(ValueError, match="trained for n=16"):
        LearnedInterpolation(32, NU, hidden=4, layers=2).load_state_dict(state)


def test_flux_form_zeroed_is_the_base_and_conserves_the_mean():
    n = 16
    w = _field(n) + 0.3
    plain = NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n))
    flux = NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n, form="flux"))
    assert torch.allclose(_advection(flux, w), _advection(plain, w), rtol=0, atol=1e-12)
    active = NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n, scale=0.3, form="flux"))
    adv = _advection(active, w)
    assert float((adv - _advection(plain, w)).abs().max()) > 1e-3  # the learned flux acts
    assert float(adv.sum(dim=(-2, -1)).abs().max()) < 1e-11  # a divergence: zero domain sum
    adv.square().sum().backward()
    assert float(active.interpolation.net[0].weight.grad.abs().max()) > 0


def test_refuses_weights_of_the_other_form():
    saved = LearnedInterpolation(32, NU, form="flux").state_dict()
    with pytest.raises(ValueError, match=r"trained for .*form='flux'"):
        LearnedInterpolation(32, NU).load_state_dict(saved)


# --------------------------------------------------------------------------- weights once per step


def _centred_flux_rhs(s, w):
    """An independent centred (2nd-order) flux-form right-hand side: the plain FD solver's
    operator with the face value the mean of the two cells (no LearnedInterpolation)."""
    u, v = face_velocities(s.streamfunction(w), s.dx)
    fx, fy = u * 0.5 * (w + _roll(w, 1, 0)), v * 0.5 * (w + _roll(w, 0, 1))
    adv = -((fx - _roll(fx, -1, 0)) + (fy - _roll(fy, 0, -1))) / s.dx
    return adv + s.laplacian(w) * s.nu - s.drag * w + s.forcing(w.dtype)


def _ssprk3(rhs, w, h, steps):
    for _ in range(steps):
        k1 = rhs(w, w)
        y1 = w + h * k1
        k2 = rhs(w, y1)
        y2 = w + 0.25 * h * (k1 + k2)
        k3 = rhs(w, y2)
        w = w + h * (k1 + k2 + 4.0 * k3) / 6.0
    return w


def test_fixed_weights_per_step_and_per_stage_agree_with_the_plain_solver_to_round_off():
    n, h, steps = 16, 0.02, 20
    w0 = _field(n)
    t = torch.tensor([0.0, h * steps], dtype=torch.float64)
    plain = NavierStokes2DFD(n=n, nu=NU)
    by_hand = _ssprk3(lambda w_start, w: _centred_flux_rhs(plain, w), w0, h, steps)
    for per in ("stage", "step"):  # an untrained model: the fixed centred weights w0
        s = NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n, weights_per=per))
        got = solve(s, w0, t, method="ssprk3", step_size=h)[-1].detach()
        assert float((got - by_hand).abs().max()) < 1e-12 * float(by_hand.abs().max()) * 100


def test_weights_per_step_are_the_step_starts_weights_in_every_stage():
    """An independent SSP-RK3 that computes the learned weights from the step's initial state and
    reuses them in its three stages: solve with ``weights_per="step"`` is that scheme, to
    round-off; with the weights recomputed per stage it is measurably another scheme."""
    n, h, steps = 16, 0.02, 10
    li = _model(n, scale=0.05, weights_per="step")
    s = NavierStokes2DFD(n=n, nu=NU, interpolation=li)
    w0 = _field(n)

    def rhs(w_start, w):
        wx, wy = li(w_start, *face_velocities(s.streamfunction(w_start), s.dx))
        u, v = face_velocities(s.streamfunction(w), s.dx)
        adv = flux_advection(w, u, v, wx, wy, li.cells, s.dx)
        return adv + s.laplacian(w) * s.nu - s.drag * w + s.forcing(w.dtype)

    with torch.no_grad():
        by_hand = _ssprk3(rhs, w0, h, steps)
        got = solve(s, w0, torch.tensor([0.0, h * steps], dtype=torch.float64), method="ssprk3", step_size=h)[-1]
        per_stage = _ssprk3(lambda w_start, w: rhs(w, w), w0, h, steps)
    scale = float(by_hand.abs().max())
    assert float((got - by_hand).abs().max()) < 1e-12 * scale
    assert float((per_stage - by_hand).abs().max()) > 1e-6 * scale
    for wt in li._stages.weights:  # the reused weights meet the constraint
        check_weights(wt, 4, 1, 1)


def test_weights_per_step_run_the_cnn_once_per_step():
    n, h, steps = 16, 0.02, 12
    calls = []
    li = _model(n, scale=0.05, weights_per="step")
    li.net.register_forward_hook(lambda *a: calls.append(1))
    s = NavierStokes2DFD(n=n, nu=NU, interpolation=li)
    for k in (steps, 2 * steps):
        before = len(calls)
        solve(s, _field(n), torch.tensor([0.0, h * k], dtype=torch.float64), method="ssprk3", step_size=h)
        # one call per step (three per step per stage) plus solve's checks of the initial field
        assert k <= len(calls) - before <= k + 2


@pytest.mark.slow
@pytest.mark.parametrize("scale,expected", [(0.0, 3.0), (0.05, 1.0)])
def test_weights_per_step_convergence_order_in_time(scale, expected):
    """With fixed weights the per-step host is SSP-RK3 (3rd order in time); with state-dependent
    weights freezing them over a step changes them by O(h): first order, converging to the
    per-stage solution as the step falls."""
    n, t_end = 16, 0.24
    w0 = _field(n)[:1]
    t = torch.tensor([0.0, t_end], dtype=torch.float64)
    exact = solve(NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n, scale=scale)), w0, t, method="ssprk3",
                  step_size=t_end / 512)[-1].detach()
    step = NavierStokes2DFD(n=n, nu=NU, interpolation=_model(n, scale=scale, weights_per="step"))
    errs = [float((solve(step, w0, t, method="ssprk3", step_size=t_end / k)[-1].detach() - exact).abs().max())
            for k in (12, 24, 48)]
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(o - expected) < 0.25 for o in orders), (errs, orders)


def test_refuses_weights_trained_per_step_in_a_per_stage_model():
    saved = LearnedInterpolation(32, NU, weights_per="step").state_dict()
    with pytest.raises(ValueError, match=r"trained for .*weights per step.*built for .*weights per stage"):
        LearnedInterpolation(32, NU).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"trained for .*weights per stage.*built for .*weights per step"):
        LearnedInterpolation(32, NU, weights_per="step").load_state_dict(LearnedInterpolation(32, NU).state_dict())
    with pytest.raises(ValueError, match="weights_per must be one of"):
        LearnedInterpolation(32, NU, weights_per="substep")
    li = _model(16, weights_per="step")
    with pytest.raises(ValueError, match="explicit Runge–Kutta method"):
        li.start_solve("kvaerno5", 0.01)


@pytest.mark.parametrize("kw", [{}, {"width": 4, "transverse": 3}, {"width": 6, "transverse": 3, "base": "centred4"}])
def test_learned_advection_is_the_weighted_stencil_sum_computed_by_rolls(kw):
    """An independent reference: ``-div(u omega_face)`` with ``omega_face`` summed cell by cell
    from rolled copies and the model's own weights (the host reads one wrapped copy instead)."""
    n = 16
    li = _model(n, scale=0.2, **kw)
    s = NavierStokes2DFD(n=n, nu=NU, interpolation=li)
    w = _field(n)
    u, v = face_velocities(s.streamfunction(w), s.dx)
    wx, wy = li(w, u, v)
    faces = [torch.zeros_like(w), torch.zeros_like(w)]
    for k, (o, b) in enumerate(li.cells):  # o across the face, b along it
        faces[0] += wx[..., k, :, :] * _roll(w, o, b)
        faces[1] += wy[..., k, :, :] * _roll(w, b, o)
    fx, fy = u * faces[0], v * faces[1]
    expected = -((fx - _roll(fx, -1, 0)) + (fy - _roll(fy, 0, -1))) / s.dx
    assert li.halo == max(max(abs(o), abs(b)) for o, b in li.cells)
    assert torch.allclose(_advection(s, w), expected, rtol=0, atol=1e-11)
    # a wrapped copy handed in by the caller gives the same fluxes; one too narrow is not used
    from attsolver.systems._halo import Halo
    for halo in (Halo(w, li.halo), Halo(w, li.halo + 1), Halo(w, 1)):
        got = flux_advection(w, u, v, wx, wy, li.cells, s.dx, halo)
        assert torch.allclose(got, expected, rtol=0, atol=1e-11)
