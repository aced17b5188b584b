"""The guidance benchmark's bookkeeping: edit targets, summaries over seeds, the Markdown table."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from _scripts import load_script
from attsolver.evaluate.result import json_safe as finite


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/guidance.py")


def test_every_edit_target_differs_from_the_source_and_covers_the_other_classes(bench):
    g = torch.Generator().manual_seed(0)
    src = {k: torch.randint(0, c, (3000,), generator=g) for k, c in bench.ATTRIBUTES.items()}
    tg = bench.edit_targets(src, g)
    for k, c in bench.ATTRIBUTES.items():
        assert (tg[k] != src[k]).all() and ((tg[k] >= 0) & (tg[k] < c)).all()
        if c == 3:  # both other shapes occur
            for s in range(3):
                others = set(tg[k][src[k] == s].tolist())
                assert others == set(range(3)) - {s}


def _fake_run(seed: int, bench) -> dict:
    gen = {m: {"acc": {a: 0.1 * (seed + 1) for a in bench.ATTRIBUTES}, "acc_mean": 0.1 * (seed + 1),
               "joint": 0.05 * seed, "fd": 10.0 + seed} for m in ("ddpm_unguided", "lcg_scale2", "ddpm_arithmetic")}
    edit = {m: [{"k": k, "edited_acc": 0.5 + 0.1 * seed, "preserved": None if k == 4 else 0.9,
                 "all_intended": 0.4, "latent_dist": 1.0 * k, "image_dist": 0.01 * k} for k in range(1, 5)]
            for m in bench.EDIT_METHODS}
    return {"generation": gen, "editing": edit, "reconstruction_acc": {a: 0.99 for a in bench.ATTRIBUTES}}


def test_summary_is_mean_and_sample_std_over_seeds_and_renders(bench):
    runs = [_fake_run(s, bench) for s in range(3)]
    summary = bench.summarise(runs)
    m, s = summary["generation"]["lcg_scale2"]["fd"]
    assert m == pytest.approx(11.0) and s == pytest.approx(statistics.stdev([10.0, 11.0, 12.0]))
    m, s = summary["editing"]["lcg_preserve"][0]["edited_acc"]
    assert m == pytest.approx(0.6) and s == pytest.approx(0.1)
    assert all(math.isnan(v) for v in summary["editing"]["arithmetic"][3]["preserved"])  # nothing left unedited
    report = {"command": "attsolver bench guidance --quick", "date": "today", "complete": True, "wall_time_s": 60.0,
              "machine": {"cpus": 2, "torch": "x", "python": "3", "torch_threads": 1},
              "config": bench.GUIDE, "sizes": bench.SIZES["quick"], "summary": summary,
              "findings": bench.findings(summary), "runs": runs}
    md = bench.to_markdown(report)
    assert "| lcg_scale2 | 20.0 ± 10.0 |" in md
    assert "| arithmetic | 4 | 60.0 ± 10.0 | — |" in md
    clean = finite(report)  # the benchmark layer's one non-finite policy (was the suite's own _no_nan)
    assert clean["summary"]["editing"]["arithmetic"][3]["preserved"] == [None, None]
