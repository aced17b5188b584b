"""End to end: ``attsolver bench pde`` on its tiny configuration writes pde.json, pde.md and the
plots, and a rerun reuses every finished row."""

from __future__ import annotations

import json


from _scripts import load_script


def _suite():
    return load_script("benchmarks/pde.py")


def test_tiny_pde_benchmark_end_to_end(tmp_path):
    pde = _suite()
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert pde.main(["--tiny", "--out", str(out), "--cache", str(cache)]) == 0
    report = json.loads((out / "pde.json").read_text())
    md = (out / "pde.md").read_text()
    assert {p.name for p in out.glob("*.png")} == {"pde_nrmse_burgers_Nu0.01.png", "pde_spacetime_burgers_Nu0.01.png"}
    rows = report["rows"]
    assert sorted(r["corrector"] for r in rows) == ["AttSolver-conv-add", "AttSolver-conv-mul", "NeurVec-conv"]
    for r in rows:
        assert set(r) >= {"pdebench", "pulses", "stability", "speed", "train_time_s", "params"}
        assert r["pdebench"]["nrmse"] is not None and len(r["pdebench"]["curve"]) == len(r["pdebench"]["curve_t"])
        assert 0 <= r["stability"]["blowup_rate"] <= 1
    ladder = report["ladders"]["burgers_Nu0.01"]["runs"]
    coarse = next(r for r in ladder if r["nx"] == 32 and r["step"] == 0.01)
    finer = next(r for r in ladder if r["nx"] == 128 and r["step"] == 0.0025)
    assert finer["pdebench"]["nrmse"] < coarse["pdebench"]["nrmse"] / 100  # spectral convergence in the grid
    assert {"fine reference", "NeurVec-conv", "32 pts, h=0.01"} <= set(report["times"]["burgers_Nu0.01"])
    assert report["speed_figure"]["speedup"] is not None
    assert set(report["verdicts"]) == {"grid4x", "etdrk4_vs_scipy"}
    assert "## Targets" in md and "attsolver bench pde --out benchmarks/results" in md

    # resumable: the rerun trains nothing and reports the same rows
    lines = (out / pde.PROGRESS).read_text().splitlines()
    assert pde.main(["--tiny", "--out", str(out), "--cache", str(cache), "--no-speed-figure"]) == 0
    assert (out / pde.PROGRESS).read_text().splitlines() == lines
    again = json.loads((out / "pde.json").read_text())
    assert [r["key"] for r in again["rows"]] == [r["key"] for r in rows]
    assert [r["pdebench"]["nrmse"] for r in again["rows"]] == [r["pdebench"]["nrmse"] for r in rows]
    # --replot rewrites the report from pde.json alone
    (out / "pde.md").unlink()
    assert pde.main(["--tiny", "--out", str(out), "--cache", str(cache), "--replot"]) == 0
    assert "## Targets" in (out / "pde.md").read_text()


def test_pde_benchmark_rejects_unknown_problem(tmp_path, capsys):
    pde = _suite()
    assert pde.main(["--tiny", "--problems", "navier_stokes", "--out", str(tmp_path)]) == 2
    assert "unknown problem" in capsys.readouterr().err
