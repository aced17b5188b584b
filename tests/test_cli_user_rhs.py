"""The whole chain for a user's own problems from the command line: a forced Duffing oscillator
(a plain f with a sampler) and Allen–Cahn (a user SemilinearPDE subclass) written to a temporary
.py file; `data generate --rhs`, `train --rhs`, `compare --rhs`; and the bad-input contract
(one line, exit code 2, no traceback, nothing overwritten)."""

from __future__ import annotations

import json
import textwrap

import pytest

from attsolver.cli import main

USER_FILE = textwrap.dedent('''
    import math
    from dataclasses import dataclass

    import torch

    import attsolver


    def duffing(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, -0.3 * v + x - x**3 + 0.5 * torch.cos(1.2 * t)], dim=-1)


    def sample(n, generator):
        return torch.randn(n, 2, generator=generator, dtype=torch.float64)


    def bad_sample(n, generator):
        return torch.randn(n + 1, 2, generator=generator, dtype=torch.float64)


    def wrong_shape(t, y):
        return y[..., :1]


    NOT_CALLABLE = 3


    @dataclass(frozen=True)
    class AllenCahn(attsolver.SemilinearPDE):
        eps: float = 0.01
        nx: int = 32
        length: float = 2 * math.pi
        name = "allen_cahn"

        def __post_init__(self):
            self._validate_grid()

        def _symbol(self, k):
            return 1.0 - self.eps * k**2

        def _make_nonlinear(self, k):
            keep = torch.complex((torch.arange(len(k)) < self.dealias_cutoff).to(k.dtype), torch.zeros_like(k))

            def nonlinear(t, u_hat):
                u = torch.fft.irfft(u_hat * keep, n=self.nx)
                return -torch.fft.rfft(u**3) * keep

            return nonlinear

        def sample_initial(self, n, *, generator=None, dtype=torch.float64, device=None):
            x = self.grid(torch.float64)
            a = torch.randn(n, 3, generator=generator, dtype=torch.float64)
            m = torch.arange(1, 4, dtype=torch.float64)
            u = 0.4 * (a[..., None] * torch.cos(m[None, :, None] * x)).sum(1)
            return u.to(dtype)
''')


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_problems.py"
    path.write_text(USER_FILE)
    return path


def _check_compare_outputs(folder, name, out):
    data = json.loads((folder / f"{name}.json").read_text())
    v = data["verdict"]
    for key in ("speedup_same", "speedup_best", "speedup_same_kind", "speedup_best_kind", "pays", "line",
                "best_classical_reaching", "error_ratio_vs_coarse"):
        assert key in v
    assert isinstance(v["pays"], bool)
    assert v["line"] in out and ("(pays)" in v["line"] or "(does not pay)" in v["line"])
    labels = {e["family"] for e in data["entries"]}
    assert {"same", "dopri5", "corrected"} <= labels
    for e in data["entries"]:
        assert e["time_s"] > 0 and e["time_median_s"] >= e["time_s"]
        assert {"err_q1", "err_q2", "err_full", "vpt", "blowups"} <= set(e)
    for key in ("work_precision_png", "error_vs_time_png"):
        png = folder / data["files"][key].rsplit("/", 1)[-1]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    return data


def test_duffing_end_to_end(user_file, tmp_path, capsys):
    rhs, init = f"{user_file}:duffing", f"{user_file}:sample"
    code, out, _ = run(capsys, "data", "generate", "--rhs", rhs, "--init", init, "--n", 12, "--dt", 0.25,
                       "--t-final", 5, "--no-progress", "-o", tmp_path / "train.h5")
    assert code == 0 and "12 trajectories of my_problems" in out
    code, out, _ = run(capsys, "train", "--rhs", rhs, "--data", tmp_path / "train.h5", "--corrector", "attsolver",
                       "--param", 'features=["y","dy","cos:1.2","sin:1.2"]', "--param", "width=16",
                       "--epochs", 3, "--no-progress", "-o", tmp_path / "duffing.pt")
    assert code == 0 and "validation rollout" in out and "ratio" in out
    code, out, _ = run(capsys, "solve", "--rhs", rhs, "--data", tmp_path / "train.h5", "--step", 0.25,
                       "--method", "rk4", "--corrector", tmp_path / "duffing.pt", "--no-progress")
    assert code == 0 and "in float64" in out and "20 steps, 80 f evaluations, 20 corrector calls" in out
    code, out, err = run(capsys, "compare", "--rhs", rhs, "--init", init, "--corrector", tmp_path / "duffing.pt",
                         "--n", 4, "--t-final", 5, "--dt", 0.25, "--refinements", 1, 2, 4, "--rk4-refinements",
                         "--dopri-rtols", 1e-4, "--lyapunov", "none", "--rounds", 1, "--no-progress",
                         "--out", tmp_path / "cmp", "--name", "duffing")
    assert code == 0, err
    data = _check_compare_outputs(tmp_path / "cmp", "duffing", out)
    assert data["setting"]["match"] == "err_full" and data["setting"]["step_size"] == 0.25
    assert data["setting"]["corrector_trained_for"]["features"] == ["y", "dy", "cos:1.2", "sin:1.2"]


def test_allen_cahn_end_to_end(user_file, tmp_path, capsys):
    rhs = f"{user_file}:AllenCahn"  # a SemilinearPDE subclass: built with its defaults, samples its own states
    code, out, _ = run(capsys, "data", "generate", "--rhs", rhs, "--n", 8, "--dt", 0.25, "--t-final", 3,
                       "--no-progress", "-o", tmp_path / "ac.h5")
    assert code == 0 and "etdrk4" in out  # the spectral stepper is the default for a SemilinearPDE
    code, out, _ = run(capsys, "train", "--rhs", rhs, "--data", tmp_path / "ac.h5", "--method", "etdrk4",
                       "--corrector", "attsolver-conv", "--param", "width=8", "--epochs", 2, "--no-progress",
                       "-o", tmp_path / "ac.pt")
    assert code == 0 and "validation rollout" in out
    code, out, _ = run(capsys, "data", "generate", "--rhs", rhs, "--n", 3, "--dt", 0.25, "--t-final", 2,
                       "--seed", 7, "--no-progress", "-o", tmp_path / "ac_test.h5")
    code, out, err = run(capsys, "compare", "--rhs", rhs, "--data", tmp_path / "ac_test.h5", "--corrector",
                         tmp_path / "ac.pt", "--refinements", 1, 2, "--rk4-refinements", 2, "--dopri-rtols", 1e-4,
                         "--spectral-refinements", 1, 2, "--lyapunov", "none", "--rounds", 1, "--no-progress",
                         "--out", tmp_path / "cmp", "--name", "ac")
    assert code == 0, err
    data = _check_compare_outputs(tmp_path / "cmp", "ac", out)
    assert {"ifrk4", "rk4"} <= {e["family"] for e in data["entries"]}  # the spectral ladder for a PDE


def test_bad_input_one_line_no_traceback_nothing_overwritten(user_file, tmp_path, capsys):
    keep = tmp_path / "keep.h5"
    keep.write_bytes(b"precious")

    def refused(*argv, match):
        code, out, err = run(capsys, *argv)
        assert code == 2, (argv, out, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert match in err, err
        assert keep.read_bytes() == b"precious"

    gen = ("data", "generate", "--dt", 0.25, "--t-final", 1, "--no-progress", "-o", keep)
    refused(*gen, "--rhs", tmp_path / "missing.py:f", match="no file")
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    refused(*gen, "--rhs", f"{tmp_path / 'broken.py'}:f", match="cannot import")
    refused(*gen, "--rhs", f"{user_file}:nothing_here", match="has no 'nothing_here'")
    refused(*gen, "--rhs", f"{user_file}:NOT_CALLABLE", match="not a callable")
    refused(*gen, "--rhs", "no_colon_here", match="MODULE:NAME")
    refused(*gen, "--rhs", f"{user_file}:wrong_shape", "--init", f"{user_file}:sample", match="returned shape")
    refused(*gen, "--rhs", f"{user_file}:duffing", "--init", f"{user_file}:bad_sample", match="--init")
    refused(*gen, "--rhs", f"{user_file}:duffing", match="--init")

    # compare: a corrector for another step, and a test set shorter than one coarse step
    rhs, init = f"{user_file}:duffing", f"{user_file}:sample"
    assert run(capsys, "data", "generate", "--rhs", rhs, "--init", init, "--n", 4, "--dt", 0.25, "--t-final", 1,
               "--no-progress", "-o", tmp_path / "d.h5")[0] == 0
    assert run(capsys, "train", "--rhs", rhs, "--data", tmp_path / "d.h5", "--corrector", "neurvec", "--param",
               "width=8", "--epochs", 1, "--val-fraction", 0, "--no-check", "--no-progress",
               "-o", tmp_path / "m.pt")[0] == 0
    cmp = ("compare", "--rhs", rhs, "--init", init, "--corrector", tmp_path / "m.pt", "--n", 2, "--no-progress",
           "--out", tmp_path / "cmp")
    refused(*cmp, "--step", 0.1, "--t-final", 1, "--dt", 0.25, match="trained for step_size=0.25")
    refused(*cmp, "--t-final", 0.1, "--dt", 0.1, match="shorter than one coarse step")
    assert not (tmp_path / "cmp").exists() or not any((tmp_path / "cmp").iterdir())


@pytest.mark.slow
def test_bench_ode_takes_a_user_rhs(user_file, tmp_path, capsys):
    """`attsolver bench ode --rhs` runs the ode suite on the user's system: the classical sweep
    and a trained row with the same speed-up columns as the built-in cases."""
    code, out, err = run(capsys, "bench", "ode", "--rhs", f"{user_file}:duffing", "--init", f"{user_file}:sample",
                         "--step", 0.25, "--t-test", 2, "--sizes", 4, "--noise", 0, "--seeds", 1, "--correctors",
                         "NeurVec", "--train-steps", 10, "--n-test", 3, "--rounds", 1, "--no-plots",
                         "--out", tmp_path / "bench")
    assert code == 0, err
    report = json.loads((tmp_path / "bench" / "ode.json").read_text())
    assert report["grid"]["cases"] == ["user"]
    (row,) = report["rows"]
    assert {"speedup_same", "speedup_best", "err_match"} <= set(row) and row["case"] == "user"
