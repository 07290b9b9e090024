"""What one system measured on one workload."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any


@dataclass
class Measurement:
    system: str  # "eager" | "inductor" | "inductor-max-autotune" | "coda" | "minimum"
    workload: str  # Workload.key
    launches: int | None
    bytes: int
    flops: int = 0
    #: modeled H100 time in seconds (see roofline.py)
    modeled_s: float | None = None
    #: compile times in seconds, in the order measured (the first is the cold one)
    compile_s: list[float] = field(default_factory=list)
    #: free-form facts worth keeping next to the figure
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def compile_median_s(self) -> float | None:
        return median(self.compile_s) if self.compile_s else None

    @property
    def compile_cold_s(self) -> float | None:
        return self.compile_s[0] if self.compile_s else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        return cls(**data)
