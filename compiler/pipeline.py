"""The default pass pipeline, stage by stage.

Each stage is the IR after a prefix of the pipeline; `lowerc --emit STAGE` prints it
and the backend runs the whole thing.
"""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp

from coda.dialects import make_context
from coda.passes import PASSES

#: stage name -> the passes that produce it from the previous stage
STAGES: dict[str, tuple[str, ...]] = {
    # symbolic sizes stay symbolic through this stage (passes.SYMBOLIC_PASSES)
    "graph": ("fuse-rotary", "canonicalize", "fold-views"),
    "epilogue": (
        # planning needs numbers: a graph's symbolic sizes are bound here, to the sizes
        # it was traced at by default (the backend binds each call's sizes itself)
        "bind-sizes",
        "fuse-prologues",
        "concat-projections",
        "fuse-epilogues",
        "fuse-reductions",
        "expand-logsumexp",
        "fuse-quantize",
    ),
    "kernel": ("split-blocks", "fuse-dequantize", "chain-gemms"),
}
IR_STAGES = tuple(STAGES)


def stages(until: str = "kernel", start: str = "graph") -> list[tuple[str, tuple[str, ...]]]:
    """The stages from `start` up to and including `until`, with their passes."""
    for name in (start, until):
        if name not in STAGES:
            raise ValueError(f"unknown stage '{name}' (stages: {', '.join(STAGES)})")
    names = list(STAGES)
    return [(s, STAGES[s]) for s in names[names.index(start) : names.index(until) + 1]]


def lower(module: ModuleOp, until: str = "kernel", start: str = "graph") -> ModuleOp:
    """Run the default pipeline in place from stage `start` (a module that is already
    at the stage before it) up to and including stage `until`."""
    ctx = make_context()
    for _, passes in stages(until, start):
        for name in passes:
            PASSES[name]()().apply(ctx, module)
    module.verify()
    return module
