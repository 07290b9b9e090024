"""Element types of the IR and the torch dtypes they stand for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdsl.dialects.builtin import IntegerType, Signedness, bf16, f16, f32, f64, i1, i8, i32, i64
from xdsl.ir import Attribute

if TYPE_CHECKING:
    import torch

_NAMES: dict[str, Attribute] = {
    "float32": f32,
    "float16": f16,
    "bfloat16": bf16,
    "float64": f64,
    "int64": i64,
    "int32": i32,
    "int8": i8,
    "uint8": IntegerType(8, Signedness.UNSIGNED),
    "bool": i1,
}
_BY_TYPE = {v: k for k, v in _NAMES.items()}


def element_type_of(dtype: torch.dtype) -> Attribute | None:
    """The IR element type of a torch dtype, or None if the IR has none."""
    return _NAMES.get(str(dtype).removeprefix("torch."))


def torch_dtype_of(elem: Attribute) -> torch.dtype:
    import torch  # noqa: PLC0415 - the dialects stay importable without torch loaded

    return getattr(torch, _BY_TYPE[elem])
