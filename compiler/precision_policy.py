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
               the backward) read it in high precision. The weight and gradient
               quantization of a full MXFP8 recipe is not part of it yet.
    mxfp4-act  the same with e2m1 elements (two codes a byte).

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
    attrs = [dict(d.data) for d in func.arg_attrs.data] if func.arg_attrs else []
    attrs += [{} for _ in range(len(func.args) - len(attrs))]
    for i in indices:
        attrs[i][WEIGHT_MARK] = UnitAttr()
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


def lower_with_policy(module: ModuleOp, policy: PrecisionPolicy, until: str = "kernel") -> None:
    """The default pipeline up to and including stage `until` (coda.compiler.pipeline);
    an activation policy adds quantize-activations right before fuse-quantize (after
    the epilogues are formed). Weight-only policies run later, on the kernel stage
    (apply_weight_only)."""
    from coda.compiler.pipeline import STAGES, lower
    from coda.dialects import make_context
    from coda.passes import PASSES
    from coda.passes.quantize_activations import QuantizeActivations
    from coda.passes.quantize_operands import QuantizeOperands

    element = policy.activation_element
    if element is None and policy.name not in OPERAND_POLICIES:
        lower(module, until)
        return
    if until not in STAGES:
        raise ValueError(f"unknown stage '{until}' (stages: {', '.join(STAGES)})")
    ctx = make_context()
    for stage, passes in STAGES.items():
        for name in passes:
            if name == "fuse-quantize" and element is not None:
                QuantizeActivations(element=element).apply(ctx, module)
            PASSES[name]()().apply(ctx, module)
        if stage == "kernel" and policy.name in OPERAND_POLICIES:
            # every GEMM operand not already in low precision, quantized as it is loaded
            QuantizeOperands(recipe=policy.name).apply(ctx, module)
        if stage == until:
            break
    module.verify()
    QUANTIZED_ACTIVATIONS.append(sum(isinstance(op, StoreQuantizedOp) for op in module.walk()))
