"""The README is runnable as written: its benchmark blocks quote the committed results, its
Python snippets run in order (with a shorter training run, see FAST), and its shell commands
form one consistent workflow — each reads the files an earlier one wrote, and the data's
output interval is a whole multiple of the step the corrector is trained and used for."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

#: README text -> what the test runs instead, to keep the default suite short.  Each must
#: occur in the README (so the test cannot silently drift away from what a reader pastes).
FAST_PYTHON = {"epochs=150": "epochs=3",
               'corrector=model, out="lorenz_compare"': 'corrector=model, out="lorenz_compare", rounds=1, '
                                                        'refinements=(1, 2, 4), rk4_refinements=(), dopri_rtols=(1e-4,)'}
FAST_SHELL = {"--n 64": "--n 6", "--n 16": "--n 3", " -o lorenz_model.pt": " --epochs 2 -o lorenz_model.pt",
              "--out lorenz_compare": "--out lorenz_compare --rounds 1 --refinements 1 2 --dopri-rtols 1e-4",
              "--n 128": "--n 6", "--n 32": "--n 3", " -o duffing.pt": " --epochs 2 -o duffing.pt",
              "--out duffing_compare": "--out duffing_compare --rounds 1 --refinements 1 2 --dopri-rtols 1e-4"}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def _commands(subs: dict[str, str] | None = None) -> list[list[str]]:
    """The `attsolver ...` command lines of the README's bash blocks, in order, as argv lists
    (comments after `#` dropped), with ``subs`` applied to the blocks' text."""
    out = []
    for block in _fast("\n".join(_blocks("bash")), subs or {}).split("\n\n"):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("attsolver "):
                out.append(shlex.split(line))
    return out


def _opt(argv: list[str], *names: str, default=None):
    for name in names:
        if name in argv:
            return argv[argv.index(name) + 1]
    return default


def test_readme_benchmark_blocks_match_results():
    mod = load_script("benchmarks/update_readme.py")
    assert mod.render(README) == README, "run `python benchmarks/update_readme.py` after a benchmark"


def test_kolmogorov_verdict_row_reads_the_equal_accuracy_layout():
    """Schema 2 of kolmogorov.json (``equal_accuracy[band][batch][solver][ladder]``): the verdict
    row quotes the full band at batches of 16, the best solver by its worst ladder, its equivalent
    FD grid, and marks a lower bound (censoring) with >=."""
    mod = load_script("benchmarks/update_readme.py")

    def entry(speedup, how="interpolated", n=48.0):
        return {"speedup": speedup, "how": how, "p05": speedup / 2, "p95": speedup * 2, "n": n,
                "halvings": __import__("math").log2(n / 32)}
    rec = {"setup": {"coarse_n": 32, "n_train": 8, "li_train": 16},
           "equal_accuracy": {"full": {"16": {
               "fd-32+cnn": {"fd": entry(0.5), "spectral": entry(0.2)},
               "fd-32+learned-interp": {"fd": entry(3.0, "between", 96.0), "spectral": entry(1.5)}}},
               "k10": {"16": {"fd-32+cnn": {"fd": entry(99.0), "spectral": entry(99.0)}}}}}
    (row,) = mod._kolmogorov_rows(rec)
    assert row == ("| kolmogorov (2-D) | 32² grid | fd-32+learned-interp, 16 traj.; ≈ ≥96² FD (≥1.58 halvings); "
                   "batches of 16 | not re-run: 1.5× [0.75, 3] on the validation data | spectral ladder "
                   "(same method: ≥3× [1.5, 6]) | not confirmed (not re-run on fresh data) |")


@pytest.mark.parametrize("p05, p95, b64_p05, verdict", [
    (1.2, 1.8, 1.5, "**yes**"),
    (0.5, 0.9, 0.8, "no"),
    (0.9, 1.1, 0.95, "not confirmed (the interval contains 1×)"),
    (0.9, 1.1, 1.2, "not confirmed (the interval contains 1×); pays with batches of 64"),
])
def test_kolmogorov_fresh_row_judges_the_strongest_ladder_on_fresh_data(p05, p95, b64_p05, verdict):
    """The fresh Kolmogorov row: the strongest ladder is the one with the smallest speed-up; it pays
    when its 5-95 % interval at batches of 16 lies above 1x, not when below, else not confirmed."""
    mod = load_script("benchmarks/update_readme.py")

    def entry(speedup, lo, hi, n=61.0):
        return {"speedup": speedup, "how": "interpolated", "p05": lo, "p95": hi, "n": n,
                "halvings": __import__("math").log2(n / 32)}
    mid = (p05 + p95) / 2
    fresh = {"setup": {"coarse_n": 32, "li_train": 32, "li_layers": 1, "li_weights_per": "step", "train_seed": 7,
                       "test_seed": 8, "n_test": 16},
             "equal_accuracy": {"full": {
                 "16": {"fd-32+learned-interp": {"fd": entry(9.0, 8.0, 10.0), "spectral": entry(mid, p05, p95)}},
                 "64": {"fd-32+learned-interp": {"fd": entry(9.0, 8.0, 10.0),
                                                 "spectral": entry(b64_p05 + 0.1, b64_p05, b64_p05 + 0.2)}}}}}
    (row,) = mod._kolmogorov_fresh_rows(fresh, None)
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[4].startswith("spectral ladder (fd ladder: 9× [8, 10])")
    assert cells[3].startswith(f"**{mid:.3g}× [{p05:.3g}, {p95:.3g}]** on fresh training data (seed 7) and 16 fresh")
    assert cells[5] == verdict
    assert "≈ 61² FD (0.93 halvings)" in cells[2] and "linear 3×3" in cells[2]

def test_results_page_blocks_match_results():
    """The long tables moved from the README to docs/results.md keep their markers there."""
    mod = load_script("benchmarks/update_readme.py")
    page = mod.RESULTS_PAGE.read_text()
    assert mod.render_results_page(page) == page, "run `python benchmarks/update_readme.py` after a benchmark"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in README and "\nmake test\n" in ci


def _is_multiple(interval: float, step: float) -> bool:
    k = interval / step
    return k >= 1 - 1e-9 and abs(k - round(k)) < 1e-9


def test_readme_shell_commands_form_a_consistent_workflow():
    from attsolver.data import SYSTEM_DEFAULTS

    commands = _commands()
    assert any(c[1:3] == ["data", "generate"] for c in commands) and any(c[1] == "train" for c in commands)
    data: dict[str, tuple[str, float]] = {}     # file -> (system, output interval)
    models: dict[str, tuple[str, str, float]] = {}  # file -> (system, method, step)
    for argv in commands:
        line = shlex.join(argv)
        if argv[1:3] == ["data", "generate"]:
            system = _opt(argv, "--rhs") or argv[3]  # a user's f(t, y) stands for the system
            dt = float(_opt(argv, "--dt", default=SYSTEM_DEFAULTS.get(system, {}).get("dt", "nan")))
            data[_opt(argv, "-o", "--output")] = (system, dt)
        elif argv[1:3] == ["data", "info"]:
            assert argv[3] in data, f"`{line}` reads a file no earlier command wrote"
        elif argv[1] in ("train", "solve", "compare"):
            system = _opt(argv, "--rhs") or argv[2]
            src = _opt(argv, "--data")
            if src is not None:
                assert src in data, f"`{line}` reads {src}, which no earlier command wrote"
                assert data[src][0] == system, f"`{line}`: {src} holds {data[src][0]}, not {system}"
            corrector = _opt(argv, "--corrector")
            if argv[1] == "train":
                step = float(_opt(argv, "--step", default=data[src][1]))
                models[_opt(argv, "-o", "--output")] = (system, _opt(argv, "--method", default="rk4"), step)
            elif corrector is not None:
                assert corrector in models, f"`{line}` loads {corrector}, which no earlier command wrote"
                m_system, m_method, m_step = models[corrector]
                step = float(_opt(argv, "--step", default=m_step))
                assert m_system == system, f"`{line}`: the corrector was trained on {m_system}"
                assert _opt(argv, "--method", default="rk4") == m_method, f"`{line}`: trained for {m_method}"
                assert step == m_step, f"`{line}`: step {step}, but the corrector was trained for {m_step}"
            else:
                continue
            if src is not None:
                assert _is_multiple(data[src][1], step), (
                    f"`{line}`: the data's interval {data[src][1]} is not a multiple of the step {step}")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ATTSOLVER_FAST": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _fast(text: str, subs: dict[str, str]) -> str:
    for old, new in subs.items():
        assert old in text, f"the README no longer contains {old!r}: update FAST_* in this test"
        text = text.replace(old, new)
    return text


def test_readme_python_snippets_run_in_order(tmp_path):
    code = _fast("\n".join(_blocks("python")), FAST_PYTHON)
    assert "torch.no_grad()" in code, "inference snippets run under torch.no_grad()"
    script = tmp_path / "readme_snippets.py"
    script.write_text("import torch\ntorch.set_num_threads(1)\n" + code)
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    errors = {m.group(1): float(m.group(2)) for m in
              re.finditer(r"^(coarse RK4|corrected RK4)\s+relative error at t=1: (\S+)$", r.stdout, re.M)}
    assert set(errors) == {"coarse RK4", "corrected RK4"}, r.stdout
    assert re.search(r"^verdict: .*speed-up at equal accuracy .*\((pays|does not pay|inconclusive)\)", r.stdout, re.M), r.stdout
    assert (tmp_path / "lorenz_compare" / "compare_work_precision.png").exists()


@pytest.mark.slow  # five CLI start-ups and a training run: ~45 s on a loaded 2-core machine
def test_readme_shell_workflow_runs(tmp_path):
    exe = Path(sys.executable).parent / "attsolver"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # the user-rhs commands read examples/*.py
    for argv in _commands(FAST_SHELL):
        if argv[1] in ("train", "data") and argv[1:3] != ["data", "info"]:
            argv.append("--no-progress")
        cmd = [str(exe), *argv[1:]] if exe.exists() else [sys.executable, "-m", "attsolver.cli", *argv[1:]]
        r = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"`{shlex.join(argv)}` failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
