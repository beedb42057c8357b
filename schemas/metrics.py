"""``logwarden.metrics.v1``: one metric point."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from schemas.base import ContractModel
from schemas.common import ServiceName, ShortStr, Timestamp

MetricName = Annotated[str, Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:.]{0,199}$")]


class MetricPoint(ContractModel):
    """A gauge or counter sample."""

    ts: Timestamp
    service: ServiceName
    name: MetricName
    value: float
    kind: Literal["gauge", "counter"] = "gauge"
    unit: ShortStr | None = None
    labels: dict[ShortStr, ShortStr] = Field(default_factory=dict, max_length=32)
    attrs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("value must be a finite number")
        return v

    @property
    def series(self) -> str:
        """The series key: ``service/name{k=v,...}`` with labels sorted."""
        return series_key(self.service, self.name, self.labels)


def series_key(service: str, name: str, labels: dict[str, str] | None = None) -> str:
    """Canonical key of a metric series."""
    if not labels:
        return f"{service}/{name}"
    inner = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return f"{service}/{name}{{{inner}}}"
