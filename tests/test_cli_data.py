"""``attsolver data generate`` / ``attsolver data info``."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch

from attsolver.cli import main
from attsolver.data import generate_trajectories, load_h5, read_pdebench


def test_generate_then_info(tmp_path, capsys):
    out = tmp_path / "l63.h5"
    rc = main(["data", "generate", "lorenz63", "--n", "4", "--t-final", "0.5", "--dt", "0.01",
               "--spin-up", "0.5", "--noise", "0.01", "--seed", "3", "--no-progress", "-o", str(out)])
    assert rc == 0
    assert "wrote 4 trajectories of lorenz63" in capsys.readouterr().out

    # the file holds exactly what the library call with the same arguments gives
    ds = load_h5(out)
    ref = generate_trajectories("lorenz63", 4, t_final=0.5, dt=0.01, spin_up=0.5, noise_level=0.01,
                                seed=3, refine=20, progress=False)
    assert torch.equal(ds.y, ref.y) and torch.equal(ds.y_clean, ref.y_clean)
    assert ds.config["seed"] == 3 and ds.config["refine"] == 20 and ds.config["spin_up"] == 0.5

    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    for expected in ("schema 'attsolver.trajectories' version 1", "created by attsolver",
                     "system: lorenz63", '"rho": 28.0', "y [4, 51, 3]", "y_clean [4, 51, 3]",
                     "dtype: float64", "time: 0 .. 0.5 (51 times, step 0.01)", "noise level: 0.01",
                     '"seed": 3', '"method": "rk4"', "per-component statistics"):
        assert expected in text, (expected, text)
    # the statistics lines show the observed data's per-component means
    y = ds.y.numpy().reshape(-1, 3)
    assert f"{y.mean(0)[2]: .6g}".strip() in text


def test_generate_float32_params_and_json_info(tmp_path, capsys):
    out = tmp_path / "l96.h5"
    rc = main(["data", "generate", "lorenz96", "--n", "2", "--param", "N=8", "--param", "F=10",
               "--t-final", "0.2", "--dt", "0.05", "--spin-up", "0", "--float32", "--no-progress",
               "-o", str(out)])
    assert rc == 0
    capsys.readouterr()
    assert main(["data", "info", "--json", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["system"] == {"name": "lorenz96", "params": {"N": 8, "F": 10}}
    assert info["shapes"]["y"] == [2, 5, 8] and info["dtype"] == "float32"
    assert len(info["stats"]["std"]) == 8


def test_per_system_defaults_are_used(tmp_path, capsys):
    out = tmp_path / "lin.h5"
    assert main(["data", "generate", "linear", "--n", "2", "--no-progress", "-o", str(out)]) == 0
    ds = load_h5(out)
    assert ds.config["dt"] == 0.1 and ds.config["t_final"] == 10.0 and ds.n_times == 101


def test_generate_burgers_in_pdebench_layout_and_info(tmp_path, capsys):
    out = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    rc = main(["data", "generate", "burgers", "--n", "2", "--param", "nx=32", "--param", f"nu={0.01 / math.pi!r}",
               "--t-final", "0.05", "--pdebench", "--no-progress", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    with h5py.File(out, "r") as f:
        assert f["tensor"].shape == (2, 6, 32) and f["t-coordinate"].shape == (7,)
    ds = read_pdebench(out)
    assert ds.system["params"]["nu"] == pytest.approx(0.01 / math.pi)
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PDEBench 1-D file" in text and "Nu: 0.01" in text and "nu = 0.0031831" in text
    assert "extra final time" in text


@pytest.mark.parametrize("argv, message", [
    (["data", "info", "{tmp}/missing.h5"], "no such file"),
    (["data", "info", "{tmp}/junk.h5"], "not a readable HDF5 file"),
    (["data", "generate", "no_such_system", "-o", "{tmp}/x.h5"], "unknown system"),
    (["data", "generate", "lorenz63", "--param", "rho", "-o", "{tmp}/x.h5"], "KEY=VALUE"),
    (["data", "generate", "lorenz63", "--param", "gamma=1", "-o", "{tmp}/x.h5"], "no parameter"),
    (["data", "generate", "lorenz63", "--pdebench", "-o", "{tmp}/x.h5"], "not burgers"),
    (["data", "generate", "linear", "--dt", "0.3", "--t-final", "1", "-o", "{tmp}/x.h5"], "multiple of dt"),
    (["data", "generate", "linear", "--noise", "-1", "-o", "{tmp}/x.h5"], "--noise: must be >= 0"),
])
def test_errors_give_exit_code_2_and_a_message(tmp_path, capsys, argv, message):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    captured = capsys.readouterr()
    assert rc == 2
    assert message in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "x.h5").exists()


def test_missing_action_is_an_argparse_error(capsys):
    assert main(["data"]) == 2
    assert "required" in capsys.readouterr().err


def test_info_shows_head_and_tail_of_large_states(tmp_path, capsys):
    out = tmp_path / "l96.h5"
    assert main(["data", "generate", "lorenz96", "--n", "2", "--t-final", "0.1", "--dt", "0.05",
                 "--spin-up", "0", "--no-progress", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(40 components)" in text and "..." in text and "std range" in text
    assert np.isfinite(load_h5(out).y.numpy()).all()
