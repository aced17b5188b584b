"""Checkpoints written by the code before the correctors were recomposed (commit 4a61393) still
load, under their class names, with the same parameter names, records and outputs, bit for bit,
in every evaluation form; and the same seed still builds the same initial weights.

The checkpoints and that code's outputs are in tests/data/correctors_4a61393 (written by its
make_fixtures.py, which says how to re-make them)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from attsolver.correctors import Corrector, get_corrector_class, load_corrector

HERE = Path(__file__).resolve().parent / "data" / "correctors_4a61393"
EXPECTED = torch.load(HERE / "expected.pt", weights_only=True)


def _fixtures():
    spec = importlib.util.spec_from_file_location("corrector_fixtures", HERE / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIXTURES = _fixtures()


@pytest.mark.parametrize("case", sorted(EXPECTED["cases"]))
def test_an_old_checkpoint_loads_and_gives_the_same_outputs(case):
    exp = EXPECTED["cases"][case]
    path = HERE / exp["file"]
    for loaded in (load_corrector(path), get_corrector_class(exp["class"]).load(path), Corrector.load(path)):
        assert type(loaded).__name__ == exp["class"] and not loaded.training
        for flag, value in exp["flags"].items():  # usage flags are not saved
            setattr(loaded, flag, value)
        assert list(loaded.state_dict()) == exp["state_keys"]
        assert FIXTURES.digest(loaded) == exp["digest"]
        assert json.dumps(loaded.trained_for) == exp["trained_for"]  # the same record, in the same order
        assert json.dumps(loaded.config()) == exp["config"]
        x = exp["inputs"]
        out = FIXTURES.outputs(loaded, x["t"], x["y"], x["dy"], x["h"])
        assert sorted(out) == sorted(exp["outputs"])
        for form, value in exp["outputs"].items():
            assert torch.equal(out[form], value), form
        assert torch.equal(loaded.output_scale(x["h"]), exp["output_scale"])


@pytest.mark.parametrize("key", sorted(EXPECTED["fresh"]))
def test_the_same_seed_builds_the_same_initial_weights(key):
    exp = EXPECTED["fresh"][key]
    model = FIXTURES.fresh(exp["name"], exp["seed"], getattr(torch, key.split("/")[1]))
    assert type(model).__name__ == exp["class"]
    assert FIXTURES.digest(model) == exp["digest"]
    assert json.dumps(model.config()) == exp["config"]
