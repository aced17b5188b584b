"""benchmarks/continual.py: the continual-learning metrics, the task sequences, and a tiny
run end to end (with resume and --render)."""

from __future__ import annotations

import json

import pytest
import torch

from _scripts import load_script


def _load():
    return load_script("benchmarks/continual.py")


def test_average_accuracy_and_forgetting_on_a_hand_computed_matrix():
    """acc[i][j] = accuracy on task j after task i (entries j > i are not used)."""
    acc = [[0.9, 0.0, 0.0],
           [0.6, 0.8, 0.0],
           [0.7, 0.4, 1.0]]
    c = _load()
    assert c.average_accuracy(acc) == pytest.approx([0.9, 0.7, 0.7])
    # after task 2: task 0 best earlier 0.9 -> 0.6 (0.3); after task 3: task 0 max(0.9, 0.6) - 0.7 = 0.2,
    # task 1 max(0.8) - 0.4 = 0.4 -> mean 0.3
    f = c.forgetting(acc)
    assert f[0] is None and f[1:] == pytest.approx([0.3, 0.3])


def test_split_tasks_are_the_class_pairs_and_permuted_tasks_permute_the_same_images():
    c = _load()
    split = c.make_tasks("split", seed=0)
    assert len(split) == 5
    for k, t in enumerate(split):
        assert set(t["train_y"].tolist()) == {2 * k, 2 * k + 1} == set(t["test_y"].tolist())
    assert sum(len(t["train_y"]) for t in split) == 1438 and sum(len(t["test_y"]) for t in split) == 359
    perm = c.make_tasks("permuted", seed=3)
    base = perm[0]["train_x"].sort(dim=1).values
    for t in perm:
        assert torch.equal(t["train_x"].sort(dim=1).values, base)  # a pixel permutation of the same images
        assert torch.equal(t["train_y"], perm[0]["train_y"])
    assert not torch.equal(perm[0]["train_x"], perm[1]["train_x"])
    assert torch.equal(c.make_tasks("permuted", seed=3)[2]["test_x"], perm[2]["test_x"])  # reproducible
    assert not torch.equal(c.make_tasks("permuted", seed=4)[2]["test_x"], perm[2]["test_x"])
    with pytest.raises(ValueError, match="variant must be one of"):
        c.make_tasks("rotated", seed=0)


def test_tiny_run_end_to_end_resumes_and_renders(tmp_path, monkeypatch):
    c = _load()
    tiny = c.default_config(True) | {"epochs": {"split": 1, "permuted": 1}, "flatness_samples": 1,
                                     "flatness_batch": 64, "radii": [0.1]}
    monkeypatch.setattr(c, "default_config", lambda quick: tiny)
    argv = ["--quick", "--seeds", "2", "--out", str(tmp_path)]
    assert c.main(argv) == 0
    report = json.loads((tmp_path / "continual.json").read_text())
    assert report["complete"] and len(report["runs"]) == 2 * 2 * 3
    for run in report["runs"]:
        assert len(run["acc"]) == 5 and all(len(row) == 5 for row in run["acc"])
        assert run["avg_acc"] == pytest.approx(c.average_accuracy(run["acc"]))
        assert set(run["flatness"][0]) == {str(r) for r in tiny["radii"]}
        assert len(run["grad_norm"]) == 5 and all(g > 0 for g in run["grad_norm"])
    row = report["rows"]["permuted/altersgd"]
    assert row["n"] == 2 and set(row["vs_sgd"]) >= {"final_avg_acc", "final_forgetting", "grad_norm"}
    md = (tmp_path / "continual.md").read_text()
    assert "## Headline: after the last task" in md and "| permuted | sam |" in md
    assert (tmp_path / "continual.png").stat().st_size > 1000
    # a second run with the same configuration takes every run from the progress log
    monkeypatch.setattr(c, "run_one", lambda *a, **k: pytest.fail("a finished run was recomputed"))
    assert c.main(argv) == 0
    again = json.loads((tmp_path / "continual.json").read_text())
    assert again["runs"] == report["runs"]
    md = (tmp_path / "continual.md").read_text()
    (tmp_path / "continual.md").unlink()
    assert c.main(["--render", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "continual.md").read_text() == md
