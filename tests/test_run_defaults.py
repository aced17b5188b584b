"""Per-system run defaults live on the system class (System.run_defaults); the data layer,
the command line and SYSTEM_DEFAULTS read them from there."""

from __future__ import annotations

import math

import pytest
import torch

from attsolver.data import SYSTEM_DEFAULTS, generate_trajectories
from attsolver.data.generate import default_method
from attsolver.systems import (
    Burgers, LinearSystem, NavierStokes2D, RunDefaults, System, list_systems, system_class,
)


class _QuickLinear(LinearSystem):
    """The linear system with a small default recipe (spin-up and refine included)."""

    run_defaults = RunDefaults(dt=0.5, t_final=2.0, spin_up=0.5, refine=3)


def test_every_system_declares_a_consistent_recipe():
    assert System.run_defaults == RunDefaults(dt=None, t_final=None, spin_up=0.0, refine=20)
    for name in list_systems():
        d = system_class(name).run_defaults
        assert isinstance(d, RunDefaults)
        assert d.spin_up >= 0 and isinstance(d.refine, int) and d.refine >= 1
        if d.dt is not None:
            steps = d.t_final / d.dt
            assert abs(steps - round(steps)) < 1e-9, name  # t_final is a whole multiple of dt


def test_system_defaults_is_a_view_of_the_classes():
    assert set(SYSTEM_DEFAULTS) == {n for n in list_systems() if system_class(n).run_defaults.dt is not None}
    for name, d in SYSTEM_DEFAULTS.items():
        assert d == system_class(name).run_defaults.as_dict()
    assert SYSTEM_DEFAULTS["burgers"] == {"dt": 0.01, "t_final": 2.0, "spin_up": 0.0, "refine": 10}
    assert "navier_stokes_2d" not in SYSTEM_DEFAULTS  # no default output grid


def test_without_an_output_grid_the_systems_recipe_is_used():
    quick = _QuickLinear()
    by_default = generate_trajectories(quick, 3, seed=5, progress=False)
    explicit = generate_trajectories(quick, 3, t_final=2.0, dt=0.5, spin_up=0.5, refine=3, seed=5, progress=False)
    assert torch.equal(by_default.y, explicit.y) and torch.equal(by_default.t, explicit.t)
    assert by_default.config == explicit.config
    assert by_default.config["spin_up"] == 0.5 and by_default.config["refine"] == 3
    # with the grid given, the other values keep their generic defaults (no spin-up, refine 20)
    given = generate_trajectories(quick, 3, t_final=2.0, dt=0.5, seed=5, progress=False)
    assert given.config["spin_up"] == 0.0 and given.config["refine"] == 20


def test_an_output_grid_that_cannot_be_completed_is_refused():
    with pytest.raises(ValueError, match="both t_final and dt, or neither"):
        generate_trajectories("linear", 2, dt=0.1, progress=False)
    with pytest.raises(ValueError, match="no default output grid"):
        generate_trajectories(NavierStokes2D(n=16), 1, progress=False)
    with pytest.raises(ValueError, match="no default output grid"):
        generate_trajectories(lambda t, y: -y, torch.ones(2, 1, dtype=torch.float64), progress=False)


def test_default_method_is_etdrk4_for_1d_semilinear_pdes_only():
    assert default_method(Burgers(nx=32)) == "etdrk4"
    assert default_method(NavierStokes2D(n=16)) == "rk4"
    assert default_method(LinearSystem()) == "rk4"
    assert default_method(lambda t, y: -y) == "rk4"
    assert math.isclose(Burgers.run_defaults.dt * 200, Burgers.run_defaults.t_final)  # PDEBench's 201 frames
