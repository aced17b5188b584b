"""benchmarks/ablation.py: a tiny configuration end to end, and --render."""

from __future__ import annotations

import json


from _scripts import load_script


def _load():
    return load_script("benchmarks/ablation.py")


def test_tiny_ablation_end_to_end_and_render(tmp_path, monkeypatch):
    abl = _load()
    # vision numbers: a stub, so the test does not depend on (or train) the vision benchmark
    monkeypatch.setattr(abl, "vision_numbers", lambda epochs, seeds: {
        "source": "trained here", "date": None, "epochs": 1, "seeds": 1,
        "rows": {"none": {"acc_mean": 90.0, "acc_std": float("nan"), "params": 100, "n": 1},
                 "dia": {"acc_mean": 91.0, "acc_std": float("nan"), "params": 150, "n": 1}}})
    assert abl.main(["--seeds", "1", "--train-steps", "10", "--n-test", "3", "--n-train", "4",
                     "--cases", "lorenz63",
                     "--variants", "none", "dia", "--out", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "ablation.json").read_text())
    assert rep["complete"] and len(rep["runs"]) == 2
    assert {r["variant"] for r in rep["runs"]} == {"none", "dia"}
    assert all(r["err"] == r["err"] and r["failure"] is None for r in rep["runs"])
    md = (tmp_path / "ablation.md").read_text()
    assert "| dia |" in md and "coarse solver" in md and "+50" in md
    (tmp_path / "ablation.md").unlink()
    assert abl.main(["--render", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "ablation.md").read_text() == md
