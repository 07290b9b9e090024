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

The input of a max or min whose gradient is taken (`x == amax(x)` in the backward):
the comparison must see the value the forward reduced. Kernels keep values in float32
between stores, so a bf16 input recomputed in another kernel (another fusion) may
differ from the forward's by a rounding, and then no element equals the maximum.

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

A normalized activation only GEMMs read (`hn = w * (x * rstd)` before the q/k/v or
gate/up projections; a LayerNorm's `(x - mean) * rstd * w + b`), recomputed instead of
saved: fuse-prologues computes it on the operand tiles of the GEMMs that read it, so the
forward never writes it if the backward does not need it saved. The backward's weight
gradients and recomputed projections read it the same way, from x and the per-row and
per-column vectors, which the norm's own backward reads anyway. Only a chain of cheap
pointwise ops with one full-size input that the backward reads in any case (x) and
small other inputs (the statistics, the norm's weight and bias) is marked, so
recomputing reads nothing the backward would not.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch.utils.checkpoint import CheckpointPolicy

from coda.compiler.fold_constants import constant_nodes

aten = torch.ops.aten

_GEMMS = (aten.mm.default, aten.addmm.default, aten.bmm.default)
_VIEWS = (aten.view.default, aten._unsafe_view.default, aten.reshape.default)
#: reductions whose backward compares their input with their result (x == amax(x);
#: max.dim and min.dim select by their indices instead):
#: a recomputed input must be the very value the forward reduced, and kernels keep values
#: in float32 between stores, so a bf16 input recomputed by another kernel (another
#: fusion: the forward's RMSNorm used its rstd unrounded, the backward the stored bf16
#: one) can differ from the forward's by a rounding, no element equals the maximum and
#: the gradient is 0/0. The saved input is one value for both.
_EXTREMA = (aten.amax.default, aten.amin.default)
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


def _undetached(node: object) -> object:
    while isinstance(node, fx.Node) and node.target == aten.detach.default:
        node = node.args[0]
    return node


def _compared_with_extrema(graph: fx.Graph) -> set[fx.Node]:
    """Inputs of a max or min that an `eq` compares with its result (the max's gradient
    goes to the elements equal to it; autograd saves the result detached)."""
    found = set()
    for node in graph.nodes:
        if node.target != aten.eq.Tensor:
            continue
        a, b = (_undetached(arg) for arg in node.args[:2])
        for x, extremum in ((a, b), (b, a)):
            if isinstance(extremum, fx.Node) and extremum.target in _EXTREMA:
                if _undetached(extremum.args[0]) is _undetached(x):
                    found.add(extremum.args[0])
    return found


def prefer_saving(joint: fx.GraphModule) -> int:
    """Mark the forward's residual adds, the constants other nodes read and the inputs of
    maxima and minima the backward compares with them must-save (min-cut then never
    recomputes them; it saves them only where the backward reads them). Returns how many
    nodes were marked."""
    backward = backward_nodes(joint.graph)
    constant = constant_nodes(joint.graph)
    compared = _compared_with_extrema(joint.graph)
    marked = 0
    for node in joint.graph.nodes:
        if node in backward or node.op != "call_function":
            continue
        # (sizes are not tensors to save: a symbolic graph's size arithmetic is constant)
        read = (
            node in constant
            and isinstance(node.meta.get("val"), torch.Tensor)
            and any(user not in constant for user in node.users)
        )
        if _residual(node) or read or node in compared:
            node.meta["recompute"] = CheckpointPolicy.MUST_SAVE
            marked += 1
    return marked


#: pointwise ops fuse-prologues recomputes on operand tiles (see passes/fuse_prologues)
_PROLOGUE_TARGETS = (
    aten.mul.Tensor,
    aten.add.Tensor,
    aten.sub.Tensor,
    aten.div.Tensor,
    aten.neg.default,
    torch.ops.prims.convert_element_type.default,
)
_OPERAND_VIEWS = (*_VIEWS, aten.t.default, aten.permute.default, aten.expand.default)


def _read_as_gemm_operand(node: fx.Node, forward_users: list[fx.Node]) -> bool:
    """Every forward user reads `node` as a GEMM's matrix operand, through views."""
    for user in forward_users:
        if user.target in _OPERAND_VIEWS:
            if not _read_as_gemm_operand(user, list(user.users)):
                return False
        elif user.target in _GEMMS:
            matrices = user.args[-2:]  # addmm's bias is its first argument
            if node not in matrices or node in user.args[:-2]:
                return False
        else:
            return False
    return True


def _norm_prologue(node: fx.Node, backward: set[fx.Node]) -> list[fx.Node] | None:
    """The pointwise chain ending in `node` (an operand only GEMMs read) when its leaves
    are one input of the chain's size that the backward reads anyway and small vectors
    (at most 1/8 of the size each); None otherwise."""
    forward_users = [u for u in node.users if u not in backward]
    if node.target not in _PROLOGUE_TARGETS or not _read_as_gemm_operand(node, forward_users):
        return None
    size = _numel(node)
    chain: list[fx.Node] = []
    full: list[fx.Node] = []

    def visit(current: fx.Node) -> bool:
        chain.append(current)
        for arg in current.all_input_nodes:
            users_in_forward = [u for u in arg.users if u not in backward]
            if arg.target in _PROLOGUE_TARGETS and all(u in chain for u in users_in_forward):
                if not visit(arg):
                    return False
            elif "val" not in arg.meta or not isinstance(arg.meta["val"], torch.Tensor):
                return False
            elif _numel(arg) * 8 <= size:
                continue  # a statistic per row, a weight per column
            elif _numel(arg) == size and any(u in backward for u in arg.users):
                full.append(arg)
            else:
                return False
        return len(chain) <= 4

    if not visit(node) or len(set(full)) != 1:
        return None
    return chain


def prefer_recomputing_norms(joint: fx.GraphModule) -> int:
    """Mark normalized activations that only GEMMs read must-recompute (see the module
    docstring). Returns how many chains were marked."""
    backward = backward_nodes(joint.graph)
    marked = 0
    for node in joint.graph.nodes:
        if node in backward or node.op != "call_function":
            continue
        chain = _norm_prologue(node, backward)
        if chain is None or node.meta.get("recompute") is not None:
            continue
        for member in chain:
            member.meta["recompute"] = CheckpointPolicy.MUST_RECOMPUTE
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
