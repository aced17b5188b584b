"""Hostile and extreme inputs at the command line (issue 26): budgets refused up front with
progress on (the CLI default), a user's f that raises or exits is the user's error (exit 2),
and an interrupt never ends in exit 0."""

from __future__ import annotations

import os
import signal
import textwrap

import pytest

import attsolver.cli.data as cli_data
from attsolver.cli import main

USER = textwrap.dedent('''
    import sys
    import torch

    def boom(t, y):
        if float(t) > 0.5:
            raise ZeroDivisionError("my bad")
        return -y

    def quit0(t, y):
        if float(t) > 0.5:
            sys.exit(0)
        return -y

    def decay(t, y):
        return -y

    def sample(n, generator):
        return torch.randn(n, 2, generator=generator, dtype=torch.float64)
''')


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "user.py"
    path.write_text(USER)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize("argv", [
    ["solve", "lorenz63", "--t-final", "1000", "--dt", "10", "--step", "1e-7"],
    ["data", "generate", "lorenz63", "--n", "2", "--t-final", "1000", "--dt", "10", "--step-size", "1e-7"],
])
def test_step_budget_refused_with_progress_on(argv, tmp_path, capsys):
    """Progress is on by default; the step-count guard used to be skipped there."""
    code, _, err = run(capsys, *argv, "-o", tmp_path / "x.h5")
    assert code == 2 and "max_steps" in err and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("argv", [
    ["solve", "lorenz63", "--t-final", "1000", "--dt", "1e-6"],
    ["data", "generate", "lorenz63", "--n", "2", "--t-final", "1000", "--dt", "1e-6"],
])
def test_output_count_refused_before_work(argv, tmp_path, capsys):
    """10**9 output times are refused before the grid is allocated, naming the options."""
    code, _, err = run(capsys, *argv, "-o", tmp_path / "x.h5")
    assert code == 2 and "output times" in err and "dt" in err


@pytest.mark.parametrize("fn,what", [("boom", "raised ZeroDivisionError: my bad"), ("quit0", "sys.exit(0)")])
def test_users_f_failing_is_the_users_error(fn, what, user_file, tmp_path, capsys):
    out = tmp_path / "d.h5"
    code, _, err = run(capsys, "data", "generate", "--rhs", f"{user_file}:{fn}", "--init", f"{user_file}:sample",
                       "--n", "2", "--t-final", "2", "--dt", "0.1", "--no-progress", "-o", out)
    assert code == 2, err
    assert "internal error" not in err and what in err and f"{fn}" in err and "t=0.5" in err
    assert not out.exists()


def test_swallowed_interrupt_never_exits_0(user_file, tmp_path, capsys, monkeypatch):
    """A Ctrl-C during the final write that a library's cleanup swallows used to exit 0."""
    real = cli_data.save_h5

    def save_then_interrupted(*a, **k):
        path = real(*a, **k)
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:  # what h5py's cleanup does: "Exception ignored in ..."
            pass
        return path

    monkeypatch.setattr(cli_data, "save_h5", save_then_interrupted)
    code, _, err = run(capsys, "data", "generate", "--rhs", f"{user_file}:decay", "--init", f"{user_file}:sample",
                       "--n", "2", "--t-final", "1", "--dt", "0.1", "--no-progress", "-o", tmp_path / "d.h5")
    assert code == 130 and "interrupted" in err
