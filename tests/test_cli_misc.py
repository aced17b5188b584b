"""`attsolver demo`, `methods`, `systems` and `bench` from the command line."""

import re

import attsolver
from attsolver.cli import main
from attsolver.steppers import TABLEAUS


def test_demo_prints_observed_orders_matching_theory(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^(\w+)\s+\S+\s+\S+\s+\S+\s+([\d.]+)\s+(\d)$", out, flags=re.M)
    assert {name for name, _, _ in rows} == set(TABLEAUS)
    for name, observed, theory in rows:
        assert abs(float(observed) - int(theory)) <= 0.2, (name, observed, theory)
    assert "spatial mean conserved" in out


def test_methods_and_systems_list_the_registries(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in attsolver.list_methods())
    assert main(["systems"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in attsolver.systems.list_systems())


def test_bench_unknown_suite_is_an_error_listing_the_suites(capsys):
    assert main(["bench", "no_such_suite"]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'no_such_suite'" in err and "speed" in err

