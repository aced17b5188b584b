"""Butcher tableaus: structure, the classical order conditions, and the step they define.

An explicit Runge–Kutta method ``(A, b, c)`` has order ``p`` iff for every rooted tree
``tau`` with at most ``p`` nodes ``b . Phi(tau) = 1 / gamma(tau)`` (Butcher), where the
stage vector ``Phi`` of a tree with children ``tau_1..tau_m`` is the elementwise product
of ``A Phi(tau_k)`` (``Phi(single node) = 1``) and ``gamma(tau) = |tau| prod gamma(tau_k)``.
Up to order four these are the eight conditions written out by hand below; the generic
tree machinery is checked against them and then used for order five, to show that the
declared order is exact (some order-``p+1`` condition fails).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch

import attsolver
from attsolver.steppers import TABLEAUS, ButcherTableau, ExplicitRK
from attsolver.steppers.registry import FIXED_OPTIONS, MethodSpec, _REGISTRY

TOL = 1e-14

# Two valid second-order tableaus with nodes outside [0, 1): c2 = 2 and c2 = -1 (the
# one-parameter family b2 c2 = 1/2, b1 = 1 - b2).  Nothing registered uses such nodes, but
# a tableau is valid with them, so the stage-time machinery must handle them.
UNUSUAL_NODES = {
    "test_c2_is_two": ButcherTableau("test_c2_is_two", a=((), (2.0,)), b=(0.75, 0.25), c=(0.0, 2.0), order=2),
    "test_c2_negative": ButcherTableau("test_c2_negative", a=((), (-1.0,)), b=(1.5, -0.5), c=(0.0, -1.0), order=2),
}


# --------------------------------------------------------------------------- rooted trees
# A tree is the sorted tuple of its children; the single node is ().


def _partitions(n: int, largest: int | None = None):
    """Partitions of ``n`` into non-increasing positive parts."""
    largest = n if largest is None else largest
    if n == 0:
        yield ()
        return
    for k in range(min(n, largest), 0, -1):
        for rest in _partitions(n - k, k):
            yield (k,) + rest


@functools.lru_cache(maxsize=None)
def trees(order: int) -> tuple:
    """All rooted trees with ``order`` nodes, each once."""
    if order == 1:
        return ((),)
    out = set()
    for parts in _partitions(order - 1):
        for children in itertools.product(*(trees(k) for k in parts)):
            out.add(tuple(sorted(children)))
    return tuple(sorted(out))


def tree_order(tau) -> int:
    return 1 + sum(tree_order(ch) for ch in tau)


def density(tau) -> int:
    """gamma(tau) = |tau| * prod gamma(children)."""
    return tree_order(tau) * math.prod(density(ch) for ch in tau)


def stage_weights(tau, A: np.ndarray) -> np.ndarray:
    """Phi(tau): elementwise product over children of A @ Phi(child)."""
    phi = np.ones(A.shape[0])
    for ch in tau:
        phi = phi * (A @ stage_weights(ch, A))
    return phi


def _matrices(tab: ButcherTableau):
    s = tab.stages
    A = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        A[i, : len(row)] = row
    return A, np.array(tab.b), np.array(tab.c)


def residual(tab: ButcherTableau, tau) -> float:
    A, b, _ = _matrices(tab)
    return float(b @ stage_weights(tau, A) - 1.0 / density(tau))


def hand_written_conditions(tab: ButcherTableau) -> dict[int, dict[str, float]]:
    """The order conditions up to order four as usually written: residuals by order."""
    A, b, c = _matrices(tab)
    return {
        1: {"sum b = 1": b.sum() - 1},
        2: {"b.c = 1/2": b @ c - 1 / 2},
        3: {"b.c^2 = 1/3": b @ c**2 - 1 / 3, "b.Ac = 1/6": b @ A @ c - 1 / 6},
        4: {
            "b.c^3 = 1/4": b @ c**3 - 1 / 4,
            "b.(c*Ac) = 1/8": b @ (c * (A @ c)) - 1 / 8,
            "b.Ac^2 = 1/12": b @ A @ c**2 - 1 / 12,
            "b.A^2c = 1/24": b @ A @ A @ c - 1 / 24,
        },
    }


ALL = {**TABLEAUS, **UNUSUAL_NODES}


def test_tree_counts_are_the_known_sequence():
    # OEIS A000081: 1, 1, 2, 4, 9, 20 rooted trees with 1..6 nodes
    assert [len(trees(n)) for n in range(1, 7)] == [1, 1, 2, 4, 9, 20]
    assert all(tree_order(t) == n for n in range(1, 7) for t in trees(n))


@pytest.mark.parametrize("name", sorted(ALL))
def test_tree_conditions_reproduce_the_hand_written_ones(name):
    tab = ALL[name]
    hand = hand_written_conditions(tab)
    for order in range(1, 5):
        generic = sorted(residual(tab, tau) for tau in trees(order))
        np.testing.assert_allclose(generic, sorted(hand[order].values()), atol=1e-15, rtol=0)


@pytest.mark.parametrize("name", sorted(ALL))
def test_order_conditions_hold_up_to_declared_order(name):
    tab = ALL[name]
    hand = hand_written_conditions(tab)
    for order in range(1, min(tab.order, 4) + 1):
        for cond, r in hand[order].items():
            assert abs(r) < TOL, f"{name}: {cond} violated by {r:.3g} (declared order {tab.order})"
    for order in range(5, tab.order + 1):  # beyond the hand-written list: generic trees
        for tau in trees(order):
            assert abs(residual(tab, tau)) < TOL, f"{name}: order-{order} condition {tau} fails"


@pytest.mark.parametrize("name", sorted(ALL))
def test_declared_order_is_exact(name):
    """Some order-(p+1) condition fails, so the declared order is not an underestimate."""
    tab = ALL[name]
    worst = max(abs(residual(tab, tau)) for tau in trees(tab.order + 1))
    assert worst > 1e-6, f"{name} satisfies every order-{tab.order + 1} condition: its order is higher than declared"


@pytest.mark.parametrize("name", sorted(TABLEAUS))
def test_registered_with_declared_order(name):
    spec = attsolver.get_method(name)
    assert spec.kind == "fixed" and spec.order == TABLEAUS[name].order
    assert name in attsolver.list_methods(kind="fixed")


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(a=((), (0.4,)), b=(0.5, 0.5), c=(0.0, 0.5)), "row 1 of a sums to"),
        (dict(a=((), (0.5,), (0.25, 0.2)), b=(1 / 6, 1 / 6, 2 / 3), c=(0.0, 0.5, 0.5)), "row 2 of a sums to"),
        (dict(a=((),), b=(1.0,), c=(0.1,)), "row 0 of a sums to"),  # c[0] must be 0
        (dict(a=((), (0.5,)), b=(0.5, 0.4), c=(0.0, 0.5)), "weights b sum to"),
        (dict(a=((), (0.5,)), b=(0.5, 0.6), c=(0.0, 0.5)), "weights b sum to"),
        (dict(a=((0.0,), (0.5, 0.0)), b=(0.0, 1.0), c=(0.0, 0.5)), "row 0 of a must have 0 entries"),
        (dict(a=((), (0.25, 0.25)), b=(0.0, 1.0), c=(0.0, 0.5)), "row 1 of a must have 1 entries"),
        (dict(a=((), (0.5,)), b=(1.0,), c=(0.0, 0.5)), "stages"),
        (dict(a=((), (0.5,)), b=(0.0, 1.0), c=(0.0,)), "stages"),
        (dict(a=((), (math.nan,)), b=(0.0, 1.0), c=(0.0, 0.5)), "row 1 of a sums to"),
        (dict(a=((), (0.5,)), b=(math.nan, 1.0), c=(0.0, 0.5)), "weights b sum to"),
        (dict(a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 0.5), order=0), "order must be >= 1"),
    ],
)
def test_malformed_tableau_raises(kwargs, message):
    kwargs = {"order": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        ButcherTableau("bad", **kwargs)


def test_tableaus_are_immutable():
    with pytest.raises(Exception):
        TABLEAUS["rk4"].b = (1.0, 0.0, 0.0, 0.0)  # type: ignore[misc]


# --------------------------------------------------------------------------- the step itself


def _forced(t, y):
    """A non-autonomous, nonlinear right-hand side: a wrong stage time changes the answer."""
    return torch.cos(3.0 * t) * y - 0.5 * torch.tanh(y) ** 3 + t * t * y.roll(1, -1)


def butcher_reference(f, tab: ButcherTableau, t0: float, y, h: float):
    """One step written straight from the definition of the tableau."""
    ks = []
    for i in range(tab.stages):
        yi = y + h * sum((aij * kj for aij, kj in zip(tab.a[i], ks)), torch.zeros_like(y))
        ks.append(f(torch.tensor(t0 + tab.c[i] * h, dtype=y.dtype), yi))
    return y + h * sum(bi * ki for bi, ki in zip(tab.b, ks))


def _reference_solution(f, tab, y0, t, step_size):
    out, y = [y0], y0
    for t_a, t_b in zip(t[:-1].tolist(), t[1:].tolist()):
        n = max(1, math.ceil(abs(t_b - t_a) / step_size - 1e-9))
        h = (t_b - t_a) / n
        for k in range(n):
            y = butcher_reference(f, tab, t_a + k * h, y, h)
        out.append(y)
    return torch.stack(out)


@pytest.fixture
def with_unusual_nodes(monkeypatch):
    """Register the unusual-node tableaus for one test only."""
    for name, tab in UNUSUAL_NODES.items():
        monkeypatch.setitem(_REGISTRY, name, MethodSpec(
            name=name, kind="fixed", order=tab.order, description="test tableau",
            build=(lambda f, y0, _t=tab: ExplicitRK(f, _t)), options=FIXED_OPTIONS,
        ))


@pytest.mark.parametrize("direction", [1.0, -1.0])
@pytest.mark.parametrize("name", sorted(ALL))
def test_solve_takes_exactly_the_tableau_step(name, direction, with_unusual_nodes):
    """solve() = the Butcher formula with stage times t_n + c_i h, step after step
    (also with a step size that does not divide the output intervals, and backwards)."""
    tab = ALL[name]
    y0 = torch.tensor([[0.3, -0.8, 1.1], [1.0, 0.2, -0.5]], dtype=torch.float64)
    t = direction * torch.tensor([0.0, 0.7, 1.3, 1.45], dtype=torch.float64)
    got = attsolver.solve(_forced, y0, t, method=name, step_size=0.25)
    want = _reference_solution(_forced, tab, y0, t, 0.25)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
