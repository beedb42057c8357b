"""``logwarden.windows.v1``: a closed (or revised) windowed aggregate of one series."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict

PEER_Q = 0.9  # scope instance: the siblings' percentile an instance's latencies are counted above
Scope = Literal["service", "route", "metric", "template", "edge", "instance"]


class WindowStats(BaseModel):
    """Aggregates of one series over one tumbling event-time window ``[start, end)``."""

    model_config = ConfigDict(frozen=True)

    series: str  # "svc", "svc GET /cart", "svc/cpu{host=a}", "svc#<template id>", "a->b",
    # "svc@pod" (an instance's request latencies: scope instance, name = the pod or host)
    service: str
    scope: Scope
    route: str = ""
    name: str = ""  # metric name, template id, the callee of an edge, or the instance
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
    # route and edge windows: their latencies by coarse log bucket, a factor e^0.2 apart
    # (``detectors.slow_calls.key_of``), for the scorer's count of slow calls
    lat_hist: dict[int, int] = {}
    min: float = float("nan")  # metric points
    max: float = float("nan")
    mean: float = float("nan")
    last: float = float("nan")
    sum: float = 0.0
    # scope instance, base windows: its siblings' (the service's other latencies in the same
    # window): how many, their median and p90 (``PEER_Q``), how many of this instance's lie
    # above that p90, and how many other instances there were
    peer_samples: int = 0
    peer_p50: float = float("nan")
    peer_p90: float = float("nan")
    above_peer_p90: int = 0
    peer_instances: int = 0  # the other instances among them
    revision: int = 0  # > 0 when late events re-opened a closed window
    # emitted while still open (its service idle, a shutdown, a rebalance) and not ended
    # before the newest event of its partition: the stream may have stopped within it (a
    # replay's end, a collector that stops), so its counts may be cut short. Emitted again
    # when it closes
    partial: bool = False
    # where it was counted: "<topic>:<partition>" of the ingest stage ("" from producers
    # older than the field). The scorer imputes a service's silence only as far as its own
    # source has gone: at full speed one partition runs minutes ahead of another
    source: str = ""

    def to_json(self) -> bytes:
        """orjson bytes (NaN becomes null)."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, raw: bytes) -> WindowStats:
        """Parse a message of the windows topic (null back to NaN)."""
        data = orjson.loads(raw)
        for k in ("p50", "p95", "p99", "min", "max", "mean", "last", "peer_p50", "peer_p90"):
            if data.get(k) is None:
                data[k] = float("nan")
        return cls.model_validate(data)
