"""The op-level dataflow graph of one block, for the fusion and splitting passes.

Grouping ops into one kernel is legal only if contracting the group to a single node
keeps the graph acyclic; networkx answers that question here so each pass stays a
statement of *what* may fuse.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol

import networkx as nx
from xdsl.dialects.builtin import ModuleOp
from xdsl.dialects.func import FuncOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.traits import IsTerminator


def function_bodies(module: ModuleOp) -> list[Block]:
    """The body of each function of `module` that has one (declarations have none)."""
    return [f.body.block for f in list(module.walk()) if isinstance(f, FuncOp) and f.body.blocks]


def dataflow_graph(block: Block) -> nx.DiGraph:
    """Nodes are the block's ops; an edge u -> v means v uses a result of u."""
    graph = nx.DiGraph()
    for op in block.ops:
        graph.add_node(op)
        for producer in _producers(op, block):
            graph.add_edge(producer, op)
    return graph


def _producers(op: Operation, block: Block) -> set[Operation]:
    """The ops of `block` whose results `op` uses."""
    return {
        v.owner
        for v in op.operands
        if isinstance(v.owner, Operation) and v.owner.parent_block() is block
    }


class Contracted(Protocol):
    """Ops of groups that become one node each -> all members of the op's group."""

    def get(
        self, op: Operation, default: Collection[Operation] = ..., /
    ) -> Collection[Operation]: ...


def can_contract(
    graph: nx.DiGraph, group: Collection[Operation], contracted: Contracted | None = None
) -> bool:
    """True if merging `group` into one node leaves the graph acyclic.

    A cycle appears exactly when some path leaves the group and comes back.
    `contracted` maps ops of other groups that become one node too to all of that
    group's members: a path that reaches one of them goes on from any of them (two
    groups each acyclic alone can still form a cycle between them).
    """
    members = set(group)
    leaving = {succ for op in members for succ in graph.successors(op)} - members
    entering = {pred for op in members for pred in graph.predecessors(op)} - members
    if not leaving or not entering:
        return True
    if not contracted:
        reachable: set[Operation] = set()
        for start in leaving:
            if start not in reachable:
                reachable |= nx.descendants(graph, start) | {start}
        return reachable.isdisjoint(entering)
    seen: set[Operation] = set()
    todo = list(leaving)
    while todo:
        op = todo.pop()
        if op in seen or op in members:
            continue
        if op in entering:
            return False
        seen.add(op)
        todo.extend(graph.successors(op))
        todo.extend(contracted.get(op, ()))
    return True


def topological_reorder(block: Block) -> None:
    """Reorder the block's ops topologically, keeping program order where free.

    Fusion moves a group to one place; this restores dominance afterwards.
    """
    ops = list(block.ops)
    if _in_dataflow_order(ops, block):
        return  # what the sort below would return; most fusions keep the order
    terminator = ops[-1] if ops and ops[-1].has_trait(IsTerminator) else None
    graph = dataflow_graph(block)
    position = {op: i for i, op in enumerate(ops)}
    order = list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
    if terminator is not None:
        order.remove(terminator)
        order.append(terminator)
    if order == ops:
        return
    for op in ops:
        op.detach()
    for op in order:
        block.add_op(op)


def _in_dataflow_order(ops: list[Operation], block: Block) -> bool:
    """Whether every op of `ops` comes after the ops of `block` it uses and the
    terminator, if any, is last. Then the sort keeps `ops` as they are: the earliest
    op not yet placed always has its producers placed."""
    placed: set[Operation] = set()
    for op in ops:
        if not _producers(op, block) <= placed:
            return False
        placed.add(op)
    return not any(op.has_trait(IsTerminator) for op in ops[:-1])


def users_outside(values: Iterable[SSAValue], members: Collection[Operation]) -> list[SSAValue]:
    """The values with at least one use by an op that is not in `members`."""
    return [v for v in values if any(use.operation not in members for use in v.uses)]
