"""One factory for Python and the command line: ``create(name, state_shape, ...)``.

A name is a head on a layout: ``"<head>"`` on the dense layout, ``"<head>-local"`` on a
lattice, ``"<head>-conv"`` on a periodic grid, each optionally followed by one of the head's
presets (``"attsolver-conv-mul"`` fixes ``combine="mul"``).  Where today's classes name the
pair (``LocalNeurVec`` for ``"neurvec-local"``) the factory builds that class, with its
defaults; any other pair is built from its parts on the layout's host class
(``create("hypersolver-conv")``).  :func:`names` lists every name; the registry lines at the
bottom of this file are the only place the names come from.

Adding a head: one file in :mod:`.heads` and one ``register_head`` line below.  Adding a layout:
one file in :mod:`.layouts` and one ``register_layout`` line below (plus, optionally, a host
class and fast forms).  The parametrised tests build every name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .base import Corrector, get_corrector_class
from .heads import AttSolverHead, Head, HypersolverHead, NeurVecHead, register_head_class
from .hosts import ConvCorrector, LocalCorrector
from .layouts import DenseLayout, GridLayout, LatticeLayout, Layout, register_layout as _register_layout_class
from .named import AttSolver, AttSolverConv, Hypersolver, LocalAttSolver, LocalHypersolver, LocalNeurVec, NeurVec, NeurVecConv

__all__ = ["create", "names", "REGISTRY", "Entry", "register_head", "register_layout"]

#: the keyword arguments every corrector constructor takes besides the layout's and the head's
_COMMON = ("method", "step_size", "dtype")


class Entry(NamedTuple):
    """What a name builds: ``class_name`` (today's class for the pair, else the layout's host),
    the keyword arguments the name fixes, and the layout and head types (``head`` is ``None``
    for a class name given to :func:`create`: the class builds its own)."""

    class_name: str
    fixed: dict[str, Any]
    layout: type[Layout]
    head: type[Head] | None


#: name -> :class:`Entry`, for every registered (head, layout) pair and preset
REGISTRY: dict[str, Entry] = {}
_LAYOUTS: dict[type[Layout], type[Corrector]] = {}  # layout -> its host class
_HEADS: dict[type[Head], dict[type[Layout], type[Corrector]]] = {}  # head -> its named classes


def _rebuild() -> None:
    REGISTRY.clear()
    for head, named in _HEADS.items():
        for layout, host in _LAYOUTS.items():
            if head.layouts is not None and layout.name not in head.layouts:
                continue
            cls = named.get(layout, host)
            base = head.name + layout.suffix
            REGISTRY[base] = Entry(cls.__name__, {}, layout, head)
            for preset, fixed in head.presets.items():
                REGISTRY[f"{base}-{preset}"] = Entry(cls.__name__, dict(fixed), layout, head)


def register_layout(layout: type[Layout], host: type[Corrector] = Corrector) -> type[Layout]:
    """Build every registered head on ``layout`` (as an instance of ``host``, whose constructor
    takes the state shape, the layout's arguments and ``head=``; :class:`Corrector` takes the
    layout's config as ``layout=``)."""
    _register_layout_class(layout)
    _LAYOUTS[layout] = host
    _rebuild()
    return layout


def register_head(head: type[Head], *, named: Mapping[type[Layout], type[Corrector]] | None = None) -> type[Head]:
    """Build ``head`` on every registered layout it runs on; ``named``: today's classes for some
    (layout, this head) pairs, built instead of the host with the head's arguments."""
    register_head_class(head)
    _HEADS[head] = dict(named or {})
    _rebuild()
    return head


def names(layout: str | None = None) -> list[str]:
    """Every name :func:`create` builds (``layout``: only those on the layout of that name)."""
    return sorted(n for n, e in REGISTRY.items() if layout is None or e.layout.name == layout)


def _entry(name: str) -> Entry:
    if name in REGISTRY:
        return REGISTRY[name]
    try:  # a class name builds that class
        cls = get_corrector_class(name)
    except ValueError:
        raise ValueError(f"unknown corrector {name!r}; choose one of: {', '.join(names())} (or a corrector "
                         f"class name)") from None
    return Entry(name, {}, cls.layout_type, None)


def create(name: str, state_shape: Any = None, *, system: Any = None, **kwargs: Any) -> Corrector:
    """The corrector ``name`` (from :func:`names`, or a class name such as ``"LocalNeurVec"``).

    Args:
        name: which corrector.
        state_shape: the state's shape; or give ``system``, from which the layout takes it (and
            a lattice's or grid's geometry: ``system.lattice``, ``system.nx``, ``system.length``).
        kwargs: ``method``, ``step_size``, ``dtype`` and the layout's and head's arguments; a
            preset's fixed arguments win over them.

    Raises:
        ValueError: an unknown name (the message lists the valid ones), or bad arguments.
    """
    entry = _entry(name)
    kw = {**kwargs, **entry.fixed}
    if system is not None:
        if state_shape is not None:
            raise TypeError("give state_shape or system, not both")
        state_shape, kw = entry.layout.from_system(system, kw, entry.class_name)
    elif state_shape is None:
        raise TypeError(f"create({name!r}) needs the state_shape or a system")
    cls = get_corrector_class(entry.class_name)
    if entry.head is None or _HEADS[entry.head].get(entry.layout) is cls:
        return cls(state_shape, **kw)  # today's class for the pair, with its own defaults
    return _compose(cls, entry, state_shape, kw)


def _compose(host: type[Corrector], entry: Entry, state_shape: Any, kw: dict[str, Any]) -> Corrector:
    """``entry``'s head on its layout's host: the arguments split between the layout and the head."""
    own = set(_COMMON) | set(entry.layout.params)
    head = entry.head(**{k: v for k, v in kw.items() if k not in own})
    kw = {k: v for k, v in kw.items() if k in own}
    if host is Corrector and entry.layout is not DenseLayout:
        layout_kw = {k: kw.pop(k) for k in entry.layout.params if k in kw}
        return Corrector(state_shape, head=head, layout={"name": entry.layout.name, **layout_kw}, **kw)
    return host(state_shape, head=head, **kw)


# The layouts and heads create() builds, and today's classes for the pairs that have one.
register_layout(DenseLayout, Corrector)
register_layout(LatticeLayout, LocalCorrector)
register_layout(GridLayout, ConvCorrector)
register_head(NeurVecHead, named={DenseLayout: NeurVec, LatticeLayout: LocalNeurVec, GridLayout: NeurVecConv})
register_head(HypersolverHead, named={DenseLayout: Hypersolver, LatticeLayout: LocalHypersolver})
register_head(AttSolverHead, named={DenseLayout: AttSolver, LatticeLayout: LocalAttSolver, GridLayout: AttSolverConv})
