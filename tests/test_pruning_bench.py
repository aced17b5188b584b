"""benchmarks/pruning.py: a tiny configuration end to end; the summary's statistics and
verdict recomputed from the raw runs."""

from __future__ import annotations

import json
import statistics

import pytest

from _scripts import load_script


def _load():
    return load_script("benchmarks/pruning.py")


@pytest.mark.slow
def test_tiny_pruning_benchmark_end_to_end(tmp_path, monkeypatch):
    bench = _load()
    monkeypatch.setitem(bench.QUICK, "epochs", 1)
    monkeypatch.setitem(bench.QUICK, "finetune_epochs", 1)
    monkeypatch.setitem(bench.QUICK, "population", 3)
    monkeypatch.setitem(bench.QUICK, "generations", 1)
    monkeypatch.setattr(bench, "LATENCY_REPEATS", 2)
    assert bench.main(["--quick", "--seeds", "1", "--targets", "0.4", "--out", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "pruning.json").read_text())
    assert rep["complete"] and (tmp_path / "pruning.md").exists() and (tmp_path / "pruning.png").exists()
    (seed,) = rep["seeds"]
    (target,) = seed["targets"]
    assert target["flops_reduction"] >= 0.4
    assert sum(target["alpha"].values()) == pytest.approx(1.0, abs=1e-5)
    assert set(target["alpha"]) == set(seed["clusters"]["representatives"])
    runs = target["runs"]
    assert set(runs) == set(bench.VARIANTS)
    # local pruning: one architecture for every criterion
    assert len({r["params"] for r in runs.values()}) == 1 and len({r["flops"] for r in runs.values()}) == 1
    assert all(r["params"] < seed["base"]["params"] for r in runs.values())
    row = rep["rows"]["0.4"]
    best = max(bench.SINGLE, key=lambda c: runs[c]["acc_finetuned"])
    assert row["verdict"]["best_single_finetuned"] == best
    assert row["verdict"]["acc_finetuned"]["blend_minus_best_single"] == pytest.approx(
        100 * (runs["blend"]["acc_finetuned"] - runs[best]["acc_finetuned"]))
    md = (tmp_path / "pruning.md").read_text()
    assert "**Verdict:**" in md and "40% fewer FLOPs" in md


def test_summary_mean_std_and_paired_verdict():
    bench = _load()

    def fake_seed(seed, accs):
        runs = {v: {"params": 10, "flops": 20.0, "acc_pruned": 0.1, "acc_recal": a, "heldout_recal": a,
                    "acc_finetuned": a} for v, a in accs.items()}
        return {"seed": seed, "base": {"params": 40, "flops": 80.0},
                "targets": [{"target": 0.5, "ratio": 0.3, "latency_ratio": 0.4 + 0.1 * seed, "runs": runs}]}

    accs0 = {v: 0.80 for v in bench.VARIANTS} | {"l2": 0.85, "blend": 0.90}
    accs1 = {v: 0.70 for v in bench.VARIANTS} | {"l2": 0.80, "blend": 0.84}
    rows = bench.summarise([fake_seed(0, accs0), fake_seed(1, accs1)])
    r = rows["0.5"]
    assert r["variants"]["l2"]["acc_finetuned_mean"] == pytest.approx(82.5)
    assert r["variants"]["l2"]["acc_finetuned_std"] == pytest.approx(statistics.stdev([85.0, 80.0]))
    assert r["variants"]["l2"]["params_ratio"] == pytest.approx(0.25)
    assert r["verdict"]["best_single_finetuned"] == "l2"
    assert r["verdict"]["acc_finetuned"]["blend_minus_best_single"] == pytest.approx(4.5)
    assert r["latency_ratio"] == pytest.approx(0.45) and r["latency_ratio_range"] == pytest.approx([0.4, 0.5])
