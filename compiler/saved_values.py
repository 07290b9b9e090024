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

A gated MLP's gate and up projections (`silu(x @ Wg) * (x @ Wu)`), recomputed instead
of saved: their backward needs both [M, I] pre-activations, but its first GEMM,
dy @ Wd^T, has the same [M, I] output tile, so fuse-epilogues gives it two more
accumulators, x @ Wg and x @ Wu, and the silu backward reads them on chip. The backward
then reads x (saved anyway, for dWg and dWu) and the two weights instead of the forward
writing and the backward reading both [M, I] tensors: M*K + 2*K*I elements read for
4*M*I moved, fewer whenever M*K + 2*K*I < 4*M*I (any token count above ~K/2). The
product itself stays saved (MUST_SAVE): the down projection's weight gradient reads it,
and recomputing it would write it a second time.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch.utils.checkpoint import CheckpointPolicy

from coda.compiler.fold_constants import constant_nodes

aten = torch.ops.aten

_GEMMS = (aten.mm.default, aten.addmm.default, aten.bmm.default)
_VIEWS = (aten.view.default, aten._unsafe_view.default, aten.reshape.default)
#: the gate activations of gated MLPs (SwiGLU, GeGLU)
_GATES = (aten.silu.default, aten.gelu.default)


def _gemm_behind_views(node: object) -> tuple[fx.Node | None, list[fx.Node]]:
    """The GEMM `node` views (None if it is not one) and the views on the way."""
    views = []
    while isinstance(node, fx.Node) and node.target in _VIEWS:
        views.append(node)
        node = node.args[0]
    if isinstance(node, fx.Node) and node.target == aten.mm.default:
        return node, views
    return None, views


def _unviewed(node: object) -> object:
    while isinstance(node, fx.Node) and node.target in _VIEWS:
        node = node.args[0]
    return node


def _is_gemm_output(node: object) -> bool:
    node = _unviewed(node)
    return isinstance(node, fx.Node) and node.target in _GEMMS


def backward_nodes(joint: fx.Graph) -> set[fx.Node]:
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
    backward = backward_nodes(joint.graph)
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


def _numel(node: fx.Node) -> int:
    return node.meta["val"].numel()


def _gated_projections(
    node: fx.Node, backward: set[fx.Node]
) -> tuple[list[fx.Node], fx.Node] | None:
    """For `gate(x @ Wg) * (x @ Wu)`: the nodes that recompute both projections (the
    GEMMs and their views) and x; None for anything else."""
    if node.target != aten.mul.Tensor or len(node.args) != 2:
        return None
    for gated, other in (node.args, node.args[::-1]):
        if not (isinstance(gated, fx.Node) and gated.target in _GATES):
            continue
        gate, gate_views = _gemm_behind_views(gated.args[0])
        up, up_views = _gemm_behind_views(other)
        if gate is None or up is None or _unviewed(gate.args[0]) is not _unviewed(up.args[0]):
            continue
        if [user for user in gated.users if user not in backward] != [node]:
            continue  # the forward reads the gate's activation elsewhere: keep it
        return [gate, up, *gate_views, *up_views], gate.args[0]
    return None


def prefer_recomputing(joint: fx.GraphModule) -> int:
    """Mark the gate and up projections of gated MLPs must-recompute (and their product
    must-save) where that moves fewer bytes (see the module docstring). Returns how
    many gated MLPs were marked."""
    backward = backward_nodes(joint.graph)
    marked = 0
    for node in joint.graph.nodes:
        if node in backward or node.op != "call_function":
            continue
        found = _gated_projections(node, backward)
        if found is None:
            continue
        nodes, x = found
        gate = nodes[0]
        weight = gate.args[1]
        assert isinstance(weight, fx.Node)
        recompute_reads = _numel(x) + 2 * _numel(weight)
        if recompute_reads >= 4 * _numel(gate):
            continue
        for recomputed in nodes:
            recomputed.meta["recompute"] = CheckpointPolicy.MUST_RECOMPUTE
        node.meta["recompute"] = CheckpointPolicy.MUST_SAVE
        marked += 1
    return marked
