"""``attsolver bench kolmogorov --regime``: the Re = 500 defaults untouched, Kochkov's Re = 1000
protocol's physics and ladders, the versioned data cache, and a tiny Re = 1000 run end to end."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch

from _scripts import load_script


def _suite():
    return load_script("benchmarks/kolmogorov.py")


def _steps_per_frame(k, frame: float, n: int) -> Fraction:
    """Steps of ``dt_for(n)`` in one output interval, exactly (``dt_for(n) = DT32 * COARSE_N / n``)."""
    return Fraction(str(frame)) / (Fraction(str(k.DT32)) * k.COARSE_N / n)


def test_re500_defaults_are_unchanged():
    """Without ``--regime`` the module constants and the protocol are the Re = 500 ones of the
    committed page (nu = 1/500, 32^2 base, 128^2 reference, spin-up at 64^2, dt = 0.025 at 32^2,
    the fine FD ladder 32..128, 16 test initial conditions, check at 256^2)."""
    k = _suite()
    assert k.PHYSICS == {"nu": 1.0 / 500.0, "drag": 0.1, "forcing_wavenumber": 4, "forcing_amplitude": 1.0}
    assert (k.COARSE_N, k.REF_N, k.SPIN_N, k.DT32, k.LI) == (32, 128, 64, 0.025, "fd-32+learned-interp")
    a = k.parse_args([])
    assert a.regime == "re500" and a.n_test == 16 and a.t_eval == 8.0 and a.frame == a.li_frame == 0.1
    assert a.fd_ladder == [32, 40, 48, 56, 64, 80, 96, 128] and a.spectral_ladder == [32, 40, 48, 56, 64, 80, 96]
    assert (a.check_n, a.check_ic, a.batches, a.rounds) == (256, 4, [1, 16, 64], 5)
    assert not hasattr(a, "cuts")
    assert k.dt_for(64) == 0.0125


def test_re1000_regime_physics_ladders_and_restore():
    """Inside ``regime("re1000")``: Kochkov's flow (nu = 1e-3, forcing wavenumber 4, drag 0.1) on
    a 64^2 base, a 256^2 reference, the FD ladder to 256^2, a 512^2 check; every rung, the
    reference and the check take a whole number of steps per output frame (so every solver lands
    on the frames); the Re = 500 constants come back after the block, even on an error."""
    k = _suite()
    a = k.parse_args(["--regime", "re1000"])
    assert a.regime == "re1000" and a.n_test == 8 and a.kinds == ["li"] and a.t_eval >= 8
    assert a.fd_ladder[0] == 64 and a.fd_ladder[-1] >= 256 and a.check_n >= 512 and a.no_exponax
    assert a.cuts and any("512" in c for c in a.cuts)  # the page states its cuts
    with k.regime("re1000") as r:
        assert k.PHYSICS["nu"] == 1e-3 and k.PHYSICS["drag"] == 0.1 and k.PHYSICS["forcing_wavenumber"] == 4
        assert (k.COARSE_N, k.REF_N, k.LI) == (64, 256, "fd-64+learned-interp") and r["coarse_n"] == 64
        assert k.dt_for(64) == pytest.approx(0.01)
        for n in a.fd_ladder + a.spectral_ladder + [k.REF_N, a.check_n]:
            assert _steps_per_frame(k, a.frame, n).denominator == 1, n
        assert _steps_per_frame(k, a.li_frame, k.COARSE_N).denominator == 1
        assert k.system_for("fd", 64).nu == 1e-3
    assert (k.COARSE_N, k.REF_N, k.PHYSICS["nu"], k.DT32) == (32, 128, 1 / 500, 0.025)
    with pytest.raises(RuntimeError):
        with k.regime("re1000"):
            raise RuntimeError("boom")
    assert k.COARSE_N == 32
    with pytest.raises(ValueError, match="regime='re2000' is unknown"):
        with k.regime("re2000"):
            pass


def test_data_cache_from_another_version_is_rebuilt(tmp_path, monkeypatch):
    """The data cache is keyed by the regime and the data version: another version makes a new
    file, and a file at the key's path holding another key is rebuilt, never loaded as is."""
    k = _suite()
    from attsolver.data import TrajectoryDataset, load_h5, save_h5

    calls = []

    def make():
        calls.append(1)
        return TrajectoryDataset(t=torch.tensor([0.0, 1.0], dtype=torch.float64),
                                 y=torch.full((1, 2, 16, 16), float(len(calls))),
                                 system=k.system_for("spectral", 16).config(), config={})
    log = []
    a = k.versioned_h5(tmp_path, "x", make, log.append)
    b = k.versioned_h5(tmp_path, "x", make, log.append)
    assert len(calls) == 1 and torch.equal(a.y, b.y)  # reused: same version
    (path,) = tmp_path.glob("x_*.h5")
    stale = load_h5(path)
    stale.config["cache_key"] = "another"
    save_h5(stale, path)
    c = k.versioned_h5(tmp_path, "x", make, log.append)
    assert len(calls) == 2 and float(c.y[0, 0, 0, 0]) == 2.0 and "rebuilding" in log[-1]
    monkeypatch.setattr(k, "DATA_VERSION", k.DATA_VERSION + 1)
    k.versioned_h5(tmp_path, "x", make, log.append)
    assert len(calls) == 3 and len(list(tmp_path.glob("x_*.h5"))) == 2
    with k.regime("re1000"):
        k.versioned_h5(tmp_path, "x", make, log.append)
    assert len(calls) == 4


@pytest.mark.slow  # about 15 s alone
def test_tiny_re1000_run_end_to_end(tmp_path):
    """The Re = 1000 protocol runs through (64^2 learned interpolation, FD and spectral ladders,
    reference check, timing) and its page lists the cuts; the Re = 500 constants are back after."""
    k = _suite()
    out = tmp_path / "out"
    assert k.main(["--regime", "re1000", "--tiny", "--li-patience", "1", "--li-checkpoint-steps", "3",
                   "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    r = json.loads((out / "kolmogorov.json").read_text())
    md = (out / "kolmogorov.md").read_text()
    assert r["setup"]["regime"] == "re1000" and r["setup"]["coarse_n"] == 64 and r["setup"]["ref_n"] == 256
    assert r["corrected"] == ["fd-64+learned-interp"] and r["ladders"]["fd"] == ["fd-64", "fd-80"]
    assert "## What was cut for CPU time" in md and "common 64² grid" in md
    e = r["equal_accuracy"]["full"]["1"]["fd-64+learned-interp"]["fd"]
    assert e["n"] >= 64 and e["speedup"] > 0
    assert r["scores"]["fd-80"]["nrmse"]["0.5"] < r["scores"]["fd-64"]["nrmse"]["0.5"]  # finer is closer
    # early stopping at Re = 1000: validation initial conditions of their own seed, generated into the cache
    v = r["training"]["fd-64+learned-interp"]["validation"]
    assert v["seed"] == k.VAL_SEED and v["n"] == 2 and list((tmp_path / "cache").glob("val_li_re1000_t_2_t0.3_*.h5"))
    assert "stopped early on the t95 of 2 validation initial conditions" in md
    assert r["training"]["fd-64+learned-interp"]["checkpoint_steps"] == 3  # fit's recomputed segments
    with pytest.raises(SystemExit):
        k.parse_args(["--regime", "re1000", "--li-checkpoint-steps", "0"])
    assert k.COARSE_N == 32 and k.PHYSICS["nu"] == 1 / 500
