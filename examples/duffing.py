"""A user's own ODE for `attsolver`: the forced Duffing oscillator (Ueda/Holmes' chaotic regime)

    x'' + delta x' - x + x^3 = gamma cos(omega t),    y = (x, x').

Used from the command line with ``--rhs examples/duffing.py:rhs --init examples/duffing.py:sample``
(see docs/compare.md).  The forcing makes the system non-autonomous: a corrector for it reads
the forcing's phase through the time features ``cos:1.2`` and ``sin:1.2``.
"""

import torch

DELTA, GAMMA, OMEGA = 0.3, 0.5, 1.2


def rhs(t, y):
    """dy/dt for states y of shape [..., 2] (batch dimensions first), t a 0-d tensor."""
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, -DELTA * v + x - x**3 + GAMMA * torch.cos(OMEGA * t)], dim=-1)


def sample(n, generator):
    """n initial states [n, 2]: positions and velocities of order one."""
    return torch.randn(n, 2, generator=generator, dtype=torch.float64)
