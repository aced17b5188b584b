"""``benchmarks/kolmogorov_reference.py``: the reference re-solved on a finer grid from every test
initial condition, cached per chunk and resumed, and every contender scored against both
references, with the scores consistent with how far apart the references are."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _scripts import load_script
from attsolver import solve
from attsolver.data import TrajectoryDataset, load_h5
from attsolver.systems import NavierStokes2D


def _script():
    return load_script("benchmarks/kolmogorov_reference.py")


def _tiny_test_set(ks, cache):
    """A 2-IC, 0.2-unit Re = 500 test set at the regime's 128^2, under the name the suite gives it."""
    k = ks.k
    with k.regime("re500"):
        s = NavierStokes2D(n=k.REF_N, **k.PHYSICS)

        def make():
            w = s.sample_initial(2, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
            t = torch.arange(3, dtype=torch.float64) * 0.1
            y = solve(s, w, t, method="etdrk4", step_size=k.dt_for(k.REF_N)).transpose(0, 1).contiguous()
            return TrajectoryDataset(t=t, y=y, system=s.config(), config={"generator": "test"})

        return k.versioned_h5(cache, "test_re500_f_2_t0.2_f0.1", make, print)


ARGS = ["--regime", "re500", "--n-test", "2", "--t-eval", "0.2", "--finer", "192", "--finest", "256",
        "--finest-t", "0.1", "--chunk", "1", "--fd-ladder", "32", "64", "--spectral-ladder", "32", "--n-boot", "20"]


def test_the_finer_solve_agrees_with_the_reference_and_bounds_the_score_changes(tmp_path, monkeypatch):
    ks = _script()
    test = _tiny_test_set(ks, tmp_path)
    ks.main([*ARGS, "--cache", str(tmp_path), "--out", str(tmp_path / "o")])
    r = json.loads((tmp_path / "o" / "kolmogorov_reference.json").read_text())
    chunks = sorted(tmp_path.glob("finer192_*.h5"))
    assert len(chunks) == 2  # one per initial condition (--chunk 1)
    # spectral convergence: 128^2 and 192^2 of a smooth field agree to far better than FD-32 does
    c = r["checks"]["reference_vs_finer"]["32:full"]
    assert c["min_worst"] > 0.9999
    assert r["checks"]["finer_vs_finest"]["64:full"]["min_worst"] > 0.9999
    fd32_end = r["scores"]["reference"]["fd-32"]["mean_corr"]["full"][-1]
    assert 1 - fd32_end > 10 * (1 - c["end_worst"])
    # the correlation is a cosine: against two references a, b it moves by at most |a/|a| - b/|b||
    a = ks.k.spectral_restrict(test.y.float(), 32)
    b = ks.k.spectral_restrict(torch.cat([load_h5(p).y for p in chunks]).float(), 32)
    dist = (2 - 2 * ks.k.correlation(a, b)).clamp_min(0).sqrt().numpy().mean(0)  # mean over ICs, per frame
    for name in r["scores"]["reference"]:
        ma = np.array(r["scores"]["reference"][name]["mean_corr"]["full"])
        mb = np.array(r["scores"]["finer"][name]["mean_corr"]["full"])
        assert np.all(np.abs(ma - mb) <= dist + 1e-6), name
    # a second run resumes from the cached chunks: no finer solve at all
    monkeypatch.setattr(ks, "finer_solve", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("re-solved")))
    ks.main([*ARGS, "--finest-ic", "0", "--cache", str(tmp_path), "--out", str(tmp_path / "o2")])
    r2 = json.loads((tmp_path / "o2" / "kolmogorov_reference.json").read_text())
    assert r2["checks"]["reference_vs_finer"] == r["checks"]["reference_vs_finer"]
    assert "finer_vs_finest" not in r2["checks"]


def test_a_model_without_its_record_is_refused_naming_the_option(tmp_path, capsys):
    (tmp_path / "li.pt").write_bytes(b"")
    with pytest.raises(SystemExit):
        _script().main(["--model", str(tmp_path / "li.pt"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "--model" in err and "li.json" in err


@pytest.mark.parametrize("bad, says", [(["--n-test", "1"], "--n-test must be >= 2"),
                                       (["--chunk", "0"], "--chunk must be >= 1")])
def test_bad_arguments_are_refused_naming_the_option(tmp_path, capsys, bad, says):
    with pytest.raises(SystemExit):
        _script().main([*bad, "--out", str(tmp_path)])
    assert says in capsys.readouterr().err


def test_the_build_is_read_from_the_record_and_the_stencil_from_the_name(tmp_path):
    ks = _script()
    rec = {"hidden": 8, "layers": 2, "weights_per": "step", "parameters": 1538, "trajectories": 16}
    p = tmp_path / "li_re1000_f_16x2_e20_h8l2_step_s4x3centred2_es4e1r12v8x4.pt"
    p.write_bytes(b"")
    p.with_suffix(".json").write_text(json.dumps(rec))
    b = ks.build_of(p)
    assert (b["hidden"], b["layers"], b["weights_per"]) == (8, 2, "step")
    assert b["stencil"] == {"width": 4, "transverse": 3, "base": "centred2"}
    assert b["parameters"] == 1538
