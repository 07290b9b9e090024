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

In a graph with symbolic sizes, nodes that depend only on the size inputs (the rotary
table of `arange(s0)`) are folded too: their tensors are the same for every call of one
size, so `FoldedGraph.values` computes them per size instead of once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import unset_fake_temporarily
from torch.fx.experimental.symbolic_shapes import optimization_hint

aten = torch.ops.aten

#: ops whose result is a splat: cheaper as graph.constant than as a folded tensor
_SPLATS = {aten.full, aten.zeros, aten.ones, aten.scalar_tensor, aten.empty}

#: a folded tensor larger than this stays computed at run time (memory over speed)
MAX_FOLDED_ELEMENTS = 1 << 24
#: sizes whose size-dependent folded tensors are kept (a graph plans at most 32)
_SIZES_KEPT = 64


@dataclass
class FoldedGraph:
    gm: fx.GraphModule
    #: values of the extra inputs appended after the graph's own inputs (the first
    #: call's, for a graph whose folded values depend on its size inputs)
    constants: list[torch.Tensor]
    #: the folded values for a call's graph inputs: None when they are `constants`
    #: whatever the call (no folded value depends on a size input)
    per_call: Callable[[Sequence[Any]], list[torch.Tensor]] | None = None

    def values(self, args: Sequence[Any]) -> list[torch.Tensor]:
        return self.constants if self.per_call is None else self.per_call(args)


def _attribute(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for name in target.split("."):
        value = getattr(value, name)
    return value


#: comparisons: a broadcast one (a one-hot mask `iota == target`) stays in the graph
_COMPARISONS = {aten.eq, aten.ne, aten.lt, aten.le, aten.gt, aten.ge}


def _numel(node: fx.Node) -> int:
    """Elements of a node's tensor, at the traced sizes (a symbolic count is estimated
    from its hint: folding is a memory decision, and must not add Dynamo guards)."""
    val = node.meta["val"]
    return optimization_hint(val.numel()) if isinstance(val, torch.Tensor) else 1


def _expanding_comparison(node: fx.Node) -> bool:
    """A comparison whose result is larger than its inputs together: computed in the
    kernel that reads it, it costs nothing; folded, it is a [tokens, vocab] buffer."""
    if _packet(node) not in _COMPARISONS:
        return False
    return _numel(node) > sum(_numel(n) for n in node.all_input_nodes)


def _is_size(node: fx.Node) -> bool:
    return isinstance(node.meta.get("val"), torch.SymInt)


def _foldable(node: fx.Node, constant: set[fx.Node]) -> bool:
    if node.op == "get_attr":  # a tensor the graph module holds (a lifted constant)
        return True
    if node.op == "placeholder":
        return _is_size(node)  # a size input: known for each call before it runs
    if node.op != "call_function" or not all(n in constant for n in node.all_input_nodes):
        return False
    if _is_size(node):  # arithmetic on sizes
        return True
    if _expanding_comparison(node):
        return False
    tags = getattr(node.target, "tags", ())
    if torch.Tag.nondeterministic_seeded in tags:
        return False
    return isinstance(node.meta.get("val"), torch.Tensor)


def _packet(node: fx.Node) -> Any:
    return getattr(node.target, "_overloadpacket", None)


def constant_nodes(graph: fx.Graph) -> set[fx.Node]:
    """The nodes that depend on no graph input but sizes: the same value on every call
    of one size (on every call, in a graph without size inputs)."""
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
        and not _is_size(node)
        and any(user not in constant for user in node.users)
        and not (_packet(node) in _SPLATS and all(map(_is_size, node.all_input_nodes)))
        and (node.op == "get_attr" or _numel(node) <= MAX_FOLDED_ELEMENTS)
    ]
    if not boundary:
        return FoldedGraph(gm, [])
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    sized = _size_dependent(graph, constant)
    # the calls as they are now: folding rewires the graph, a size's call re-evaluates
    calls = [(n, n.op, n.target, n.args, n.kwargs) for n in graph.nodes if n in constant]

    def evaluate(args: Sequence[Any]) -> list[torch.Tensor]:
        values: dict[fx.Node, Any] = dict(zip(placeholders, args, strict=True))
        # AOTAutograd compiles under a fake-tensor mode: the folded values must be real
        with unset_fake_temporarily():
            for node, op, target, node_args, node_kwargs in calls:
                if op == "get_attr":
                    values[node] = _attribute(gm, str(target))
                elif op == "call_function":
                    args_, kwargs = fx.node.map_arg((node_args, node_kwargs), values.__getitem__)
                    if "device" in kwargs:
                        kwargs = {**kwargs, "device": device}
                    values[node] = target(*args_, **kwargs)
            return [values[node].contiguous() for node in boundary]

    per_call = _per_size(evaluate, placeholders) if sized & set(boundary) else None
    traced = [_hint(n) for n in placeholders]
    constants = evaluate(traced) if per_call is None else per_call(traced)
    last = placeholders[-1] if placeholders else None
    for index, node in enumerate(boundary):
        anchor = last.next if last is not None else next(iter(graph.nodes))
        with graph.inserting_before(anchor):
            new = graph.placeholder(f"folded_{index}_{node.name}")
        new.meta["val"] = node.meta.get("val", constants[index])
        last = new
        node.replace_all_uses_with(new)
    graph.eliminate_dead_code()
    gm.recompile()
    return FoldedGraph(gm, constants, per_call)


def _size_dependent(graph: fx.Graph, constant: set[fx.Node]) -> set[fx.Node]:
    """The folded nodes whose value depends on a size input."""
    sized: set[fx.Node] = set()
    for node in (n for n in graph.nodes if n in constant):
        if node.op == "placeholder" or any(n in sized for n in node.all_input_nodes):
            sized.add(node)
    return sized


def _hint(node: fx.Node) -> Any:
    """A placeholder's value at the traced sizes: only size inputs are read."""
    val = node.meta.get("val")
    return optimization_hint(val) if isinstance(val, torch.SymInt) else None


def _per_size(
    evaluate: Callable[[Sequence[Any]], list[torch.Tensor]], placeholders: list[fx.Node]
) -> Callable[[Sequence[Any]], list[torch.Tensor]]:
    """`evaluate` once per distinct set of size inputs (a call's tensors are not read)."""
    sizes = [i for i, n in enumerate(placeholders) if _is_size(n)]
    cache: dict[tuple[int, ...], list[torch.Tensor]] = {}

    def per_call(args: Sequence[Any]) -> list[torch.Tensor]:
        key = tuple(int(args[i]) for i in sizes)
        if key not in cache:
            if len(cache) >= _SIZES_KEPT:  # sizes that never repeat: keep memory bounded
                cache.clear()
            full: list[Any] = [None] * len(placeholders)
            for i, value in zip(sizes, key, strict=True):
                full[i] = value
            cache[key] = evaluate(full)
        return cache[key]

    return per_call
