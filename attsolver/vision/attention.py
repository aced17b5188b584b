"""How a ResNet uses an attention module from :mod:`attsolver.nn`: the names the vision
models accept and what each means.

* ``"none"``: no attention.
* ``"<gate>"`` for a stateless gate (``"se"``): one gate per residual block, recalibrating
  the block's residual-branch output before the addition (SE-ResNet).
* ``"shared_<gate>"`` (``"shared_se"``): one gate per *stage*, shared by all its blocks
  (the layer-wise sharing of DIA's journal version, 2210.16101).
* ``"<stateful gate>"`` (``"dia"``): one unit per stage, shared, its state carried from
  block to block and reset at the start of each stage (DIANet).
* ``"iebn"``: the BatchNorm layers become :class:`attsolver.nn.IEBatchNorm` (IEBN).

A gate registered in :mod:`attsolver.nn` appears here by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..nn import get_attention, list_attention

__all__ = ["AttentionSpec", "parse_attention", "list_vision_attention", "DEFAULT_REDUCTION"]

#: Where the attention sits: nowhere, one gate per block, one per stage, inside the norm layers.
PLACEMENTS = ("none", "block", "stage", "norm")

#: Reduction ``r`` of each gate's bottleneck MLP when none is given: 16 for SE (Hu et al.'s
#: SE-ResNets, and the convention that reproduces the published SE-ResNet-164 count),
#: 4 for DIA (the DIANet paper's CIFAR setting).
DEFAULT_REDUCTION = {"se": 16, "dia": 4}

#: gates whose vision form is a normalisation layer, not a gate on the residual branch
_NORM_GATES = {"iebn"}


@dataclass(frozen=True)
class AttentionSpec:
    """A parsed vision attention name.

    Attributes:
        name: the name as given (``"shared_se"``).
        gate: the :mod:`attsolver.nn` gate it uses (``"se"``), ``None`` for ``"none"``.
        placement: one of :data:`PLACEMENTS`.
    """

    name: str
    gate: str | None
    placement: str

    @property
    def stateful(self) -> bool:
        return self.gate is not None and bool(getattr(get_attention(self.gate), "stateful", False))

    def default_reduction(self) -> int:
        return DEFAULT_REDUCTION.get(self.gate, 16)


def list_vision_attention() -> list[str]:
    """Every attention name the vision models accept (``none``, ``se``, ``shared_se``, ``dia``, ``iebn``, ...)."""
    names = ["none"]
    for gate in list_attention():
        if gate in _NORM_GATES:
            names.append(gate)
        elif getattr(get_attention(gate), "stateful", False):
            names.append(gate)  # a stateful gate is shared per stage by construction
        else:
            names += [gate, f"shared_{gate}"]
    return sorted(names, key=lambda n: (n != "none", n))


def parse_attention(name: str | AttentionSpec) -> AttentionSpec:
    """The :class:`AttentionSpec` for a name from :func:`list_vision_attention`; anything
    else raises ``ValueError`` listing the choices."""
    if isinstance(name, AttentionSpec):
        return name
    if not isinstance(name, str):
        raise TypeError(f"attention must be a name (str), got {type(name).__name__}")
    if name not in list_vision_attention():
        raise ValueError(f"unknown attention {name!r}; choose one of: {', '.join(list_vision_attention())}")
    if name == "none":
        return AttentionSpec(name, None, "none")
    if name in _NORM_GATES:
        return AttentionSpec(name, name, "norm")
    if name.startswith("shared_"):
        return AttentionSpec(name, name[len("shared_"):], "stage")
    stateful = getattr(get_attention(name), "stateful", False)
    return AttentionSpec(name, name, "stage" if stateful else "block")
