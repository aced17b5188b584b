"""Hostile HDF5 files (issue 26): a seal is a checksum, not a signature — a re-sealed damaged
file is parsed in the time-limited child like any stranger, the reader stays interruptible,
and no file makes the reader allocate more than 16x its size (or 64 MiB)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import attsolver.data.h5 as h5mod
from attsolver.data import TrajectoryDataset, load_h5, save_h5
from attsolver.data.h5 import seal_file

ROOT = Path(__file__).resolve().parents[1]


def _small(path: Path) -> Path:
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    ds = TrajectoryDataset(t=t, y=torch.exp(-t)[None, :, None].expand(2, 11, 3).clone(),
                           system={"name": "decay", "params": {}}, noise_level=0.0, config={})
    return save_h5(ds, path)


def _stranger(path: Path) -> None:
    """Make ``path`` a file this process did not write (as if copied from elsewhere)."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)


def test_sealed_files_are_probed_too(tmp_path, monkeypatch):
    """A sealed file from elsewhere goes through the time-limited child (it used to skip it:
    anyone can recompute the seal); one this process wrote and nobody touched does not."""
    path = _small(tmp_path / "a.h5")
    monkeypatch.setattr(h5mod, "_PROBE", "import time; time.sleep(60)")
    monkeypatch.setattr(h5mod, "_PROBE_TIMEOUT_S", 1.0)
    assert torch.allclose(load_h5(path).y[0, :, 0], torch.exp(-torch.linspace(0, 1, 11, dtype=torch.float64)))
    _stranger(path)
    assert h5mod.check_seal(path)
    started = time.perf_counter()
    with pytest.raises(ValueError, match="did not finish within"):
        load_h5(path)
    assert time.perf_counter() - started < 10


def test_declared_size_beyond_the_file_is_refused(tmp_path):
    """A tiny file whose 'y' declares 8.8 GB (chunks never written) is refused before reading,
    sealed or not."""
    path = tmp_path / "big.h5"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.attrs.update({"schema": h5mod.SCHEMA, "schema_version": 1, "config": "{}",
                        "system": '{"name": "x", "params": {}}', "noise_level": 0.0})
        f["t"] = np.linspace(0, 1, 11)
        f.create_dataset("y", shape=(10**4, 11, 10**4), dtype="f8", chunks=(1, 11, 100))
    seal_file(path)
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match="more than the reader allocates"):
        load_h5(path)


def _flip_and_reseal(src: Path, dst: Path, byte: int, bit: int) -> None:
    data = bytearray(src.read_bytes())
    data[byte] ^= 1 << bit
    dst.write_bytes(bytes(data))
    seal_file(dst)


@pytest.mark.slow
def test_resealed_hostile_file_ends_and_stays_interruptible(tmp_path):
    """The issue's reproducer: a `data generate` output with byte 1577 bit 3 flipped and
    re-sealed hung load_h5 for > 150 s, and `data info` ignored Ctrl-C."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    src = tmp_path / "small.h5"
    subprocess.run([sys.executable, "-m", "attsolver", "data", "generate", "lorenz63", "--n", "2", "--t-final",
                    "1", "--dt", "0.1", "--no-progress", "-o", str(src)], check=True, env=env, capture_output=True)
    bad = tmp_path / "hostile.h5"
    _flip_and_reseal(src, bad, 1577, 3)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "attsolver", "data", "info", str(bad)], env=env,
                          capture_output=True, text=True, timeout=90)
    assert time.perf_counter() - started < 60
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    proc = subprocess.Popen([sys.executable, "-m", "attsolver", "data", "info", str(bad)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(12)  # past the imports (seconds on a loaded machine): into the time-limited child
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode in (130, -signal.SIGINT), err  # ended by the interrupt, well before the 30 s limit
