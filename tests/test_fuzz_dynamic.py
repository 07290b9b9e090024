"""Differential fuzzing with symbolic sizes: each random graph of tests/test_fuzz.py is
compiled once with `dynamic=True` (every dim a size symbol, so the symbolic import,
`bind-sizes` and the per-size plans see matmul, norm and view dims that vary) and called
at three sizes of one of its dims; every call must match eager, forward and backward.

    CI=1 pytest tests/test_fuzz_dynamic.py                    # 30 graphs, derandomized
    CODA_FUZZ_DYNAMIC_EXAMPLES=500 pytest tests/test_fuzz_dynamic.py
    python tests/test_fuzz_dynamic.py 500 1                  # long run: GRAPHS SEED
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import GraphSpec, Step, check, graph_specs, long_run, program

EXAMPLES = int(os.environ.get("CODA_FUZZ_DYNAMIC_EXAMPLES", "30" if os.environ.get("CI") else "8"))
#: how much the varied dim grows at the second and third call (it only grows: a narrow
#: of the last dim keeps its bounds)
GROWTH = (0, 3, 6)


def resized(spec: GraphSpec, old: int, new: int) -> GraphSpec:
    """`spec` with every dim of size `old` (Dynamo gives equal sizes one symbol) `new`."""

    def size(d: int) -> int:
        return new if d == old else d

    return dataclasses.replace(
        spec, inputs=tuple(tuple(size(d) for d in shape) for shape in spec.inputs)
    )


def _step_sizes(steps: tuple[Step, ...]) -> set[int]:
    """Numbers in the steps that a size must not equal: the program is fixed by them."""
    return {a for step in steps if step.op in ("expand", "narrow") for a in step.args}


def check_dynamic(spec: GraphSpec, seed: int) -> None:
    varied = max(spec.inputs[0])
    # a varied size must be one symbol that only the inputs' shapes carry
    if varied == 1 or varied in _step_sizes(spec.steps):
        return  # (no dim to vary: the graph is the static fuzzer's)
    # a size tied to another by arithmetic (a [9, 3] operand of a flattened [3, 3]) does
    # not vary with it: such a resized graph is not a graph, eager rejects it too
    specs = [resized(spec, varied, varied + growth) for growth in GROWTH]
    specs = [s for s in specs if _runs_eagerly(s)]
    if len(specs) < 2:
        return
    torch._dynamo.reset()
    compiled = torch.compile(program(spec), backend="coda", fullgraph=True, dynamic=True)
    for each in specs:
        check(each, seed, compiled)


def _runs_eagerly(spec: GraphSpec) -> bool:
    try:
        with torch.no_grad():
            program(spec)(*(torch.zeros(s) for s in spec.inputs))
    except RuntimeError:
        return False
    return True


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(spec=graph_specs(), seed=st.integers(0, 2**16))
def test_random_graphs_with_symbolic_sizes_match_eager(spec: GraphSpec, seed: int) -> None:
    check_dynamic(spec, seed)


#: shrunk cases this fuzzer found, kept as regression tests
REGRESSIONS: list[tuple[GraphSpec, int]] = [
    # dynamic=True lifts the Python float into an f64 input: the opaque scalar_tensor call
    # whose only keyword is dtype had its keywords decoded as a dtype
    (
        GraphSpec("bfloat16", ((4, 3, 4),), (Step("binary", ("div", "number", 0.75, False)),), 0),
        3067,
    ),
    # a gradient read by two GEMMs, one through a transpose: bind-sizes reverses use
    # lists, and fuse-prologues erased the transpose it inserted before
    (
        GraphSpec(
            "bfloat16",
            ((31, 33), (33, 33)),
            (Step("linear", (1, -1)), Step("binary", ("sub", "number", 0.75, False))),
            1,
        ),
        2850,
    ),
    # a LayerNorm over a symbolic dim: its variance divides by a size (graph.size)
    (GraphSpec("float32", ((2,),), (Step("norm", ("layer_norm", -1, -1)),), 0), 0),
    # a narrow of a symbolic dim in the backward (slice_backward with a size for bounds):
    # the joint graph's rotary matcher did arithmetic on the size node
    (
        GraphSpec(
            "float32",
            ((2,), (2,)),
            (
                Step("norm", ("rms_norm", 1, -1)),
                Step("residual", (0,)),
                Step("narrow", (1, 1)),
                Step("unary", ("silu",)),
            ),
            0,
        ),
        0,
    ),
    # planned per size (the symbolic import declines): the backward's saved activations
    # come contiguous from coda's forward, the trace had them permuted and views them
    (
        GraphSpec(
            "bfloat16",
            ((5, 5), (2, 1), (31, 5)),
            (
                Step("unsqueeze", (2,)),
                Step("linear", (1, -1)),
                Step("permute"),
                Step("unary", ("leaky_relu",)),
                Step("permute"),
                Step("linear", (2, -1)),
            ),
            0,
        ),
        0,
    ),
    # a LayerNorm of constant rows over a symbolic dim, run through the graph stage
    # symbolic: sum / graph.size stayed a division (only sum / constant was a mean), so
    # the loop kernel did not accumulate the mean in float64 as it does at any static size
    # and the rows' x - mean was a rounding error amplified by 1/sqrt(eps)
    (
        GraphSpec(
            "float32",
            ((31, 4), (17,), (17,)),
            (
                Step("binary", ("add", "number", 0.75, False)),
                Step("reduce", ("amax", -1, True)),
                Step("expand", (1, 17)),
                Step("norm", ("layer_norm_affine", 1, 2)),
            ),
            1,
        ),
        65536,
    ),
]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
@pytest.mark.parametrize("spec, seed", REGRESSIONS)
def test_regression(spec: GraphSpec, seed: int) -> None:
    check_dynamic(spec, seed)


if __name__ == "__main__":
    import sys
    import tempfile

    os.environ.setdefault("CODA_STRICT", "1")
    os.environ.setdefault("CODA_CACHE_DIR", tempfile.mkdtemp(prefix="coda-fuzz-cache-"))
    sys.exit(1 if long_run(int(sys.argv[1]), int(sys.argv[2]), check_dynamic) else 0)
