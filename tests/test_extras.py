"""The light core install: `import attsolver` and its core parts work with every extra's
dependency missing, and a feature whose extra is missing names the pip install to run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: top-level modules that only the extras provide (kept out of sys.path by the blocker)
BLOCKED = ("torch_pruning", "sklearn", "jax", "jaxlib", "diffrax", "exponax", "torchode",
           "mkdocs", "jupytext", "pytorch_optimizer")

_BLOCKER = textwrap.dedent(f"""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
            return None
    sys.meta_path.insert(0, _Block())
""")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKER + textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                               "PATH": "/usr/bin:/bin"})


def test_core_works_without_any_extra():
    r = _run("""
        import torch
        import attsolver, attsolver.data, attsolver.systems, attsolver.correctors, attsolver.nn
        import attsolver.vision, attsolver.guidance, attsolver.optim, attsolver.pruning, attsolver.cli
        from attsolver.systems import Lorenz63
        s = Lorenz63()
        y0 = s.sample_initial(2, generator=torch.Generator().manual_seed(0))
        t = torch.linspace(0, 0.1, 3, dtype=torch.float64)
        y = attsolver.solve(s, y0, t, method="rk4", step_size=0.01)
        model = attsolver.AttSolver(s.state_shape, method="rk4", step_size=0.05, dtype=torch.float64)
        with torch.no_grad():
            yc = attsolver.solve(s, y0, torch.linspace(0, 0.1, 3, dtype=torch.float64), method="rk4",
                                 step_size=0.05, corrector=model.eval())
        assert torch.equal(attsolver.solve(s, y0, t, method="rk4", step_size=0.05), yc)  # zero-initialised
        attsolver.cli.build_parser().parse_args(["methods"])
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r})
        assert not leaked, leaked
        print("ok")
    """.replace("{blocked!r}", repr(BLOCKED)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def test_missing_extra_names_the_install():
    r = _run("""
        import attsolver.pruning, attsolver.vision, attsolver.guidance
        import torch
        for extra, use in [("pruning", lambda: attsolver.pruning.BlendedImportance),
                           ("vision", lambda: attsolver.vision.load_digits()),
                           ("guidance", lambda: attsolver.guidance.LogisticDirections({"a": 2}).fit(
                               torch.zeros(4, 2), {"a": torch.tensor([0, 1, 0, 1])}))]:
            try:
                use()
            except ImportError as err:
                assert f"pip install 'attsolver[{extra}]'" in str(err), str(err)
            else:
                raise AssertionError(f"{extra}: no ImportError")
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def test_core_dependencies_exclude_the_extras():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in meta["dependencies"]}
    extras = meta["optional-dependencies"]
    for name in ("vision", "pruning", "guidance", "bench", "docs", "all", "dev"):
        assert name in extras, name
    for dist in ("torch-pruning", "scikit-learn", "jax", "diffrax", "exponax", "torchode", "mkdocs"):
        assert dist not in core, dist
    assert isinstance(meta["license"], str)  # SPDX string: no setuptools deprecation warning
