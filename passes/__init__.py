"""coda's passes, one module each, registered by name for `lowerc -p`."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def _canonicalize() -> type[ModulePass]:
    from coda.passes.canonicalize import Canonicalize

    return Canonicalize


def _fuse_epilogues() -> type[ModulePass]:
    from coda.passes.fuse_epilogues import FuseEpilogues

    return FuseEpilogues


def _split_blocks() -> type[ModulePass]:
    from coda.passes.split_blocks import SplitBlocks

    return SplitBlocks


#: pass name -> factory of the pass class (lazy, as xDSL's registries are)
PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "canonicalize": _canonicalize,
    "fuse-epilogues": _fuse_epilogues,
    "split-blocks": _split_blocks,
}

__all__ = ["PASSES"]
