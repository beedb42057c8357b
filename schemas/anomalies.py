"""``logwarden.anomalies.v1``: an anomaly found by a detector, with its context.

One message per anomaly, keyed by series. ``variant`` says which detector configuration
raised it: ``champion`` anomalies are the ones alerting acts on, ``challenger`` ones run in
shadow for A/B comparison (``logwarden detect compare``).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

Variant = Literal["champion", "challenger"]


class RecentChange(BaseModel):
    """A deploy / config / flag change near the anomaly (same or neighbouring service)."""

    model_config = ConfigDict(frozen=True)

    ts: int  # epoch ms
    service: str
    kind: str
    description: str


PERCENTILES = ("p50", "p95", "p99")  # the latency features


class AnomalyEvent(BaseModel):
    """A scored window that crossed its series' threshold."""

    model_config = ConfigDict(frozen=True)

    id: str
    ts: int  # window end, epoch ms
    series: str
    service: str
    route: str = ""
    scope: str = "service"
    feature: str  # rate_per_s, error_rate, p95, p99, mean, count, or "vector" (multivariate)
    window_s: int = 10
    observed: float
    expected: float
    lo: float
    hi: float
    score: float  # calibrated, 0..1, comparable across series
    threshold: float  # the series' threshold when it fired
    direction: Literal["up", "down"] = "up"
    severity: Literal["critical", "warning", "info"] = "warning"
    detector: str = "series"
    version: str = "1"
    variant: Variant = "champion"
    contributing: dict[str, float] = Field(default_factory=dict)  # feature -> raw z
    changes: list[RecentChange] = Field(default_factory=list)
    # epoch ms: the first window of the service's run of bad windows (alarming, or so but for
    # a cooldown, or still out of an alarm's band): its disturbance began then; None: unknown
    since: int | None = None

    def to_json(self) -> bytes:
        """orjson bytes (NaN becomes null)."""
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, raw: bytes) -> AnomalyEvent:
        """Parse a message of the anomalies topic."""
        return cls.model_validate(orjson.loads(raw))


def anomaly_id(variant: str, detector: str, series: str, feature: str, window_s: int,
               ts_ms: int) -> str:
    """A deterministic id: a replayed window yields the same anomaly (idempotent rows)."""
    key = f"{variant}|{detector}|{series}|{feature}|{window_s}|{ts_ms}".encode()
    return "an-" + hashlib.blake2b(key, digest_size=10).hexdigest()
