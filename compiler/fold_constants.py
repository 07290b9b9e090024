"""Compile-time constant folding of FX graphs.

Nodes that depend on no graph input (a rotary-embedding table built from `arange`,
`pow`, `outer`, `cat`, `cos`; a causal mask from `full` and `triu`) compute the same
tensor on every call. They are evaluated once, at compile time, and each folded
tensor becomes an extra graph input that the compiled callable passes along. The ops
that built it (often ops coda would run through torch) disappear from the graph.

Tensors the graph module holds (`get_attr` nodes: constants Dynamo lifted, such as a
buffer created in `forward`) become extra inputs the same way.

Splat constants (`full`, `zeros`, ...) are not folded: the importer turns them into
`graph.constant`, which costs no memory traffic at all. Random ops are never folded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import unset_fake_temporarily

aten = torch.ops.aten

#: ops whose result is a splat: cheaper as graph.constant than as a folded tensor
_SPLATS = {aten.full, aten.zeros, aten.ones, aten.scalar_tensor, aten.empty}

#: a folded tensor larger than this stays computed at run time (memory over speed)
MAX_FOLDED_ELEMENTS = 1 << 24


@dataclass
class FoldedGraph:
    gm: fx.GraphModule
    #: values of the extra inputs appended after the graph's own inputs
    constants: list[torch.Tensor]


def _attribute(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for name in target.split("."):
        value = getattr(value, name)
    return value


#: comparisons: a broadcast one (a one-hot mask `iota == target`) stays in the graph
_COMPARISONS = {aten.eq, aten.ne, aten.lt, aten.le, aten.gt, aten.ge}


def _expanding_comparison(node: fx.Node) -> bool:
    """A comparison whose result is larger than its inputs together: computed in the
    kernel that reads it, it costs nothing; folded, it is a [tokens, vocab] buffer."""
    if _packet(node) not in _COMPARISONS:
        return False
    inputs = sum(n.meta["val"].numel() for n in node.all_input_nodes)
    return node.meta["val"].numel() > inputs


def _foldable(node: fx.Node, constant: set[fx.Node]) -> bool:
    if node.op == "get_attr":  # a tensor the graph module holds (a lifted constant)
        return True
    if node.op != "call_function" or not all(n in constant for n in node.all_input_nodes):
        return False
    if _expanding_comparison(node):
        return False
    tags = getattr(node.target, "tags", ())
    if torch.Tag.nondeterministic_seeded in tags:
        return False
    return isinstance(node.meta.get("val"), torch.Tensor)


def _packet(node: fx.Node) -> Any:
    return getattr(node.target, "_overloadpacket", None)


def constant_nodes(graph: fx.Graph) -> set[fx.Node]:
    """The nodes that depend on no graph input: the same tensor on every call."""
    constant: set[fx.Node] = set()
    for node in graph.nodes:
        if _foldable(node, constant):
            constant.add(node)
    return constant


def fold_constants(gm: fx.GraphModule, device: torch.device) -> FoldedGraph:
    """Fold a copy of `gm`'s graph; `gm` itself is left as it is. The copy shares the
    module's tensor attributes: deep-copying them under the fake mode AOTAutograd has
    active fails."""
    gm = fx.GraphModule(gm, copy.deepcopy(gm.graph))
    graph = gm.graph
    constant = constant_nodes(graph)
    # fold where constant values flow into the rest of the graph
    boundary = [
        node
        for node in graph.nodes
        if node in constant
        and any(user not in constant for user in node.users)
        and not (_packet(node) in _SPLATS and not node.all_input_nodes)
        and (node.op == "get_attr" or node.meta["val"].numel() <= MAX_FOLDED_ELEMENTS)
    ]
    if not boundary:
        return FoldedGraph(gm, [])
    values: dict[fx.Node, Any] = {}
    # AOTAutograd compiles under a fake-tensor mode: the folded values must be real
    with unset_fake_temporarily():
        for node in graph.nodes:
            if node in constant and node.op == "get_attr":
                values[node] = _attribute(gm, str(node.target))
            elif node in constant:
                args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: values[n])
                if "device" in kwargs:
                    kwargs = {**kwargs, "device": device}
                values[node] = node.target(*args, **kwargs)
        constants = [values[node].contiguous() for node in boundary]
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    last = placeholders[-1] if placeholders else None
    for index, node in enumerate(boundary):
        anchor = last.next if last is not None else next(iter(graph.nodes))
        with graph.inserting_before(anchor):
            new = graph.placeholder(f"folded_{index}_{node.name}")
        new.meta["val"] = node.meta.get("val", values[node])
        last = new
        node.replace_all_uses_with(new)
    graph.eliminate_dead_code()
    gm.recompile()
    return FoldedGraph(gm, constants)
