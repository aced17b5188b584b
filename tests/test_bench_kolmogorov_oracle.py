"""The oracle ingredients of ``benchmarks/kolmogorov_oracle.py`` are what they claim: the
default oracle host is the untrained learned interpolation's host, each replaced ingredient is
exact where it says so, and the bench's ``--li-stencil``/``--li-base`` build what they name."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from _scripts import load_script
from attsolver.systems import LearnedInterpolation, NavierStokes2D, NavierStokes2DFD
from attsolver.systems.grid import prolong_2d, restrict_2d

NU = 1.0 / 500.0


@pytest.fixture
def f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _oracle():
    return load_script("benchmarks/kolmogorov_oracle.py")


def _field(n=32, seed=0):
    return NavierStokes2DFD(n=n, nu=NU).sample_initial(2, generator=torch.Generator().manual_seed(seed))


def test_default_oracle_is_the_untrained_learned_interpolation_host(f64):
    o = _oracle()
    w = _field()
    host = NavierStokes2DFD(n=32, nu=NU, interpolation=LearnedInterpolation(32, NU).double())
    ref = host(torch.tensor(0.0), w)
    assert torch.allclose(o.OracleFD(n=32, nu=NU)(0.0, w), ref, rtol=0, atol=1e-11)
    # the trained-model path with the default ingredients is the model's own host
    li = LearnedInterpolation(32, NU, hidden=4, layers=1).double()
    with torch.no_grad():
        li.net[-1].weight.normal_(0, 0.05)
    a = NavierStokes2DFD(n=32, nu=NU, interpolation=li)(torch.tensor(0.0), w)
    b = o.OracleFD(n=32, nu=NU, interpolation=li)(torch.tensor(0.0), w)
    assert torch.allclose(a, b, rtol=0, atol=1e-11)


def test_galerkin_oracle_is_the_alias_free_truncated_right_hand_side(f64):
    """The product on 48^2 of a 32^2 field is alias-free on its modes |m| < 16: the same as the
    2/3-rule spectral solver at 48^2 (which keeps |m| <= 15) on the prolonged field, restricted."""
    o = _oracle()
    w_hat = torch.fft.rfft2(_field())
    w_hat[..., 16, :] = 0  # no Nyquist modes (the oracle drops them)
    w_hat[..., :, 16] = 0
    w = torch.fft.irfft2(w_hat, s=(32, 32))
    mine = o.OracleFD(n=32, nu=NU, galerkin=48, lap="spectral")(0.0, w)
    theirs = restrict_2d(NavierStokes2D(n=48, nu=NU)(torch.tensor(0.0), prolong_2d(w, 48)), 32)
    assert torch.allclose(mine, theirs, rtol=0, atol=1e-9 * float(theirs.abs().max()))


def test_exact_ingredients_are_exact_on_a_fourier_mode(f64):
    o = _oracle()
    s = o.OracleFD(n=32, nu=NU, corners="spectral", lap="spectral")
    x, y = s.grid()
    f = torch.sin(3 * x) * torch.cos(2 * y)
    d = s.dx / 2
    assert torch.allclose(s._corners(f), torch.sin(3 * (x + d)) * torch.cos(2 * (y + d)), atol=1e-12)
    assert torch.allclose(s._laplacian(f), -13 * f, atol=1e-10)
    # the 4th-order Laplacian and the 4x4 Lagrange corners converge at order 4
    errs = []
    for n in (32, 64):
        q = o.OracleFD(n=n, nu=NU, corners="lagrange16", lap="fd4")
        x, y = q.grid()
        f = torch.sin(3 * x) * torch.cos(2 * y)
        errs.append((float((q._laplacian(f) + 13 * f).abs().max()),
                     float((q._corners(f) - torch.sin(3 * (x + q.dx / 2)) * torch.cos(2 * (y + q.dx / 2))).abs().max())))
    for e0, e1 in zip(*errs):
        assert 3.8 < math.log2(e0 / e1) < 4.2


def test_spectral_poisson_swap_gives_the_exact_streamfunction(f64):
    o = _oracle()
    s = o.OracleFD(n=32, nu=NU, poisson="spectral", corners="spectral")
    x, y = s.grid()
    psi = torch.sin(2 * x) * torch.sin(y)
    w = 5 * psi  # -lap psi
    u, v = s._face_velocities(NavierStokes2DFD(n=32, nu=NU).streamfunction(w), s.dx)
    # the face average of u = psi_y over the x-face (i + 1/2, j): psi at its two corners, differenced
    xc, yc = x + s.dx / 2, y + s.dx / 2
    corner = torch.sin(2 * xc) * torch.sin(yc)
    assert torch.allclose(u, (corner - torch.roll(corner, 1, dims=-2)) / s.dx, atol=1e-10)
    # divergence-free exactly
    div = u - torch.roll(u, 1, dims=-1) + v - torch.roll(v, 1, dims=-2)
    assert float(div.abs().max()) < 1e-12


def test_bench_li_stencil_and_base_build_what_they_name():
    k = load_script("benchmarks/kolmogorov.py")
    a = k.parse_args(["--li-stencil", "4x3", "--li-base", "centred4"])
    st = k.li_stencil(a)
    assert st == {"width": 4, "transverse": 3, "base": "centred4"}
    li = k.build_learned_interpolation(4, 1, "step", **st).interpolation
    assert (li.meta["width"], li.meta["transverse"], li.meta["base"]) == (4, 3, "centred4")
    assert li.free == 12 - 3  # a 4x3 stencil exact to degree 1: 3 constraints
    assert k.li_stencil(k.parse_args([])) == {"width": 4, "transverse": 1, "base": "centred2"}
    with pytest.raises(ValueError, match="--li-stencil must be WxT"):
        k.li_stencil(k.parse_args(["--li-stencil", "4by3"]))


def test_lever_summary_refuses_to_mix_test_sets(tmp_path):
    """Runs judged on other initial conditions are not comparable rows: the fresh-seed run and a
    default-seed run in one table are refused, naming the test seed; the fresh run alone says its seed."""
    summary = load_script("benchmarks/kolmogorov_li_summary.py")
    root = Path(__file__).resolve().parents[1] / "benchmarks/results"
    out = tmp_path / "s.md"
    with pytest.raises(SystemExit, match="test seed"):
        summary.main(["--out", str(out), str(root / "kolmogorov_li_fresh/kolmogorov.json"),
                      str(root / "kolmogorov_li/step_l1/kolmogorov.json")])
    summary.main(["--out", str(out), str(root / "kolmogorov_li_fresh/kolmogorov.json")])
    assert "(test seed 91000)" in out.read_text()


@pytest.mark.parametrize("n", [32, 64])
def test_galerkin_oracle_at_one_and_a_half_times_the_grid_is_spectral_there(f64, n):
    """The Galerkin row of either regime: the product on (3n/2)^2 of an n^2 field (Nyquist modes
    dropped) is the 2/3-rule spectral right-hand side at 3n/2, restricted to n."""
    o = _oracle()
    w_hat = torch.fft.rfft2(_field(n))
    w_hat[..., n // 2, :] = 0
    w_hat[..., :, n // 2] = 0
    w = torch.fft.irfft2(w_hat, s=(n, n))
    opts = {name: opts for name, opts, _ in o.variants(n)}[f"Galerkin: pseudo-spectral, alias-free (product on {3 * n // 2}²), every mode "
                                 f"below {n // 2} kept"]
    mine = o.OracleFD(n=n, nu=NU, **opts)(0.0, w)
    theirs = restrict_2d(NavierStokes2D(n=3 * n // 2, nu=NU)(torch.tensor(0.0), prolong_2d(w, 3 * n // 2)), n)
    assert torch.allclose(mine, theirs, rtol=0, atol=1e-9 * float(theirs.abs().max()))


def test_variant_names_at_32_are_those_of_the_committed_re500_run():
    """The Re = 500 page's rows keep their names now that the variants follow the base grid."""
    import json
    committed = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/kolmogorov_oracle/"
                            "kolmogorov_oracle.json").read_text())["variants"]
    names = [name for name, _, _ in _oracle().variants(32)]
    assert committed == [name for name in names if name in committed] and set(committed) <= set(names)
    at64 = [name for name, _, _ in _oracle().variants(64)]
    assert "arakawa (fd-64)" in at64 and any("product on 96²" in name for name in at64)


def test_the_oracle_refuses_a_malformed_model_stencil_naming_the_option(capsys):
    with pytest.raises(SystemExit):
        _oracle().main(["--model-stencil", "4by3", "--out", "unused"])
    assert "--model-stencil must be WxT" in capsys.readouterr().err


def test_the_oracle_refuses_fewer_than_two_test_initial_conditions(capsys):
    with pytest.raises(SystemExit):
        _oracle().main(["--n-test", "1", "--out", "unused"])
    assert "--n-test must be >= 2" in capsys.readouterr().err
