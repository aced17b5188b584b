"""Today's correctors against the code of commit 4a61393, in one process: every evaluation form
of the local correctors gives the same numbers (torch.equal), and LocalNeurVec's eager inference
(no_grad, the folded form) costs the same per call.

    git worktree add /tmp/corr_base 4a61393
    python tests/data/correctors_4a61393/compare_speed.py /tmp/corr_base

The old package is imported as ``attsolver_old`` (a symlink in a temporary folder).  Timing: one
thread; old and new called alternately, call by call, on the same weights and inputs; the
minimum single-call time of each over ``--calls`` calls, in 7 rounds (min and median of the
rounds' ratios reported).  Not a test: a dev check whose result the commit message quotes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _import_old(root: Path):
    tmp = Path(tempfile.mkdtemp())
    (tmp / "attsolver_old").symlink_to(root / "attsolver", target_is_directory=True)
    sys.path.insert(0, str(tmp))
    import attsolver_old  # the old code, beside today's (an optional dev dependency: imported here)

    return attsolver_old


def _pair(old, new, name, system, dtype=torch.float64, seed=0, stats=True, **kw):
    """The old and the new ``name`` with the same weights (and, with ``stats``, random statistics)."""
    g = torch.Generator().manual_seed(seed)
    a = getattr(old.correctors, name).for_system(system, method="rk4", step_size=0.05, dtype=dtype, **kw)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        if stats:
            a.in_mean.normal_(generator=g)
            a.in_std.uniform_(1, 2, generator=g)
            a.out_scale.uniform_(0.5, 1.5, generator=g)
    b = getattr(new.correctors, name).for_system(system, method="rk4", step_size=0.05, dtype=dtype, **kw)
    b.load_state_dict(a.state_dict())
    return a.eval(), b.eval()


def check_forms(old, new, system) -> bool:
    y = system.sample_initial(16, generator=torch.Generator().manual_seed(1))
    dy = 0.01 * torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=y.dtype)
    same = True
    for name in ("LocalNeurVec", "LocalHypersolver", "LocalAttSolver"):
        for dtype, kw in ((torch.float64, {}), (torch.float32, {"mixed_precision": True})):
            a, b = _pair(old, new, name, system, dtype, **kw)
            forms = {"reference": (a(None, y, dy, 0.05), b(None, y, dy, 0.05))}
            with torch.no_grad():
                forms["folded"] = (a(None, y, dy, 0.05), b(None, y, dy, 0.05))
                forms["elementwise"] = (a.pointwise_forward(y, dy, 0.05), b.pointwise_forward(y, dy, 0.05))
            for form, (x, z) in forms.items():
                print(f"{name:16s} {str(dtype)[6:]:8s} {form:11s} equal: {torch.equal(x, z)}")
                same &= torch.equal(x, z)
    return same


def time_inference(old, new, system, calls: int) -> None:
    clock = time.perf_counter
    for batch in (256, 1):
        y = system.sample_initial(batch, generator=torch.Generator().manual_seed(3))
        dy = 0.01 * y
        for label, dtype, kw in (("f64", torch.float64, {}), ("f32 mixed", torch.float32, {"mixed_precision": True})):
            a, b = (m.requires_grad_(False) for m in _pair(old, new, "LocalNeurVec", system, dtype, stats=False, **kw))
            ratios, best_old, best_new = [], float("inf"), float("inf")
            with torch.no_grad():
                for _ in range(7):
                    bo = bn = float("inf")
                    for i in range(calls):
                        first, second = (a, b) if i % 2 else (b, a)
                        t0 = clock()
                        first(None, y, dy, 0.05)
                        t1 = clock()
                        second(None, y, dy, 0.05)
                        t2 = clock()
                        to, tn = (t1 - t0, t2 - t1) if i % 2 else (t2 - t1, t1 - t0)
                        bo, bn = min(bo, to), min(bn, tn)
                    ratios.append(bn / bo)
                    best_old, best_new = min(best_old, bo), min(best_new, bn)
            print(f"LocalNeurVec no_grad, batch {batch:3d} x {system.state_shape[-1]} sites, {label:9s}: "
                  f"old {best_old * 1e6:7.1f} us, new {best_new * 1e6:7.1f} us, new/old {best_new / best_old:.3f} "
                  f"(rounds: median {statistics.median(ratios):.3f}, [{min(ratios):.3f}, {max(ratios):.3f}])")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path, help="a checkout of commit 4a61393")
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(1)
    old = _import_old(args.old)
    import attsolver as new
    from attsolver.systems import Lorenz96

    system = Lorenz96(N=40)
    same = check_forms(old, new, system)
    time_inference(old, new, system, args.calls)
    print("every form equal" if same else "A FORM DIFFERS")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
