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
    # a graph with symbolic sizes is planned at the sizes it was traced at
    "graph": ("bind-sizes", "fuse-rotary", "canonicalize", "fold-views"),
    "epilogue": (
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


def lower(module: ModuleOp, until: str = "kernel") -> ModuleOp:
    """Run the default pipeline in place up to and including stage `until`."""
    if until not in STAGES:
        raise ValueError(f"unknown stage '{until}' (stages: {', '.join(STAGES)})")
    ctx = make_context()
    for stage, passes in STAGES.items():
        for name in passes:
            PASSES[name]()().apply(ctx, module)
        if stage == until:
            break
    module.verify()
    return module
