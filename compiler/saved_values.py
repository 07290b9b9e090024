"""What the partition saves instead of recomputing in the backward.

The residual stream, not the projection that was added into it: `h = x + o_proj(a)`
feeds a norm whose backward needs `h`. Min-cut sees two cuts of the same size: save
`h`, or save the GEMM output and recompute the add in the backward (`x` is an input,
free to keep). It may pick the second, which costs the forward a store of the GEMM
output (the epilogue stores `h` anyway, for the next residual) and the backward a
kernel that recomputes `h`. Banning recomputation of such an add
(CheckpointPolicy.MUST_SAVE) makes min-cut save `h` whenever the backward needs it,
and nothing when it does not: the GEMM's own backward reads its operands, never its
output.

Compile-time constants (a rotary table's cos and sin): both graphs fold them, so the
forward returns them at no cost, where a backward that recomputes them from a saved
angle table runs a kernel for it.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch.utils.checkpoint import CheckpointPolicy

from coda.compiler.fold_constants import constant_nodes

aten = torch.ops.aten

_GEMMS = (aten.mm.default, aten.addmm.default, aten.bmm.default)
_VIEWS = (aten.view.default, aten._unsafe_view.default, aten.reshape.default)


def _is_gemm_output(node: object) -> bool:
    while isinstance(node, fx.Node) and node.target in _VIEWS:
        node = node.args[0]
    return isinstance(node, fx.Node) and node.target in _GEMMS


def _backward_nodes(joint: fx.Graph) -> set[fx.Node]:
    """Nodes that depend on an output gradient (the joint graph's `tangents_*`)."""
    found: set[fx.Node] = set()
    for node in joint.nodes:
        tangent = node.op == "placeholder" and node.name.startswith("tangents")
        if tangent or any(arg in found for arg in node.all_input_nodes):
            found.add(node)
    return found


def _residual(node: fx.Node) -> bool:
    """`gemm output + tensor`."""
    tensors = [a for a in node.args if isinstance(a, fx.Node)]
    return (
        node.target == aten.add.Tensor
        and len(tensors) == 2
        and any(_is_gemm_output(a) for a in tensors)
    )


def prefer_saving(joint: fx.GraphModule) -> int:
    """Mark the forward's residual adds and the constants other nodes read must-save
    (min-cut then never recomputes them; it saves them only where the backward reads
    them). Returns how many nodes were marked."""
    backward = _backward_nodes(joint.graph)
    constant = constant_nodes(joint.graph)
    marked = 0
    for node in joint.graph.nodes:
        if node in backward or node.op != "call_function":
            continue
        read = node in constant and any(user not in constant for user in node.users)
        if _residual(node) or read:
            node.meta["recompute"] = CheckpointPolicy.MUST_SAVE
            marked += 1
    return marked
