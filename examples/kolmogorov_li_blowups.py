"""Blow-ups of the trained learned interpolation by t = 20 on 16 held-out fields (Re = 500).

    PYTHONPATH=. python examples/kolmogorov_li_blowups.py out/li_re500/learned_interpolation.pt

Fields: 16 random fields spun up for 8 time units with the 64^2 spectral solver (seed 14000,
not used in training or scoring), restricted to 32^2.  A run has blown up when a field is not
finite or its rms vorticity exceeds 10x the initial one.
"""

import sys

import torch

from attsolver import solve
from attsolver.systems import LearnedInterpolation, NavierStokes2D, NavierStokes2DFD
from attsolver.systems.grid import restrict_2d

PHYSICS = {"nu": 1.0 / 500.0, "drag": 0.1, "forcing_wavenumber": 4, "forcing_amplitude": 1.0}


def blowups(system, w0, t_end=20.0, dt=0.025):
    t = torch.linspace(0.0, t_end, 21, dtype=torch.float64)
    with torch.no_grad():
        w = solve(system, w0, t, method="ssprk3", step_size=dt)
    rms = w.square().mean(dim=(-2, -1)).sqrt()
    bad = ~torch.isfinite(rms) | (rms > 10 * rms[:1])
    return int(bad.any(dim=0).sum())


def main():
    torch.set_num_threads(1)
    s64 = NavierStokes2D(n=64, **PHYSICS)
    w = s64.sample_initial(16, generator=torch.Generator().manual_seed(14_000))
    w = solve(s64, w, torch.tensor([0.0, 8.0], dtype=torch.float64), method="etdrk4", step_size=0.0125)[-1]
    w0 = restrict_2d(w, 32)
    li = LearnedInterpolation(32, PHYSICS["nu"])
    li.load_state_dict(torch.load(sys.argv[1], weights_only=True))
    print("fd-32 blow-ups of 16 by t=20:", blowups(NavierStokes2DFD(n=32, **PHYSICS), w0))
    print("learned-interp-32 blow-ups of 16 by t=20:",
          blowups(NavierStokes2DFD(n=32, **PHYSICS, interpolation=li), w0))


if __name__ == "__main__":
    main()
