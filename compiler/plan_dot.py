"""The kernel plan as a Graphviz picture (`lowerc --emit dot`): what fused with what.

One cluster per kernel, colored by kind (GEMM-epilogue, loop, attention, torch
fallback), holding the source ops it computes; edges are the tensors between kernels
and from the function's inputs. Render with `dot -Tsvg plan.dot -o plan.svg`.
"""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp
from xdsl.dialects.func import FuncOp
from xdsl.ir import BlockArgument, SSAValue

from coda.compiler.report import describe_op, fused_ops, kernel_kind, kernels_of
from coda.dialects import graph

# fill colors by kernel kind (`report.kernel_kind`)
_COLORS = {
    "gemm": "#cfe2f3",
    "loop": "#fff2cc",
    "attention": "#d9d2e9",
    "fallback": "#f4cccc",
}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plan_dot(module: ModuleOp) -> str:
    """A `digraph` per function of a module in the kernel dialect."""
    parts = []
    for func in module.ops:
        if isinstance(func, FuncOp):
            parts.append(_func_dot(func))
    return "\n".join(parts)


def _func_dot(func: FuncOp) -> str:
    name = func.sym_name.data
    lines = [f"digraph {_quote(name)} {{", "  rankdir=TB;", "  node [fontsize=10];"]
    anchor: dict[SSAValue, str] = {}  # value -> node that produces it
    for i, arg in enumerate(func.body.block.args):
        node = f"{name}_in{i}"
        lines.append(f"  {node} [shape=ellipse, label={_quote(f'input {i}')}];")
        anchor[arg] = node
    edges: list[str] = []
    for op in func.body.block.ops:  # views between kernels: edges go to what they view
        if isinstance(op, graph.ViewOp) and op.input in anchor:
            anchor[op.result] = anchor[op.input]
    for k, op in enumerate(kernels_of(func)):
        kind = kernel_kind(op)
        cluster = f"cluster_{name}_{k}"
        lines.append(f"  subgraph {cluster} {{")
        lines.append(f"    label={_quote(f'{op.kernel_name} ({kind})')};")
        lines.append(f'    style=filled; fillcolor="{_COLORS[kind]}";')
        ops = fused_ops(op) or [op]
        nodes = [f"{cluster}_op{j}" for j in range(len(ops))]
        for node, inner in zip(nodes, ops, strict=True):
            lines.append(f"    {node} [shape=box, label={_quote(describe_op(inner))}];")
        lines.extend(f"    {a} -> {b};" for a, b in zip(nodes, nodes[1:], strict=False))
        lines.append("  }")
        for value in op.inputs:
            source = anchor.get(value)
            if source is not None:
                edges.append(f"  {source} -> {nodes[0]};")
        for result in op.results:
            anchor[result] = nodes[-1]
    returned = func.body.block.last_op
    for i, value in enumerate(returned.operands if returned is not None else ()):
        if value in anchor and not isinstance(value, BlockArgument):
            lines.append(f"  {name}_out{i} [shape=ellipse, label={_quote(f'output {i}')}];")
            edges.append(f"  {anchor[value]} -> {name}_out{i};")
    lines += sorted(set(edges), key=edges.index)
    lines.append("}")
    return "\n".join(lines) + "\n"
