"""Weight-shared local correctors: one network at every site of a lattice.  Locality and
weight sharing checked against an independent per-site evaluation, shift equivariance on a
ring, walls read as zero on a chain, parameter counts independent of the number of sites,
exact pooling of the normalisation, bad input, and a short training that must beat the
classical step."""

from __future__ import annotations

import pytest
import torch

import attsolver
from attsolver.correctors import LocalAttSolver, LocalCorrector, LocalHypersolver, LocalNeurVec, load_corrector
from attsolver.systems import Lattice, Lorenz63, Lorenz96, SpringChain

CLASSES = (LocalNeurVec, LocalHypersolver, LocalAttSolver)


def count(m):
    return sum(p.numel() for p in m.parameters())


def randomize(model: LocalCorrector, seed: int = 0) -> LocalCorrector:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        model.in_mean.copy_(torch.randn(model.in_mean.shape, generator=g, dtype=model.dtype))
        model.in_std.copy_(1 + torch.rand(model.in_std.shape, generator=g, dtype=model.dtype))
        model.out_scale.copy_(0.5 + torch.rand(model.out_scale.shape, generator=g, dtype=model.dtype))
    return model.eval()


def build(cls, system, **kw) -> LocalCorrector:
    return cls.for_system(system, method="rk4", step_size=0.1, dtype=torch.float64, **kw)


def per_site_reference(model: LocalCorrector, y: torch.Tensor, dy: torch.Tensor, h: float) -> torch.Tensor:
    """The correction computed site by site with explicit neighbour indices (an independent path):
    [B, C, n] lattice states -> [B, C, n]."""
    b, c, n = y.shape
    r = model.window // 2
    chans = {"y": y, "dy": dy, "phi": dy / h, "h": torch.full((b, 1, n), h, dtype=y.dtype)}
    u = torch.cat([chans[f] for f in model.features], dim=1)
    out = torch.empty(b, c, n, dtype=y.dtype)
    for i in range(n):
        cols = []
        for j in range(i - r, i + r + 1):
            if model.periodic:
                cols.append(u[:, :, j % n])
            elif 0 <= j < n:
                cols.append(u[:, :, j])
            else:  # beyond a fixed end: the raw value 0
                cols.append(torch.zeros_like(u[:, :, 0]))
        w = torch.stack(cols, dim=1)  # [B, window, C_in]: neighbour by neighbour, its channels together
        w = (w - model.in_mean) / model.in_std
        out[:, :, i] = model.network(w.reshape(b, -1)) * model.out_scale * h ** model.output_order
    return out


# --------------------------------------------------------------------------- geometry


def test_built_in_systems_declare_their_lattice():
    assert Lorenz96.lattice == Lattice(axis=-1, periodic=True, blocks=1)
    assert SpringChain.lattice == Lattice(axis=-1, periodic=False, blocks=2)
    assert Lorenz63.lattice is None
    m = build(LocalNeurVec, SpringChain(n=20))
    assert (m.sites, m.state_channels, m.periodic) == (20, 2, False)
    # the spring chain's (p_1..p_n, q_1..q_n): p is channel 0, q channel 1, site i of each
    assert m.component_channel.tolist() == [0] * 20 + [1] * 20
    m = build(LocalAttSolver, Lorenz96(N=40))
    assert (m.sites, m.state_channels, m.periodic, m.in_channels) == (40, 1, True, 2)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("system", [Lorenz96(N=12), SpringChain(n=9)], ids=["ring", "chain"])
def test_every_site_applies_the_same_network_to_its_window(cls, system):
    model = randomize(build(cls, system))
    y = system.sample_initial(3, generator=torch.Generator().manual_seed(1))
    dy = 0.05 * torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = model(None, y, dy, 0.1)
    c, n = model.state_channels, model.sites
    expected = per_site_reference(model, y.reshape(3, c, n), dy.reshape(3, c, n), 0.1).reshape(3, -1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", CLASSES)
def test_ring_correction_commutes_with_shifts(cls):
    model = randomize(build(cls, Lorenz96(N=16)))
    y = Lorenz96(N=16).sample_initial(4, generator=torch.Generator().manual_seed(3))
    dy = 0.1 * torch.roll(y, 1, -1) - 0.03 * y
    out = model(None, y, dy, 0.1)
    for s in (1, 5, 11):
        torch.testing.assert_close(model(None, torch.roll(y, s, -1), torch.roll(dy, s, -1), 0.1),
                                   torch.roll(out, s, -1), rtol=1e-12, atol=1e-14)


def test_a_site_only_sees_its_window():
    model = randomize(build(LocalNeurVec, SpringChain(n=12), window=5))
    y = SpringChain(n=12).sample_initial(2, generator=torch.Generator().manual_seed(4))
    base = model(None, y, 0 * y, 0.1).reshape(2, 2, 12)
    y2 = y.clone()
    y2[:, 12 + 6] += 1.0  # move mass 6 (q channel)
    diff = (model(None, y2, 0 * y2, 0.1).reshape(2, 2, 12) - base).abs().amax(dim=(0, 1))
    assert bool((diff[4:9] > 0).all()) and bool((diff[:4] == 0).all()) and bool((diff[9:] == 0).all())


@pytest.mark.parametrize("shape,axis", [((3, 10), 1), ((10, 3), 0), ((2, 10, 3), -2)])
def test_any_state_axis_can_be_the_lattice(shape, axis):
    model = randomize(LocalHypersolver(shape, method="euler", step_size=0.1, periodic=True, lattice_axis=axis,
                                       window=3, dtype=torch.float64))
    assert model.sites == 10 and model.state_channels == 30 // 10 * (1 if len(shape) == 2 else 2)
    y = torch.randn(4, *shape, dtype=torch.float64)
    dy = 0.1 * y.square()
    out = model(None, y, dy, 0.1)
    ax = axis % len(shape) + 1
    torch.testing.assert_close(model(None, torch.roll(y, 2, ax), torch.roll(dy, 2, ax), 0.1), torch.roll(out, 2, ax),
                               rtol=1e-12, atol=1e-14)
    # flat states (as fit passes them) give the same numbers
    torch.testing.assert_close(model(None, y.reshape(4, -1), dy.reshape(4, -1), 0.1), out.reshape(4, -1))


# --------------------------------------------------------------------------- size independence


@pytest.mark.parametrize("n", [20, 35])
def test_parameter_counts_do_not_depend_on_the_number_of_sites(n):
    kw = {"method": "euler", "step_size": 0.2}
    ring, chain = Lorenz96(N=n), SpringChain(n=n)
    # LocalNeurVec: window 5 x C -> 8 -> C, plus 7 rational coefficients
    assert count(LocalNeurVec.for_system(ring, **kw)) == 5 * 8 + 8 + 8 + 1 + 7
    assert count(LocalNeurVec.for_system(chain, **kw)) == 10 * 8 + 8 + 8 * 2 + 2 + 7
    # LocalHypersolver: [y, phi, h] channels (2C + 1) x window 5 -> 8 -> C
    assert count(LocalHypersolver.for_system(ring, **kw)) == 15 * 8 + 8 + 8 + 1
    assert count(LocalHypersolver.for_system(chain, **kw)) == 25 * 8 + 8 + 8 * 2 + 2
    # LocalAttSolver: [y, dy] (2C) x 5 -> 8; SE gate 8 -> 2 -> 8; head 8 -> C
    gate = 8 * 2 + 2 + 2 * 8 + 8
    assert count(LocalAttSolver.for_system(ring, **kw)) == 10 * 8 + 8 + gate + 8 + 1
    assert count(LocalAttSolver.for_system(chain, **kw)) == 20 * 8 + 8 + gate + 8 * 2 + 2
    # wider and deeper: still no dependence on the sites
    assert count(LocalAttSolver.for_system(chain, width=16, depth=2, **kw)) == (
        20 * 16 + 16 + 16 * 16 + 16 + (16 * 4 + 4 + 4 * 16 + 16) + 16 * 2 + 2)


def test_other_lattice_size_needs_the_flag():
    system = Lorenz96(N=20)
    model = randomize(build(LocalAttSolver, system))
    big = Lorenz96(N=32)
    y0 = big.sample_initial(2, generator=torch.Generator().manual_seed(5))
    t = torch.linspace(0, 0.3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"lattice size: y0 has 32 sites.*trained on 20.*allow_other_size=True"):
        attsolver.solve(big, y0, t, step_size=0.1, corrector=model)
    model.allow_other_size = True
    sol = attsolver.solve(big, y0, t, step_size=0.1, corrector=model)
    assert sol.shape == (4, 2, 32) and bool(torch.isfinite(sol).all())
    # the flag is a usage flag: a saved and loaded model refuses again
    assert "allow_other_size" not in model.config()


# --------------------------------------------------------------------------- normalisation


def test_fit_statistics_pool_exactly_per_channel():
    system = SpringChain(n=10)
    model = build(LocalHypersolver, system)
    y = system.sample_initial(50, generator=torch.Generator().manual_seed(6)) * torch.linspace(0.5, 2, 20)
    dy = 0.1 * y + 0.3
    h = 0.1
    u = model.compute_features(y, dy, h)  # the per-component layout fit uses
    r = 0.01 * y.square() + 0.001
    model.set_normalization(u.mean(0), u.std(0, correction=0), r.square().mean(0).sqrt())
    lat = {"y": y.reshape(-1, 2, 10), "phi": (dy / h).reshape(-1, 2, 10)}
    for k, (f, c) in enumerate([("y", 0), ("y", 1), ("phi", 0), ("phi", 1)]):
        v = lat[f][:, c]
        torch.testing.assert_close(model.in_mean[k], v.mean(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model.in_std[k], v.std(correction=0), rtol=1e-10, atol=0)
    assert model.in_mean[4] == h and model.in_std[4] == 1.0  # the constant h channel: centred, not scaled
    rl = r.reshape(-1, 2, 10)
    torch.testing.assert_close(model.out_scale, rl.square().mean(dim=(0, 2)).sqrt(), rtol=1e-12, atol=0)
    assert model.output_scale(h).shape == (20,)
    torch.testing.assert_close(model.output_scale(h)[10:], model.out_scale[1].expand(10) * h**model.output_order)


# --------------------------------------------------------------------------- bad input


def test_bad_lattice_settings_get_clear_errors():
    kw = {"method": "rk4", "step_size": 0.1}
    with pytest.raises(ValueError, match=r"lattice_axis=2 does not exist.*axes -2\.\.1"):
        LocalNeurVec((3, 8), periodic=True, lattice_axis=2, **kw)
    with pytest.raises(ValueError, match=r"6 site\(s\), too short for the window of 7; choose window <= 6"):
        LocalNeurVec(6, periodic=True, window=7, **kw)
    with pytest.raises(ValueError, match="window must be odd"):
        LocalNeurVec(8, periodic=True, window=4, **kw)
    with pytest.raises(ValueError, match="not a multiple of blocks=3"):
        LocalNeurVec(8, periodic=False, blocks=3, **kw)
    with pytest.raises(TypeError, match="periodic must be True"):
        LocalNeurVec(8, periodic="yes", **kw)
    with pytest.raises(TypeError, match="periodic"):
        LocalNeurVec(8, **kw)  # the user must say whether the lattice is a ring
    with pytest.raises(ValueError, match=r"periodic=True, but spring_chain's lattice is not periodic"):
        LocalAttSolver.for_system(SpringChain(), periodic=True, **kw)
    with pytest.raises(ValueError, match="lorenz63 declares no lattice"):
        LocalHypersolver.for_system(Lorenz63(), **kw)
    with pytest.raises(ValueError, match=r"blocks=1 contradicts spring_chain's lattice \(blocks=2\)"):
        LocalNeurVec.for_system(SpringChain(), blocks=1, **kw)
    with pytest.raises(ValueError, match="attention_input"):
        LocalAttSolver(8, periodic=True, attention_input="y", **kw)
    model = LocalNeurVec.for_system(Lorenz96(N=8), **kw, dtype=torch.float64)
    model.allow_other_size = True
    short = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="4 site"):
        model.check_compatible(method="rk4", step_sizes=[0.1], y0=short)
    with pytest.raises(ValueError, match="state shape"):
        model.check_compatible(method="rk4", step_sizes=[0.1], y0=torch.zeros(2, 3, 8, dtype=torch.float64)[0, 0:1, :3])


def test_save_load_keeps_the_lattice(tmp_path):
    model = randomize(build(LocalAttSolver, SpringChain(n=10), width=8, combine="mul"))
    path = model.save(tmp_path / "m.pt")
    loaded = load_corrector(path)
    assert type(loaded) is LocalAttSolver and loaded.config() == model.config()
    assert (loaded.periodic, loaded.blocks, loaded.window, loaded.sites) == (False, 2, 5, 10)
    y = SpringChain(n=10).sample_initial(3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(loaded(None, y, 0.1 * y, 0.1), model(None, y, 0.1 * y, 0.1))
    assert loaded.trained_for["periodic"] is False and loaded.trained_for["sites"] == 10


# --------------------------------------------------------------------------- it learns


def test_a_short_training_beats_the_classical_step():
    # Euler on the spring chain: the one-step error (e^{hA} - I - hA) y is linear and banded,
    # a rule the same at every site (up to the walls), which a local corrector can learn
    from attsolver.data import generate_trajectories

    system = SpringChain(n=10)
    h = 0.2
    data = generate_trajectories(system, 8, t_final=4.0, dt=h, method="rk4", step_size=h / 16, seed=0,
                                 progress=False)
    torch.manual_seed(0)
    model = LocalHypersolver.for_system(system, method="euler", step_size=h, dtype=torch.float64)
    attsolver.fit(model, data, epochs=40, lr=5e-3, batch_size=32, val_fraction=0.0, progress=False, seed=0)
    test = generate_trajectories(system, 4, t_final=2.0, dt=h, method="rk4", step_size=h / 16, seed=99,
                                 progress=False)
    y0, y1 = test.y[:, :-1].reshape(-1, 20), test.y[:, 1:].reshape(-1, 20)
    t01 = torch.tensor([0.0, h], dtype=torch.float64)
    with torch.no_grad():
        plain = attsolver.solve(system, y0, t01, method="euler", step_size=h)[-1]
        corrected = attsolver.solve(system, y0, t01, method="euler", step_size=h, corrector=model.eval())[-1]
    err_plain = float((plain - y1).norm())
    err_corr = float((corrected - y1).norm())
    assert err_corr < 0.5 * err_plain, (err_corr, err_plain)


def test_local_correctors_from_the_command_line(tmp_path, capsys):
    """``--corrector *-local`` takes the lattice from the data's system; another lattice size
    needs ``--allow-other-grid``; a system without a lattice is refused with the fix."""
    from attsolver.cli import main

    for name, n, seed in (("c10.h5", 10, 0), ("c14.h5", 14, 1)):
        assert main(["data", "generate", "spring_chain", "--n", "4", "--param", f"n={n}", "--dt", "0.2",
                     "--t-final", "1", "--seed", str(seed), "-o", str(tmp_path / name), "--no-progress"]) == 0
    from attsolver.correctors import get_corrector_class
    from attsolver.correctors import REGISTRY as CORRECTOR_CHOICES

    for corrector in ("neurvec-local", "hypersolver-local", "attsolver-local"):
        assert issubclass(get_corrector_class(CORRECTOR_CHOICES[corrector][0]), LocalCorrector)
    for corrector in ("attsolver-local",):
        model = tmp_path / f"{corrector}.pt"
        assert main(["train", "spring_chain", "--data", str(tmp_path / "c10.h5"), "--method", "euler",
                     "--corrector", corrector, "--epochs", "2", "-o", str(model), "--no-progress"]) == 0
        loaded = load_corrector(model)
        assert isinstance(loaded, LocalCorrector) and (loaded.sites, loaded.periodic) == (10, False)
    capsys.readouterr()
    assert main(["solve", "spring_chain", "--data", str(tmp_path / "c14.h5"), "--method", "euler",
                 "--corrector", str(model)]) == 2
    assert "allow_other_size" in capsys.readouterr().err
    assert main(["solve", "spring_chain", "--data", str(tmp_path / "c14.h5"), "--method", "euler",
                 "--corrector", str(model), "--allow-other-grid"]) == 0
    assert main(["data", "generate", "lorenz63", "--n", "2", "--t-final", "0.2", "-o", str(tmp_path / "l.h5"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "lorenz63", "--data", str(tmp_path / "l.h5"), "--corrector", "neurvec-local",
                 "-o", str(tmp_path / "x.pt")]) == 2
    assert "declares no lattice" in capsys.readouterr().err
    assert main(["train", "spring_chain", "--data", str(tmp_path / "c10.h5"), "--corrector", "neurvec-local",
                 "--param", "periodic=true", "-o", str(tmp_path / "x.pt")]) == 2
    assert "not periodic" in capsys.readouterr().err


def test_mixed_precision_runs_a_float32_network_on_float64_states():
    system = Lorenz96(N=16)
    model = randomize(LocalAttSolver.for_system(system, method="rk4", step_size=0.1, dtype=torch.float32))
    model.requires_grad_(False)
    y0 = system.sample_initial(3, generator=torch.Generator().manual_seed(8))
    t = torch.linspace(0, 0.5, 6, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64.*float32"):
        attsolver.solve(system, y0, t, step_size=0.1, corrector=model)
    model.mixed_precision = True
    mixed = attsolver.solve(system, y0, t, step_size=0.1, corrector=model)
    assert mixed.dtype == torch.float64
    import copy

    exact = attsolver.solve(system, y0, t, step_size=0.1, corrector=copy.deepcopy(model).double())
    plain = attsolver.solve(system, y0, t, step_size=0.1)
    # float32 rounding in the correction only: far below the correction itself
    assert float((mixed - exact).abs().max()) < 1e-4 * float((exact - plain).abs().max())
