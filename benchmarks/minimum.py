"""The compulsory minimum: bytes no implementation can avoid moving.

Parameters, inputs and outputs are moved once each; for training also the output
gradient (read), the parameter and input gradients (written) and each activation saved
for the backward, counted once (written by the forward; the matching read in the
backward is not counted, as if it stayed in cache: a floor, not an estimate). The saved
set is what AOTAutograd's min-cut partitioner keeps, as used by coda.
"""

from __future__ import annotations

import torch
import torch.fx as fx

from benchmarks.measure import Measurement
from benchmarks.plan import capture_graphs
from benchmarks.roofline import kernel_time
from benchmarks.workloads import MODELS, Workload
from coda.compiler.capture import CapturedGraphs


def _val_bytes(node: fx.Node) -> int:
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return 0
    return val.numel() * val.element_size()


def _outputs(gm: fx.GraphModule) -> list[fx.Node]:
    (out,) = [n for n in gm.graph.nodes if n.op == "output"]
    return [n for n in out.args[0] if isinstance(n, fx.Node)]


def compulsory_bytes(captured: CapturedGraphs) -> int:
    """Placeholders of the first graph, every tensor a graph returns that it did not
    receive, and the placeholders of later graphs that no earlier graph had or produced
    (AOTAutograd names a saved value the same in both graphs)."""
    total = 0
    produced: set[str] = set()
    for index, (kind, gm) in enumerate(captured.graphs):
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        for node in placeholders:
            if index == 0 or node.name not in produced:
                total += _val_bytes(node)
        if kind == "backward" and not any(_val_bytes(n) for n in _outputs(gm)):
            raise ValueError("the backward graph returns no gradients (captured on meta?)")
        names = {n.name for n in placeholders}
        # a parameter or input the backward reads again was counted with the forward's
        produced |= names
        for node in dict.fromkeys(_outputs(gm)):
            if node.name not in names:
                total += _val_bytes(node)
                produced.add(node.name)
    return total


def measure_minimum(workload: Workload) -> Measurement:
    from benchmarks.inductor_system import workload_flops

    captured = capture_graphs(
        MODELS[workload.model], workload.input_shape, training=workload.training
    )
    nbytes = compulsory_bytes(captured)
    flops = workload_flops(workload)
    return Measurement(
        system="minimum",
        workload=workload.key,
        launches=None,
        bytes=nbytes,
        flops=flops,
        modeled_s=kernel_time(flops, nbytes),
    )
