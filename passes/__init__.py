"""coda's passes, one module each, registered by name for `lowerc -p`."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def _bind_sizes() -> type[ModulePass]:
    from coda.passes.bind_sizes import BindSizes

    return BindSizes


def _canonicalize() -> type[ModulePass]:
    from coda.passes.canonicalize import Canonicalize

    return Canonicalize


def _fuse_rotary() -> type[ModulePass]:
    from coda.passes.fuse_rotary import FuseRotary

    return FuseRotary


def _fuse_epilogues() -> type[ModulePass]:
    from coda.passes.fuse_epilogues import FuseEpilogues

    return FuseEpilogues


def _fuse_prologues() -> type[ModulePass]:
    from coda.passes.fuse_prologues import FusePrologues

    return FusePrologues


def _concat_projections() -> type[ModulePass]:
    from coda.passes.concat_projections import ConcatProjections

    return ConcatProjections


def _fuse_reductions() -> type[ModulePass]:
    from coda.passes.fuse_reductions import FuseReductions

    return FuseReductions


def _expand_logsumexp() -> type[ModulePass]:
    from coda.passes.expand_logsumexp import ExpandLogsumexp

    return ExpandLogsumexp


def _split_blocks() -> type[ModulePass]:
    from coda.passes.split_blocks import SplitBlocks

    return SplitBlocks


def _chain_gemms() -> type[ModulePass]:
    from coda.passes.chain_gemms import ChainGemms

    return ChainGemms


def _fold_layouts() -> type[ModulePass]:
    from coda.passes.fold_layouts import FoldLayouts

    return FoldLayouts


def _fold_views() -> type[ModulePass]:
    from coda.passes.fold_views import FoldViews

    return FoldViews


def _precision() -> type[ModulePass]:
    from coda.passes.precision import Precision

    return Precision


def _fuse_quantize() -> type[ModulePass]:
    from coda.passes.fuse_quantize import FuseQuantize

    return FuseQuantize


def _fuse_dequantize() -> type[ModulePass]:
    from coda.passes.fuse_dequantize import FuseDequantize

    return FuseDequantize


def _quantize_activations() -> type[ModulePass]:
    from coda.passes.quantize_activations import QuantizeActivations

    return QuantizeActivations


def _quantize_operands() -> type[ModulePass]:
    from coda.passes.quantize_operands import QuantizeOperands

    return QuantizeOperands


#: pass name -> factory of the pass class (lazy, as xDSL's registries are)
PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "bind-sizes": _bind_sizes,
    "canonicalize": _canonicalize,
    "fuse-rotary": _fuse_rotary,
    "fuse-epilogues": _fuse_epilogues,
    "fuse-prologues": _fuse_prologues,
    "concat-projections": _concat_projections,
    "fuse-reductions": _fuse_reductions,
    "expand-logsumexp": _expand_logsumexp,
    "split-blocks": _split_blocks,
    "fold-layouts": _fold_layouts,
    "fold-views": _fold_views,
    "precision": _precision,
    "fuse-quantize": _fuse_quantize,
    "fuse-dequantize": _fuse_dequantize,
    "chain-gemms": _chain_gemms,
    "quantize-activations": _quantize_activations,
    "quantize-operands": _quantize_operands,
}

#: the passes that take a graph with symbolic sizes (dialects/graph_dims.py) as it is:
#: their rewrites compare dims structurally, sizes being at least 2 as Dynamo's are. The
#: others plan with numbers (tiles, row groups) and run after bind-sizes
SYMBOLIC_PASSES = frozenset({"bind-sizes", "fuse-rotary", "canonicalize", "fold-views"})

__all__ = ["PASSES", "SYMBOLIC_PASSES"]
