"""The guard's right-hand-side probe (integrate/guard_probe.py): the system check for any ``f``.

The domain keeps a few training states and ``f`` there; a guarded solve evaluates its own ``f``
at the same states.  The same system reproduces the values to round-off; another parameter moves
them by exactly what the parameter moves ``f``.
"""

import dataclasses
import math
import os
import tempfile
import warnings

import pytest
import torch

import attsolver
from attsolver.correctors import NeurVec, load_corrector
from attsolver.data import TrajectoryDataset, generate_trajectories
from attsolver.integrate.guard import FALLBACK_SUBSTEPS, OutOfDomainWarning
from attsolver.integrate.guard_probe import PROBE_RTOL, PROBES
from attsolver.systems import Lorenz63
from attsolver.training import record_domain

H = 0.03125  # dyadic: h / 4 and the step grid are exact


def _lorenz(rho):
    """Lorenz-63 as a plain callable (no parameters to compare); ``rho`` a number or ``[B, 1]``."""
    def f(t, y):
        x, v, z = y.unbind(-1)
        r = rho if not torch.is_tensor(rho) else rho[..., 0]
        return torch.stack((10.0 * (v - x), x * (r - z) - v, x * v - 8.0 / 3.0 * z), dim=-1)
    f.autonomous = True  # record_domain steps every drawn state from t = 0 (as for a built-in system)
    return f


@pytest.fixture(scope="module")
def setting():
    data = generate_trajectories(Lorenz63(), 5, t_final=1.0, dt=H, spin_up=2.0, seed=0, progress=False)
    model = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    with torch.no_grad():  # a small nonzero correction
        g = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        model.out_scale.fill_(1e-3)
    # wide margins and no coreset: the feature scores flag nothing here, the probe is what is tested
    record_domain(model, data, f=_lorenz(28.0), distance_margin=1e6, ratio_margin=1e6)
    model.domain = dataclasses.replace(model.domain, coreset=None, knn_threshold=None, _cache={})
    return data, model


def test_the_domain_keeps_probes_from_the_training_states(setting):
    data, model = setting
    d = model.domain
    assert d.probe_y.shape == d.probe_f.shape == (PROBES, 3) and d.probe_y.dtype == torch.float64
    assert d.probe_t == 0.0 and d.probe_rtol == PROBE_RTOL  # Lorenz-63 is autonomous: f at t = 0
    # each probe is an observed training state, its value f there (the built-in system's arithmetic)
    states = data.y[:, :-1].reshape(-1, 3)
    assert all(bool((states == p).all(1).any()) for p in d.probe_y)
    torch.testing.assert_close(d.probe_f, Lorenz63()(torch.tensor(0.0), d.probe_y), rtol=1e-15, atol=1e-12)


def test_the_training_system_passes_at_round_off_and_changes_nothing(setting):
    data, model = setting
    y0, t = data.y[:, 0], data.t[:17]
    for f in (_lorenz(28.0), Lorenz63()):  # a plain callable, and the built-in system without a record
        plain = attsolver.solve(f, y0, t, step_size=H, corrector=model)
        with warnings.catch_warnings():
            warnings.simplefilter("error", OutOfDomainWarning)
            got, st = attsolver.solve(f, y0, t, step_size=H, corrector=model, guard="fallback", return_stats=True)
        assert torch.equal(got, plain)
        assert st.guard.n_flagged == 0 and st.guard.reason is None and st.guard.system is None
        assert st.guard.probe <= 1e-13


def test_another_rho_is_caught_from_step_0_by_its_exact_size(setting):
    """rho -> rho + 7 moves f by (0, 7 x, 0): e = max_p 7 |x_p| / rms_p |f_p|."""
    data, model = setting
    y0, t = data.y[:, 0], data.t[:9]
    with pytest.warns(OutOfDomainWarning, match="not the system the corrector was trained on") as rec:
        _, st = attsolver.solve(_lorenz(35.0), y0, t, step_size=H, corrector=model, guard="warn", return_stats=True)
    assert len(rec) == 1 and "probe_rtol" in str(rec[0].message)
    assert st.guard.reason == "system" and st.guard.n_flagged == 8 * 5 and all(st.guard.flagged)
    d = model.domain
    scale = float(d.probe_f.square().sum(1).mean().sqrt())
    assert st.guard.probe == pytest.approx(float((7.0 * d.probe_y[:, 0].abs()).max()) / scale, rel=1e-12)
    assert st.guard.probe > 100 * PROBE_RTOL


def test_fallback_on_another_rho_is_the_classical_solve_at_h_over_4(setting):
    data, model = setting
    y0, t = data.y[:, 0], data.t[:9]
    f = _lorenz(35.0)
    got, st = attsolver.solve(f, y0, t, step_size=H, corrector=model, guard="fallback", return_stats=True)
    fine = attsolver.solve(f, y0, t, step_size=H / FALLBACK_SUBSTEPS)
    assert torch.equal(got, fine)
    assert st.guard.n_fallbacks == st.guard.n_checked == 8 * 5 and st.guard.reason == "system"


def test_the_tolerance_separates_round_off_from_a_one_percent_shift(setting):
    data, model = setting
    y0, t = data.y[:, 0], data.t[:5]

    def probe(f, m=model):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)
            return attsolver.solve(f, y0, t, step_size=H, corrector=m, guard="warn", return_stats=True)[1].guard

    assert probe(_lorenz(28.0 * (1 + 1e-6))).reason is None  # a value read back from text
    assert probe(_lorenz(28.3)).reason == "system"  # a 1 % change of rho
    loose = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    loose.load_state_dict(model.state_dict())
    loose.domain = model.domain.with_probes(model.domain.probe_y, model.domain.probe_f, 0.0, 0.1)
    got = probe(_lorenz(28.3), loose)
    assert got.reason is None and PROBE_RTOL < got.probe < 0.1


def test_a_float32_solve_of_a_float64_record_passes(setting):
    data, model = setting
    m32 = NeurVec(3, method="rk4", step_size=H, dtype=torch.float32)
    m32.domain = model.domain
    _, st = attsolver.solve(_lorenz(28.0), data.y[:, 0].float(), data.t[:5].float(), step_size=H, corrector=m32,
                            guard="warn", return_stats=True)
    assert st.guard.reason is None and 0 < st.guard.probe < 1e-5


def test_per_sample_parameters_see_probes_tiled_over_the_batch(setting):
    """An f whose parameters broadcast against the solve's batch cannot take the 8 probe states;
    it gets them tiled over its batch (5 here: the first 5 probes; 12: probes 0..7, 0..3) and
    evaluates on a batch of that shape; one shifted sample flags the solve."""
    data, model = setting
    for n in (5, 12):
        y0 = data.y[torch.arange(n) % 5, 0]
        rho = torch.full((n, 1), 28.0, dtype=torch.float64)
        _, st = attsolver.solve(_lorenz(rho), y0, data.t[:5], step_size=H, corrector=model, guard="warn",
                                return_stats=True)
        assert st.guard.reason is None
        rho[n - 1] = 35.0
        with pytest.warns(OutOfDomainWarning):
            _, st = attsolver.solve(_lorenz(rho), y0, data.t[:5], step_size=H, corrector=model, guard="warn",
                                    return_stats=True)
        assert st.guard.reason == "system" and all(st.guard.flagged)


def test_the_probe_costs_one_call_of_f_on_its_8_states_per_solve(setting):
    data, model = setting
    calls, batches = [0], []
    inner = _lorenz(28.0)

    def counted(t, y):
        calls[0] += 1
        batches.append(y.shape[0])
        return inner(t, y)

    y0, t = data.y[:, 0], data.t[:9]
    no_probe = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    no_probe.load_state_dict(model.state_dict())
    no_probe.domain = model.domain.with_probes(None, None)

    def count(**kw):  # the second of two solves: the first runs the checks that later calls remember
        for _ in range(2):
            calls[0] = 0
            attsolver.solve(counted, y0, t, step_size=H, **kw)
        return calls[0]

    plain = count(corrector=model)
    assert plain == 8 * 4
    batches.clear()
    assert count(corrector=model, guard="warn") == plain + 1  # once per solve
    assert batches.count(PROBES) == 2 and set(batches) == {PROBES, 5}  # on the 8 probe states (two solves)
    assert count(corrector=no_probe, guard="warn") == plain


def test_a_time_dependent_f_is_probed_at_one_recorded_time():
    """A forced oscillator: the probes share one observed start time t_p > 0, the forcing's phase
    there matters, and another phase is caught."""
    def forced(phase):
        def f(t, y):
            return torch.stack((y[..., 1], -y[..., 0] + torch.cos(2.0 * t + phase)), dim=-1)
        return f

    h = 0.0625
    t = torch.arange(0, 33, dtype=torch.float64) * h
    y0 = torch.randn(10, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = attsolver.solve(forced(0.0), y0, t, step_size=h / 8).transpose(0, 1)
    data = TrajectoryDataset(t, y, {"name": "forced", "params": {}})
    model = NeurVec(2, method="rk4", step_size=h, dtype=torch.float64)
    record_domain(model, data, f=forced(0.0), distance_margin=1e6, ratio_margin=1e6)
    d = model.domain
    assert d.probe_y.shape == (PROBES, 2) and d.probe_t in set(t[:-1].tolist())
    for phase, flagged in ((0.0, False), (0.5, True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)
            _, st = attsolver.solve(forced(phase), y0, t[:9], step_size=h, corrector=model, guard="warn",
                                    return_stats=True)
        assert (st.guard.reason == "system") is flagged
        assert (st.guard.probe > PROBE_RTOL) is flagged


def test_probes_round_trip_through_a_checkpoint_and_damaged_ones_are_refused(setting):
    _, model = setting
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.pt")
        model.save(path)
        back = load_corrector(path).domain
    assert torch.equal(back.probe_y, model.domain.probe_y) and torch.equal(back.probe_f, model.domain.probe_f)
    assert (back.probe_t, back.probe_rtol) == (model.domain.probe_t, model.domain.probe_rtol)
    d = model.domain.to_dict()
    for key, bad in (("probe_y", d["probe_y"][:, :2]), ("probe_f", d["probe_f"] * math.nan),
                     ("probe_rtol", 0.0), ("probe_t", math.inf)):
        with pytest.raises(ValueError, match=f"{key}.*record_domain"):
            type(model.domain).from_dict({**d, key: bad})
    # a domain recorded before probes existed loads, and the probe does not run
    old = type(model.domain).from_dict({k: v for k, v in d.items() if not k.startswith("probe_")})
    assert old.probe_y is None


def test_record_domain_refuses_a_bad_tolerance_and_none_keeps_no_probes(setting):
    data, _ = setting
    model = NeurVec(3, method="rk4", step_size=H, dtype=torch.float64)
    for bad in (0.0, -1e-3, math.nan, True):
        with pytest.raises(ValueError, match="probe_rtol must be a finite number > 0"):
            record_domain(model, data, f=_lorenz(28.0), probe_rtol=bad)
    assert record_domain(model, data, f=_lorenz(28.0), probe_rtol=None).probe_y is None
