"""Write the corrector checkpoints and expected outputs of tests/test_corrector_checkpoints.py.

Run it once against the code *before* the correctors were recomposed (commit 4a61393)::

    git worktree add /tmp/corr_base 4a61393
    PYTHONPATH=/tmp/corr_base python tests/data/correctors_4a61393/make_fixtures.py

It saves one small checkpoint per corrector configuration (``<case>.pt``, written by that
code's ``Corrector.save``; one ``fit`` checkpoint), and ``expected.pt``: for every case the
inputs and that code's outputs in every evaluation form (with autograd, without, and the
lattice's elementwise form), its ``output_scale``, ``trained_for`` and ``config``; and, for
freshly built correctors with default arguments under a fixed seed, a digest of their
parameters (the same seed must still give the same initial weights).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

import attsolver
from attsolver.correctors import (
    AttSolver, AttSolverConv, Hypersolver, LocalAttSolver, LocalHypersolver, LocalNeurVec, NeurVec, NeurVecConv,
    get_corrector_class, load_corrector,
)
from attsolver.systems import Lorenz96, SpringChain, make_system

HERE = Path(__file__).resolve().parent
F64 = torch.float64

# name -> (class, args, kwargs, input maker); inputs: (t, y, dy) with y's batch dims first
L96, CHAIN = Lorenz96(N=12), SpringChain(n=9)


def _dense(d=3, b=5):
    return lambda g, dt: (None, torch.randn(b, d, generator=g, dtype=dt), 0.05 * torch.randn(b, d, generator=g, dtype=dt))


def _field(shape, b=3):
    return lambda g, dt: (None, torch.randn(b, *shape, generator=g, dtype=dt),
                          0.05 * torch.randn(b, *shape, generator=g, dtype=dt))


def _lattice(system, b=4):
    def make(g, dt):
        y = system.sample_initial(b, generator=g).to(dt)
        return None, y, 0.05 * torch.randn(y.shape, generator=g, dtype=dt)
    return make


def _timed(g, dt):
    y = torch.randn(6, 2, generator=g, dtype=dt)
    return torch.linspace(0.0, 1.0, 6, dtype=dt), y, 0.05 * torch.randn(6, 2, generator=g, dtype=dt)


CASES = {
    "neurvec": (NeurVec, ((3,),), {"width": 16}, _dense()),
    "neurvec_tanh_2d_state": (NeurVec, ((2, 3),), {"width": 8, "activation": "tanh"}, _field((2, 3), b=5)),
    "hypersolver": (Hypersolver, ((3,),), {"hidden": [8, 8], "method": "heun"}, _dense()),
    "attsolver": (AttSolver, ((3,),), {"width": 8}, _dense()),
    "attsolver_mul_gate_on_y": (AttSolver, ((3,),), {"width": 8, "combine": "mul", "attention_input": "y",
                                                      "lipschitz_cap": None}, _dense()),
    "attsolver_features_gate": (AttSolver, ((3,),), {"width": 8, "attention_input": "features",
                                                      "features": ["y", "phi", "h"]}, _dense()),
    "attsolver_dia": (AttSolver, ((3,),), {"width": 8, "depth": 3, "attention": "dia"}, _dense()),
    "attsolver_iebn_residual": (AttSolver, ((3,),), {"width": 8, "attention": "iebn", "residual": True}, _dense()),
    "attsolver_nogate": (AttSolver, ((3,),), {"width": 8, "attention": "none"}, _dense()),
    "attsolver_time_features": (AttSolver, ((2,),), {"width": 8, "features": ["y", "dy", "cos:1.2", "sin:1.2"]},
                                _timed),
    "neurvecconv": (NeurVecConv, ((16,),), {"width": 4, "kernel_size": 3}, _field((16,))),
    "attsolverconv": (AttSolverConv, ((16,),), {"width": 4, "depth": 2, "domain_length": 2.0}, _field((16,))),
    "attsolverconv_2d_tanh": (AttSolverConv, ((8, 8),), {"width": 4, "depth": 2, "kernel_size": 3,
                                                          "activation": "tanh", "head_kernel": 3}, _field((8, 8))),
    "attsolverconv_mul_iebn": (AttSolverConv, ((16,),), {"width": 4, "combine": "mul", "attention": "iebn"},
                               _field((16,))),
    "neurvecconv_2d": (NeurVecConv, ((8, 8),), {"width": 4, "kernel_size": 3}, _field((8, 8))),
    "localneurvec_ring": (LocalNeurVec, (), {"system": L96}, _lattice(L96)),
    "localneurvec_chain_relu": (LocalNeurVec, (), {"system": CHAIN, "activation": "relu", "window": 3},
                                _lattice(CHAIN)),
    "localneurvec_f32_mixed": (LocalNeurVec, (), {"system": Lorenz96(N=40), "dtype": torch.float32,
                                                  "mixed_precision": True}, _lattice(Lorenz96(N=40))),
    "localhypersolver_chain": (LocalHypersolver, (), {"system": CHAIN, "hidden": [6, 5], "window": 3},
                               _lattice(CHAIN)),
    "localhypersolver_axis": (LocalHypersolver, ((2, 10, 3),), {"periodic": False, "lattice_axis": -2, "window": 5},
                              _field((2, 10, 3), b=2)),
    "localattsolver_ring": (LocalAttSolver, (), {"system": L96}, _lattice(L96)),
    "localattsolver_chain_mul": (LocalAttSolver, (), {"system": CHAIN, "combine": "mul", "depth": 2},
                                 _lattice(CHAIN)),
    "localattsolver_gate_on_features": (LocalAttSolver, (), {"system": L96, "attention_input": "features"},
                                        _lattice(L96)),
    "localattsolver_dia": (LocalAttSolver, (), {"system": L96, "attention": "dia", "depth": 2}, _lattice(L96)),
}

#: fresh construction with default arguments: name -> (class, args, kwargs); a system as (name, params)
FRESH = {
    "NeurVec": ("NeurVec", [[3]], {}),
    "Hypersolver": ("Hypersolver", [[40]], {}),
    "AttSolver": ("AttSolver", [[3]], {}),
    "AttSolver-dia": ("AttSolver", [[3]], {"attention": "dia"}),
    "AttSolver-iebn-mul": ("AttSolver", [[3]], {"attention": "iebn", "combine": "mul"}),
    "NeurVecConv": ("NeurVecConv", [[64]], {}),
    "AttSolverConv": ("AttSolverConv", [[64]], {}),
    "AttSolverConv-2d": ("AttSolverConv", [[16, 16]], {}),
    "LocalNeurVec": ("LocalNeurVec", [], {"system": ("lorenz96", {"N": 40})}),
    "LocalHypersolver": ("LocalHypersolver", [], {"system": ("spring_chain", {"n": 10})}),
    "LocalAttSolver": ("LocalAttSolver", [], {"system": ("lorenz96", {"N": 40})}),
    "LocalAttSolver-chain-dia": ("LocalAttSolver", [], {"system": ("spring_chain", {"n": 10}), "attention": "dia"}),
}


def fresh(name: str, seed: int, dtype: torch.dtype):
    """``FRESH[name]`` built under ``torch.manual_seed(seed)`` (also used by the test, with today's code)."""
    cls_name, args, kw = FRESH[name]
    kw = dict(kw)
    if "system" in kw:
        kw["system"] = make_system(kw["system"][0], **kw["system"][1])
    torch.manual_seed(seed)
    return build(get_corrector_class(cls_name), [tuple(a) for a in args], kw, dtype=dtype)


def build(cls, args, kw, dtype=F64):
    kw = {"method": "rk4", "step_size": 0.1, "dtype": dtype, **kw}
    system = kw.pop("system", None)
    return cls.for_system(system, **kw) if system is not None else cls(*args, **kw)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        model.in_mean.copy_(torch.randn(model.in_mean.shape, generator=g, dtype=model.dtype))
        model.in_std.copy_(1 + torch.rand(model.in_std.shape, generator=g, dtype=model.dtype))
        model.out_scale.copy_(0.5 + torch.rand(model.out_scale.shape, generator=g, dtype=model.dtype))
    return model


def digest(model) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(v.dtype).encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def outputs(model, t, y, dy, h):
    out = {"grad": model(t, y, dy, h).detach()}
    with torch.no_grad():
        out["no_grad"] = model(t, y, dy, h)
        if hasattr(model, "pointwise_forward") and model.fusable():
            out["pointwise"] = model.pointwise_forward(y, dy, h)
    return out


def fit_checkpoint(path: Path):
    data = attsolver.generate_trajectories("lorenz63", 4, t_final=1.0, dt=0.1, seed=0, progress=False)
    torch.manual_seed(0)
    model = NeurVec(3, method="rk4", step_size=0.1, width=8)
    attsolver.fit(model, data, epochs=2, batch_size=16, checkpoint=path, overwrite=True, progress=False,
                  check=False)
    return model


def main():
    torch.set_num_threads(1)  # as the tests run (conftest): the spectral caps' power iteration sums in one order
    expected = {"cases": {}, "fresh": {}, "code": "4a61393"}
    for i, (name, (cls, args, kw, make_inputs)) in enumerate(CASES.items()):
        dtype = kw.get("dtype", F64)
        model = randomize(build(cls, args, kw), seed=i).eval()
        model.training_info = {"note": f"fixture {name}", "data": {"n": i}}
        path = model.save(HERE / f"{name}.pt")
        loaded = load_corrector(path)  # the outputs of the loaded model, as a reader sees it
        flags = {k: kw[k] for k in ("mixed_precision",) if k in kw}  # usage flags are not saved
        for k, v in flags.items():
            setattr(loaded, k, v)
        g = torch.Generator().manual_seed(1000 + i)
        t, y, dy = make_inputs(g, F64 if kw.get("mixed_precision") else dtype)
        h = loaded.step_size
        expected["cases"][name] = {
            "file": path.name, "class": cls.__name__, "flags": flags, "inputs": {"t": t, "y": y, "dy": dy, "h": h},
            "outputs": outputs(loaded, t, y, dy, h), "output_scale": loaded.output_scale(h).detach(),
            "trained_for": json.dumps(loaded.trained_for), "config": json.dumps(loaded.config()),
            "state_keys": list(loaded.state_dict()), "digest": digest(loaded),
        }
    model = fit_checkpoint(HERE / "fit_neurvec.pt")
    loaded = load_corrector(HERE / "fit_neurvec.pt")
    y = torch.randn(4, 3, generator=torch.Generator().manual_seed(7))
    expected["cases"]["fit_neurvec"] = {
        "file": "fit_neurvec.pt", "class": "NeurVec", "flags": {}, "inputs": {"t": None, "y": y, "dy": 0.1 * y, "h": 0.1},
        "outputs": outputs(loaded, None, y, 0.1 * y, 0.1), "output_scale": loaded.output_scale(0.1).detach(),
        "trained_for": json.dumps(loaded.trained_for), "config": json.dumps(loaded.config()),
        "state_keys": list(loaded.state_dict()), "digest": digest(loaded),
    }
    for k, name in enumerate(FRESH):
        for dtype in (torch.float32, F64):
            model = fresh(name, k, dtype)
            expected["fresh"][f"{name}/{str(dtype)[6:]}"] = {"name": name, "seed": k, "class": type(model).__name__,
                                                             "digest": digest(model),
                                                             "config": json.dumps(model.config())}
    torch.save(expected, HERE / "expected.pt")
    print(f"wrote {len(CASES) + 1} checkpoints and expected.pt under {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
