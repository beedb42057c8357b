"""``logwarden.windows.v1``: a closed (or revised) windowed aggregate of one series."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict

Scope = Literal["service", "route", "metric", "template", "edge"]


class WindowStats(BaseModel):
    """Aggregates of one series over one tumbling event-time window ``[start, end)``."""

    model_config = ConfigDict(frozen=True)

    series: str  # "svc", "svc GET /cart", "svc/cpu{host=a}", "svc#<template id>", "a->b"
    service: str
    scope: Scope
    route: str = ""
    name: str = ""  # metric name, template id, or the callee of an edge
    window_s: int
    start: datetime
    end: datetime
    count: int = 0
    error_count: int = 0
    level_counts: dict[str, int] = {}
    error_rate: float = 0.0
    rate_per_s: float = 0.0
    p50: float = float("nan")  # latency (ms) for logs; NaN when no durations
    p95: float = float("nan")
    p99: float = float("nan")
    samples: int = 0  # latencies behind p50/p95/p99 (0 from producers older than the field)
    min: float = float("nan")  # metric points
    max: float = float("nan")
    mean: float = float("nan")
    last: float = float("nan")
    sum: float = 0.0
    revision: int = 0  # > 0 when late events re-opened a closed window

    def to_json(self) -> bytes:
        """orjson bytes (NaN becomes null)."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, raw: bytes) -> WindowStats:
        """Parse a message of the windows topic (null back to NaN)."""
        data = orjson.loads(raw)
        for k in ("p50", "p95", "p99", "min", "max", "mean", "last"):
            if data.get(k) is None:
                data[k] = float("nan")
        return cls.model_validate(data)
