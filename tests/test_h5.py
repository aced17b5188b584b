"""HDF5 I/O: our schema (round trips, atomic writes, helpful errors) and PDEBench's layout."""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np
import pytest
import torch

import attsolver.data.h5 as h5mod
from attsolver.data import (
    SCHEMA, SCHEMA_VERSION, TrajectoryDataset, generate_trajectories, load_h5, read_pdebench, save_h5,
    write_pdebench,
)
from attsolver._io import IntegrityError
from attsolver.data.h5 import seal_file
from attsolver.data.inspect import component_stats, inspect_file


@pytest.fixture(scope="module")
def noisy() -> TrajectoryDataset:
    return generate_trajectories("lorenz63", 3, t_final=0.3, dt=0.01, spin_up=0.1, noise_level=0.01,
                                 seed=4, progress=False)


def _burgers_dataset(n=3, nt=6, nx=16, nu=0.01 / math.pi) -> TrajectoryDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.arange(nx, dtype=torch.float64) / nx
    y = torch.randn(n, nt, nx, generator=g, dtype=torch.float64)
    return TrajectoryDataset(t=torch.arange(nt, dtype=torch.float64) * 0.01, y=y, x=x,
                             system={"name": "burgers", "params": {"nu": nu, "nx": nx, "length": 1.0}},
                             config={"seed": 0})


def _assert_same(a: TrajectoryDataset, b: TrajectoryDataset) -> None:
    assert torch.equal(a.t, b.t) and torch.equal(a.y, b.y)
    assert (a.y_clean is None) == (b.y_clean is None)
    if a.y_clean is not None:
        assert torch.equal(a.y_clean, b.y_clean)
    assert a.system == b.system and a.config == b.config and a.noise_level == b.noise_level


# ------------------------------------------------------------------ our schema


def test_round_trip_float64_is_exact(noisy, tmp_path):
    path = save_h5(noisy, tmp_path / "d.h5")
    back = load_h5(path)
    _assert_same(noisy, back)
    assert back.y.dtype == torch.float64 and back.t.dtype == torch.float64
    pde = _burgers_dataset()
    back = load_h5(save_h5(pde, tmp_path / "pde.h5"))
    assert torch.equal(back.x, pde.x) and torch.equal(back.y, pde.y)


def test_float32_storage_is_within_float32_rounding(noisy, tmp_path):
    back = load_h5(save_h5(noisy, tmp_path / "d32.h5", dtype="float32"))
    assert back.y.dtype == torch.float32 and back.t.dtype == torch.float64
    assert torch.equal(back.t, noisy.t)  # times stay float64
    eps = torch.finfo(torch.float32).eps
    for stored, orig in ((back.y, noisy.y), (back.y_clean, noisy.y_clean)):
        rel = ((stored.double() - orig).abs() / orig.abs().clamp_min(1e-30)).max()
        assert float(rel) <= eps / 2  # round-to-nearest: half an ulp
    assert load_h5(tmp_path / "d32.h5", dtype=torch.float64).y.dtype == torch.float64
    with pytest.raises(ValueError, match="float64 or float32"):
        save_h5(noisy, tmp_path / "x.h5", dtype="float16")


def test_file_records_schema_version_and_config(noisy, tmp_path):
    path = save_h5(noisy, tmp_path / "d.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == SCHEMA == "attsolver.trajectories"
        assert int(f.attrs["schema_version"]) == SCHEMA_VERSION == 1
        assert json.loads(f.attrs["config"]) == noisy.config
        assert json.loads(f.attrs["system"]) == {"name": "lorenz63", "params": noisy.system["params"]}
        assert float(f.attrs["noise_level"]) == 0.01
        assert f.attrs["created_by"].startswith("attsolver ")
        assert set(f.keys()) == {"t", "y", "y_clean"}
    assert noisy.config["seed"] == 4 and noisy.config["attsolver_version"]


def test_atomic_write_keeps_old_file_on_failure(noisy, tmp_path, monkeypatch):
    path = tmp_path / "d.h5"
    old = _burgers_dataset()
    save_h5(old, path)
    before = path.read_bytes()
    calls = []
    real = h5mod._write_array

    def failing(f, name, data):
        calls.append(name)
        if len(calls) == 2:  # after 't' is written, in the middle of the file
            raise RuntimeError("disk on fire")
        real(f, name, data)

    monkeypatch.setattr(h5mod, "_write_array", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_h5(noisy, path)
    assert calls == ["t", "y"]
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["d.h5"]  # no temporary file left behind
    _assert_same(load_h5(path), old)
    monkeypatch.undo()
    save_h5(noisy, path)  # and a successful write replaces it
    _assert_same(load_h5(path), noisy)
    assert sorted(os.listdir(tmp_path)) == ["d.h5"]


def test_write_into_missing_directory_is_a_clear_error(noisy, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_h5(noisy, tmp_path / "nope" / "d.h5")


def test_truncated_file_is_reported_as_corrupt(noisy, tmp_path):
    path = save_h5(noisy, tmp_path / "d.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match=r"damaged: .* bytes where .* were written \(truncated.*regenerate"):
        load_h5(path)


def test_damaged_values_fail_their_checksum(noisy, tmp_path):
    path = save_h5(noisy, tmp_path / "d.h5")
    with h5py.File(path, "r") as f:
        offset = f["y"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 100] ^= 0xFF  # one flipped byte inside y's values
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match the checksum"):
        load_h5(path)  # the file's seal sees it first
    seal_file(path)  # behind a (forged) seal, Fletcher-32 still refuses the chunk
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_h5(path)


def test_garbage_bytes_are_reported_as_not_hdf5(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"this is not an HDF5 file\n" * 40)
    with pytest.raises(ValueError, match="not a readable HDF5 file.*regenerate"):
        load_h5(path)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        load_h5(empty)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_h5(tmp_path / "missing.h5")


def test_foreign_hdf5_file_is_refused(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(ValueError, match="not an attsolver trajectory file") as info:
        load_h5(path)
    assert "read_pdebench" not in str(info.value)
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((1, 2, 16), np.float32)
    with pytest.raises(ValueError, match="not an attsolver trajectory file.*PDEBench.*read_pdebench"):
        load_h5(path)


def test_newer_schema_version_asks_for_an_upgrade(noisy, tmp_path):
    path = save_h5(noisy, tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    seal_file(path)  # edited on purpose: re-seal so the reader's own checks are tested
    with pytest.raises(ValueError, match="schema version 2.*upgrade attsolver"):
        load_h5(path)


def test_missing_or_inconsistent_datasets_are_named(noisy, tmp_path):
    path = save_h5(noisy, tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        del f["y"]
    seal_file(path)  # edited on purpose: re-seal so the reader's own checks are tested
    with pytest.raises(ValueError, match=r"missing dataset\(s\) \['y'\]"):
        load_h5(path)

    path = save_h5(noisy, tmp_path / "e.h5")
    with h5py.File(path, "a") as f:
        del f["y_clean"]
        f["y_clean"] = np.zeros((2, 2, 3))
    seal_file(path)  # edited on purpose: re-seal so the reader's own checks are tested
    with pytest.raises(ValueError, match="'y_clean' has shape"):
        load_h5(path)

    path = save_h5(noisy, tmp_path / "f.h5")
    with h5py.File(path, "a") as f:
        del f["t"]
        f["t"] = np.arange(5.0)
    seal_file(path)  # edited on purpose: re-seal so the reader's own checks are tested
    with pytest.raises(ValueError, match="dataset 't' has shape"):
        load_h5(path)

    path = save_h5(noisy, tmp_path / "g.h5")
    with h5py.File(path, "a") as f:
        del f.attrs["config"]
    seal_file(path)  # edited on purpose: re-seal so the reader's own checks are tested
    with pytest.raises(ValueError, match="attribute.*config"):
        load_h5(path)


def test_inspect_file_summarises_and_matches_numpy(noisy, tmp_path):
    path = save_h5(noisy, tmp_path / "d.h5")
    info = inspect_file(path)
    assert info["format"] == "attsolver" and info["schema_version"] == 1
    assert info["shapes"]["y"] == (3, 31, 3) and info["has_clean"]
    assert info["time"] == {"n": 31, "start": 0.0, "end": pytest.approx(0.3), "step": pytest.approx(0.01)}
    y = noisy.y.numpy().reshape(-1, 3)
    np.testing.assert_allclose(info["stats"]["mean"], y.mean(0), rtol=1e-12)
    np.testing.assert_allclose(info["stats"]["std"], y.std(0), rtol=1e-10)
    np.testing.assert_array_equal(info["stats"]["min"], y.min(0))
    # the chunked (Chan) merge equals the one-pass numbers
    chunked = component_stats(noisy.y.numpy(), chunk=1)
    np.testing.assert_allclose(chunked["std"], y.std(0), rtol=1e-10)


# ------------------------------------------------------------------ PDEBench layout


def _write_pdebench_like(path, *, n=3, nt=5, nx=16, nu=0.001, extra_time=True, x_len=None, t_len=None,
                         nu_attr=True):
    """A tiny file with PDEBench's 1-D Burgers dataset names, dtypes and attribute."""
    rng = np.random.default_rng(0)
    dt = np.float32(0.01)
    n_t = t_len if t_len is not None else nt + (1 if extra_time else 0)
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=rng.standard_normal((n, nt, nx)).astype(np.float32))
        nxx = x_len if x_len is not None else nx
        f.create_dataset("x-coordinate", data=((np.arange(nxx) + 0.5) / nxx).astype(np.float32))
        f.create_dataset("t-coordinate", data=np.arange(n_t, dtype=np.float32) * dt)
        if nu_attr:
            f.attrs["Nu"] = nu
    return path


@pytest.mark.parametrize("extra_time", [True, False])
def test_read_pdebench_shapes_times_and_viscosity(tmp_path, extra_time):
    path = _write_pdebench_like(tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5", extra_time=extra_time)
    ds = read_pdebench(path)
    assert ds.y.shape == (3, 5, 16) and ds.y.dtype == torch.float32
    # t-coordinate with nt+1 values: the last one is dropped; float32 times snap to i * 0.01
    np.testing.assert_array_equal(ds.t.numpy(), np.arange(5) * 0.01)
    # PDEBench solves u_t + (u^2/2)_x = (Nu/pi) u_xx: our nu is the physical coefficient
    assert ds.system["name"] == "burgers"
    assert ds.system["params"]["nu"] == pytest.approx(0.001 / math.pi, rel=1e-15)
    assert ds.system["params"]["nx"] == 16 and ds.system["params"]["length"] == 1.0
    assert ds.config["pdebench_nu"] == 0.001 and ds.config["source"] == "pdebench"
    np.testing.assert_allclose(ds.x.numpy(), (np.arange(16) + 0.5) / 16)
    with h5py.File(path, "r") as f:
        assert torch.equal(ds.y, torch.from_numpy(f["tensor"][()]))
    assert read_pdebench(path, dtype=torch.float64).y.dtype == torch.float64


def test_read_pdebench_sample_selection_and_nu_fallbacks(tmp_path):
    path = _write_pdebench_like(tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5", n=6, nu_attr=False)
    full = read_pdebench(path)  # Nu from the file name
    assert full.config["pdebench_nu"] == 0.01
    assert torch.equal(read_pdebench(path, samples=2).y, full.y[:2])
    assert torch.equal(read_pdebench(path, samples=[4, 1]).y, full.y[[4, 1]])
    assert torch.equal(read_pdebench(path, samples=slice(1, 6, 2)).y, full.y[1:6:2])
    plain = _write_pdebench_like(tmp_path / "burgers.hdf5", nu_attr=False)
    with pytest.raises(ValueError, match="no viscosity found.*pdebench_nu"):
        read_pdebench(plain)
    assert read_pdebench(plain, pdebench_nu=0.1).system["params"]["nu"] == pytest.approx(0.1 / math.pi)


@pytest.mark.parametrize("kw, match", [
    ({"x_len": 15}, "'x-coordinate' has shape"),
    ({"t_len": 7}, "'t-coordinate' has shape"),
    ({"t_len": 4}, "'t-coordinate' has shape"),
])
def test_read_pdebench_mismatched_coordinates_raise(tmp_path, kw, match):
    path = _write_pdebench_like(tmp_path / "bad.hdf5", **kw)
    with pytest.raises(ValueError, match=match):
        read_pdebench(path)


def test_read_pdebench_refuses_other_files(noisy, tmp_path):
    path = tmp_path / "other.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((2, 3, 16), np.float32)
    with pytest.raises(ValueError, match=r"missing PDEBench dataset\(s\) \['x-coordinate', 't-coordinate'\]"):
        read_pdebench(path)
    ours = save_h5(noisy, tmp_path / "ours.h5")
    with pytest.raises(ValueError, match="load_h5"):
        read_pdebench(ours)
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # an HDF5 signature and nothing else
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_pdebench(junk)


def test_write_pdebench_round_trip_and_layout(tmp_path):
    ds = _burgers_dataset(nu=0.001 / math.pi)
    path = write_pdebench(ds, tmp_path / "out.hdf5")
    with h5py.File(path, "r") as f:
        assert set(f.keys()) == {"tensor", "x-coordinate", "t-coordinate"}
        assert f["tensor"].dtype == np.float32 and f["tensor"].shape == (3, 6, 16)
        assert f["t-coordinate"].shape == (7,)  # PDEBench writes one extra time
        assert float(f.attrs["Nu"]) == pytest.approx(0.001)
    back = read_pdebench(path)
    torch.testing.assert_close(back.y, ds.y.float())
    np.testing.assert_array_equal(back.t.numpy(), ds.t.numpy())
    assert back.system["params"]["nu"] == pytest.approx(ds.system["params"]["nu"], rel=1e-12)
    assert back.system["params"]["nx"] == 16
    assert sorted(os.listdir(tmp_path)) == ["out.hdf5"]
    lorenz = TrajectoryDataset(t=torch.arange(3.0), y=torch.zeros(1, 3, 3), system={"name": "lorenz63", "params": {}})
    with pytest.raises(ValueError, match="burgers system only"):
        write_pdebench(lorenz, tmp_path / "l.hdf5")
