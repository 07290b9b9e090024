"""Low-precision policies as users turn them on, and the weights they pack.

    torch.compile(model, backend="coda", options={"precision": "w4a16"})
    options={"precision": {"policy": "nvfp4", "exclude": ["lm_head"]}}

Weight-only inference policies (the activations stay in the model's dtype):

    w4a16   signed int4, symmetric, groups of 32 along K, float32 scales
    w3a16   signed int3, the same (3 bits per weight, packed densely: 8 codes in 3 bytes)
    nvfp4   e2m1 in blocks of 16 with an E4M3 block scale and a float32 tensor scale

The backend marks the parameters of an inference graph `{lowp.weight}` (the ones whose
Dynamo name contains no `exclude` entry), the `precision` pass rewrites the GEMM
kernels that read them to dequantize packed storage in their mainloops, and
`pack_arguments` fills that storage from the parameters' values, once, when the graph
is compiled. Training graphs compile without a weight-only policy (logged).

Activation policies (training and inference):

    mxfp8-act  every activation a GEMM epilogue produces and another GEMM reads as its
               left operand (forward and backward graphs alike) is MX-quantized
               (e4m3fn, blocks of 32 along K, E8M0 scale, floor rule) in the producing
               epilogue and dequantized in the reading GEMM's mainloop. Weights, the
               optimizer's master weights and the gradients the backward returns stay
               float32; other readers of an activation (residual adds, values saved for
               the backward) read it in high precision. The full recipe, weights and
               gradients included, is `mxfp8` below.
    mxfp4-act  the same with e2m1 elements (two codes a byte).

Training recipes (every GEMM, forward and backward; coda.passes.quantize_operands):

    fp8-rowwise     both operands of every 2-D GEMM are e4m3fn with one float32 scale per
                    row of the contraction dim K (scale = amax / 448, torchao's and
                    Transformer Engine's arithmetic; scales are not rounded to powers of
                    two): the forward y = x·Wᵀ (x per token, W per output feature), the
                    dgrad dx = dy·W (dy per token, W per input feature, i.e. along the
                    output features it contracts) and the wgrad dW = dyᵀ·x (both along
                    the tokens). e4m3 for the gradients as well (torchao's rowwise
                    recipe; the e5m2-gradient variant is not offered).
    fp8-tensorwise  the same with one float32 scale per operand.
    mxfp8           MX e4m3fn (blocks of 32 along K, E8M0 scale, floor rule) for the same
                    operands; activations a GEMM epilogue produces for the next GEMM are
                    quantized in that epilogue (as mxfp8-act), the rest as the consuming
                    mainloop loads them. Operands whose K is not a multiple of 32 (e.g. a
                    wgrad over fewer tokens) stay float32.

Master weights, the optimizer state and the gradients the backward returns stay float32
(the GEMMs accumulate in float32 and return float32); only GEMM inputs are rounded. On
GPUs the scaled GEMM runs on the tensor cores' fp8 MMA (row/tensor scales applied to the
accumulator after the mainloop) or block-scaled MMA (`tl.dot_scaled`, sm_100a; Hopper has
no MX MMA and Triton emulates it there); under the interpreter tiles are dequantized and
multiplied in float32, which gives the numbers of the recipe exactly. Documented bounds,
checked in tests/test_lowp_scaled_training.py on the MLP and the Llama-style block
against a reference emulated with torchao's quantizers: forward within 1e-5 and
gradients within 1e-3 (relative L2); 20 SGD steps within 1% of bf16 autocast's loss at
every step. `exclude` keeps the named layers' forward, dgrad and wgrad GEMMs in float32.

Each compile records what it packed in `PACKED_WEIGHTS` (bytes at the packed width
against the full-precision parameter), which is how the memory saving is measured.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    Signedness,
    StringAttr,
    TensorType,
    UnitAttr,
)
from xdsl.dialects.func import FuncOp

from coda.dialects.lowp import ScaledType, StoreQuantizedOp, element_bits
from coda.passes.precision import WEIGHT_MARK, WEIGHT_ONLY_POLICIES
from coda.passes.quantize_operands import KEEP_MARK
from coda.runtime import quantize as Q

log = logging.getLogger("coda.compiler")


#: per graph lowered with an activation policy: how many activations its epilogues
#: quantize (lowp.store_quantized ops), in compile order
QUANTIZED_ACTIVATIONS: list[int] = []

#: activation policy -> MX element of the activations between GEMMs
ACTIVATION_POLICIES = {"mxfp8-act": "e4m3fn", "mxfp4-act": "e2m1", "mxfp8": "e4m3fn"}
#: training recipes that quantize the operands of every GEMM (quantize-operands)
OPERAND_POLICIES = ("fp8-rowwise", "fp8-tensorwise", "mxfp8")


@dataclass(frozen=True)
class PrecisionPolicy:
    name: str = "none"
    #: parameters whose Dynamo name contains one of these stay in full precision
    exclude: tuple[str, ...] = ()

    @property
    def weight_only(self) -> bool:
        return self.name in WEIGHT_ONLY_POLICIES

    @property
    def activation_element(self) -> str | None:
        """The MX element type of an activation policy (None: not one)."""
        return ACTIVATION_POLICIES.get(self.name)

    @classmethod
    def from_user(cls, value: Any) -> PrecisionPolicy:
        if value is None:
            return cls()
        if isinstance(value, str):
            value = {"policy": value}
        if not isinstance(value, dict) or set(value) - {"policy", "exclude"}:
            raise ValueError(
                'precision must be a policy name or {"policy": name, "exclude": [names]}, '
                f"got {value!r}"
            )
        name = value.get("policy", "none")
        known = tuple(dict.fromkeys(("none", *WEIGHT_ONLY_POLICIES, *ACTIVATION_POLICIES,
                                     *OPERAND_POLICIES)))  # fmt: skip
        if name not in known:
            raise ValueError(f"precision policy must be one of {', '.join(known)}, got {name!r}")
        return cls(name, tuple(value.get("exclude", ())))


@dataclass(frozen=True)
class PackedWeight:
    """One weight as a compile packed it."""

    name: str
    shape: tuple[int, ...]
    format: str
    packed_bytes: int  # codes + scales, as stored
    original_bytes: int  # the full-precision parameter


@dataclass
class PackReport:
    policy: str
    weights: list[PackedWeight] = field(default_factory=list)

    @property
    def packed_bytes(self) -> int:
        return sum(w.packed_bytes for w in self.weights)

    @property
    def original_bytes(self) -> int:
        return sum(w.original_bytes for w in self.weights)


#: one report per graph compiled with a weight-only policy, in compile order
PACKED_WEIGHTS: list[PackReport] = []


def mark_weights(func: FuncOp, indices: Sequence[int]) -> None:
    """Mark function arguments `indices` as weights for the precision pass."""
    _mark(func, indices, WEIGHT_MARK)


def _mark(func: FuncOp, indices: Sequence[int], mark: str) -> None:
    attrs = [dict(d.data) for d in func.arg_attrs.data] if func.arg_attrs else []
    attrs += [{} for _ in range(len(func.args) - len(attrs))]
    for i in indices:
        attrs[i][mark] = UnitAttr()
    func.arg_attrs = ArrayAttr([DictionaryAttr(a) for a in attrs])


def pack_weight(weight: torch.Tensor, scaled: ScaledType) -> list[torch.Tensor]:
    """The storage of `weight` [N, K] in `scaled`'s format: packed codes, scales (and
    NVFP4's tensor scale), as lowp.storage_types lists them."""
    w = weight.detach().to(torch.float32)
    elem = scaled.element_type
    bits = element_bits(elem)
    if isinstance(elem, IntegerType):
        fmt = Q.IntFormat(bits, elem.signedness.data == Signedness.SIGNED)
        q = Q.quantize_int(w, fmt, scaled.block_shape[1])
        return [Q.pack_bits(q.codes, bits), q.scale]
    if scaled.granularity.data == "nvfp4":
        q = Q.quantize_nvfp4(w)
        assert q.tensor_scale is not None
        return [Q.pack_bits(q.codes, 4), q.scale, q.tensor_scale]
    raise ValueError(f"no weight packing for {scaled}")


def dequantized_weight(weight: torch.Tensor, policy: str) -> torch.Tensor:
    """`weight` as the policy's kernels see it: quantized, then dequantized (float32).
    The reference that tests compare a compiled model against."""
    fmt = WEIGHT_ONLY_POLICIES[policy]
    data = weight.detach().to(torch.float32)
    if isinstance(fmt.element, IntegerType):
        ifmt = Q.IntFormat(element_bits(fmt.element), True)
        return Q.dequantize_int(Q.quantize_int(data, ifmt, fmt.block[1]), ifmt)
    return Q.dequantize_nvfp4(Q.quantize_nvfp4(data))


def pack_arguments(
    func: FuncOp, values: dict[int, torch.Tensor], names: dict[int, str], policy: str
) -> list[torch.Tensor]:
    """Values of the arguments the precision pass appended, in order, from the weights'
    values (`values`: argument index -> tensor). Records a PackReport."""
    packed: dict[int, list[torch.Tensor]] = {}
    out: list[torch.Tensor] = []
    report = PackReport(policy)
    assert func.arg_attrs is not None
    for attrs in func.arg_attrs.data:
        source = attrs.data.get("lowp.packs")
        if source is None:
            continue
        assert isinstance(source, IntegerAttr)
        index = source.value.data
        part = attrs.data["lowp.part"]
        scaled = attrs.data["lowp.format"]
        assert isinstance(part, StringAttr) and isinstance(scaled, ScaledType)
        if index not in packed:
            weight = values[index]
            packed[index] = pack_weight(weight, scaled)
            report.weights.append(
                PackedWeight(
                    names.get(index, f"arg{index}"),
                    tuple(weight.shape),
                    policy,
                    sum(t.numel() * t.element_size() for t in packed[index]),
                    weight.numel() * weight.element_size(),
                )
            )
        parts = packed[index]
        out.append(parts[("codes", "scale", "gscale").index(part.data)].to(values[index].device))
    PACKED_WEIGHTS.append(report)
    log.info(
        "coda: %s packed %d weights: %d bytes (full precision: %d)",
        policy, len(report.weights), report.packed_bytes, report.original_bytes,
    )  # fmt: skip
    return out


def apply_weight_only(
    func: FuncOp,
    policy: PrecisionPolicy,
    graph_kind: str,
    params: dict[int, tuple[str, torch.Tensor]],
) -> list[torch.Tensor]:
    """Run a weight-only policy on `func` (in the kernel dialect) and return the packed
    storage the program takes after its other inputs ([] when nothing is packed).
    `params`: graph input index -> (Dynamo name, the parameter's value)."""
    if not policy.weight_only:
        return []
    if graph_kind != "inference":
        log.warning("coda: %s is an inference policy: the %s graph is compiled without it",
                    policy.name, graph_kind)  # fmt: skip
        return []
    from coda.dialects import make_context
    from coda.passes.precision import Precision

    weights = {
        i: (name, value)
        for i, (name, value) in params.items()
        if i < len(func.args)
        and isinstance(func.args[i].type, TensorType)
        and value.dim() == 2
        and tuple(value.shape) == tuple(func.args[i].type.get_shape())
        and not any(pattern in name for pattern in policy.exclude)
    }
    mark_weights(func, sorted(weights))
    module = func.parent_op()
    assert module is not None
    Precision(policy=policy.name).apply(make_context(), module)
    module.verify()
    values = {i: value for i, (_, value) in weights.items()}
    # AOTAutograd compiles under a fake-tensor mode: packing computes on the real values
    with unset_fake_temporarily():
        return pack_arguments(func, values, {i: n for i, (n, _) in weights.items()}, policy.name)


def mark_excluded(
    func: FuncOp,
    placeholders: Sequence[str],
    output_slots: Sequence[int | None],
    graph_kind: str,
    policy: PrecisionPolicy,
    params: dict[int, tuple[str, torch.Tensor]],
) -> None:
    """Mark {lowp.keep} what the layers `policy.exclude` names own, so that the operand
    recipes leave their GEMMs in full precision: their parameters (graph inputs, named
    by Dynamo in `params`) in the forward and inference graphs; in the backward graph
    the same parameters saved for it (AOTAutograd keeps the forward's placeholder names,
    primals_<i+1> for input i) and the gradients it returns for them (output i is the
    gradient of input i; `output_slots` maps it to a returned value)."""
    if policy.name not in OPERAND_POLICIES or not policy.exclude:
        return
    excluded = {i for i, (name, _) in params.items() if any(p in name for p in policy.exclude)}
    if not excluded:
        return
    if graph_kind == "backward":
        args = [k for k, name in enumerate(placeholders) if _primal_index(name) in excluded]
        slots = {output_slots[i] for i in excluded if i < len(output_slots)}
        results = {slot for slot in slots if slot is not None}
    else:
        args, results = sorted(i for i in excluded if i < len(func.args)), set()
    _mark(func, args, KEEP_MARK)
    outputs = len(func.function_type.outputs.data)
    func.res_attrs = ArrayAttr(
        [DictionaryAttr({KEEP_MARK: UnitAttr()} if r in results else {}) for r in range(outputs)]
    )


def _primal_index(name: str) -> int | None:
    prefix, _, number = name.rpartition("_")
    return int(number) - 1 if prefix == "primals" and number.isdigit() else None


def lower_with_policy(
    module: ModuleOp, policy: PrecisionPolicy, until: str = "kernel", start: str = "graph"
) -> None:
    """The default pipeline from stage `start` up to and including stage `until`
    (coda.compiler.pipeline); an activation policy adds quantize-activations right
    before fuse-quantize (after the epilogues are formed). Weight-only policies run
    later, on the kernel stage (apply_weight_only)."""
    from coda.compiler.pipeline import lower, stages
    from coda.dialects import make_context
    from coda.passes import PASSES
    from coda.passes.quantize_activations import QuantizeActivations
    from coda.passes.quantize_operands import QuantizeOperands

    element = policy.activation_element
    if element is None and policy.name not in OPERAND_POLICIES:
        lower(module, until, start)
        return
    ctx = make_context()
    for stage, passes in stages(until, start):
        for name in passes:
            if name == "fuse-quantize" and element is not None:
                QuantizeActivations(element=element).apply(ctx, module)
            if name in ("fuse-prologues", "concat-projections", "chain-gemms"):
                # the quantizers of these recipes read each GEMM operand from memory as
                # one tensor (a row amax over K runs before the mainloop): a normalized
                # activation is written, projections of different widths stay apart and
                # no GEMM reads another's output tiles on chip
                continue
            PASSES[name]()().apply(ctx, module)
        if stage == "kernel" and policy.name in OPERAND_POLICIES:
            # every GEMM operand not already in low precision, quantized as it is loaded
            QuantizeOperands(recipe=policy.name).apply(ctx, module)
    module.verify()
    QUANTIZED_ACTIVATIONS.append(sum(isinstance(op, StoreQuantizedOp) for op in module.walk()))
