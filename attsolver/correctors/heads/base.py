"""What every head shares: the contract, the MLP builder, and the registry of head names.

A *head* is a corrector's network and its h-scaling, independent of the layout: it asks the
layout for its input and output widths and its linear maps (``nn.Linear`` on a dense or
lattice layout, a periodic convolution on a grid), installs its modules on the corrector,
and evaluates them on the normalised features.  A head object holds hyperparameters only;
the modules (and so the state-dict names, ``net.0.weight`` ...) live on the corrector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...nn import make_activation
from ..layouts import Layout
from ..layouts.base import dense_linear, positive_int

__all__ = ["Head", "MLPHead", "mlp", "positive_int", "register_head_class", "get_head", "list_heads", "as_head"]


def mlp(sizes: Sequence[int], activation: str, *, dtype: torch.dtype, zero_last: bool = True,
        last_activation: bool = False, linear: Any = None) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``sizes``; the last layer zero-initialised.

    ``linear(n_in, n_out, dtype=, zero=)`` builds each linear map (default ``nn.Linear``; a
    layout's :meth:`~attsolver.correctors.layouts.Layout.linear` gives periodic convolutions on
    a grid)."""
    linear = linear or dense_linear
    layers: list[nn.Module] = []
    last = len(sizes) - 2
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(linear(a, b, dtype=dtype, zero=zero_last and i == last))
        if i < last or last_activation:
            layers.append(make_activation(activation, dtype=dtype))
    return nn.Sequential(*layers)


class Head:
    """Base class of the heads (:class:`NeurVecHead`, :class:`HypersolverHead`, :class:`AttSolverHead`).

    A subclass sets :attr:`name`, keeps its hyperparameters (returned by :meth:`hparams`),
    builds its modules on the corrector in :meth:`build` (the last linear map zero-initialised,
    so an untrained corrector is an exact zero) and evaluates them in :meth:`network`.
    """

    #: the head's name: in configs and in the factory names of its correctors
    name: ClassVar[str] = ""
    #: the layouts it runs on, by name (``None``: every registered layout)
    layouts: ClassVar[tuple[str, ...] | None] = None
    #: named settings, each a factory name of its own (``"attsolver-mul"``: ``combine="mul"``)
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: the step features its network reads
    features: tuple[str, ...] = ("y",)

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments (JSON-able)."""
        return {}

    def config(self) -> dict[str, Any]:
        """``{"name": ..., **hparams}``: what a checkpoint keeps (the head is rebuilt by its name)."""
        return {"name": self.name, **self.hparams()}

    def check_rebuildable(self) -> None:
        """Refuse to save a head that its config would not rebuild (an unregistered subclass)."""
        if _HEADS.get(self.name) is not type(self):
            raise ValueError(
                f"{type(self).__name__} is not the head registered as {self.name!r}, so a saved config would "
                "rebuild another network; give it a name of its own and register it "
                "(attsolver.correctors.register_head) to save it"
            )

    def output_order(self, order: int) -> int:
        """``C`` is multiplied by ``h ** output_order`` (``order``: the corrected method's)."""
        return 0

    def build(self, m: nn.Module, layout: Layout, dtype: torch.dtype) -> None:
        """Install the network's modules (and any attributes it reads) on the corrector ``m``."""
        raise NotImplementedError

    def network(self, m: nn.Module, u: Tensor) -> Tensor:
        """Normalised features ``[B, layout.n_in(, *grid)]`` -> normalised correction ``[B, layout.n_out(, *grid)]``."""
        raise NotImplementedError


class MLPHead(Head):
    """A head whose network is one MLP, ``m.net``: ``n_in -> hidden... -> n_out``."""

    def __init__(self, hidden: Sequence[int], activation: str):
        self.hidden = list(hidden)
        self.activation = activation

    def build(self, m: nn.Module, layout: Layout, dtype: torch.dtype) -> None:
        m.net = mlp([layout.n_in, *self.hidden, layout.n_out], self.activation, dtype=dtype, linear=layout.linear)

    def network(self, m: nn.Module, u: Tensor) -> Tensor:
        return m.net(u)


_HEADS: dict[str, type[Head]] = {}


def register_head_class(cls: type[Head]) -> type[Head]:
    """Make a head known by its :attr:`Head.name` (a saved config names it)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name (the class attribute Head.name)")
    if _HEADS.get(cls.name, cls) is not cls:
        raise ValueError(f"a head named {cls.name!r} is already registered")
    _HEADS[cls.name] = cls
    return cls


def list_heads() -> list[str]:
    return list(_HEADS)


def get_head(name: str) -> type[Head]:
    try:
        return _HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; registered: {', '.join(_HEADS)}") from None


def as_head(head: Head | dict[str, Any] | None) -> Head | None:
    """A head, from itself or from its :meth:`Head.config` (as a checkpoint keeps it)."""
    if head is None or isinstance(head, Head):
        return head
    if isinstance(head, dict) and isinstance(head.get("name"), str):
        kw = dict(head)
        return get_head(kw.pop("name"))(**kw)
    raise TypeError(f"head must be a Head or its config (a dict with its name), got {head!r}")
