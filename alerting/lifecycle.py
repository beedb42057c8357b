"""Alerts and their lifecycle: firing -> acknowledged -> resolved, keyed by a fingerprint.

Each transition is a pure function of (alert, event, now), so the worker can keep alerts in
a Faust table keyed by fingerprint. Flapping uses hysteresis: an alert starts flapping when
it changed state ``high`` times within ``window_s`` and stops only when that count falls to
``low``, so it does not toggle in and out of "flapping" itself.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AlertState(StrEnum):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Evidence(BaseModel):
    """What made the alert fire: series values around the trigger, sample log lines."""

    model_config = ConfigDict(frozen=True)

    summary: str = ""  # in words: "checkout p95 latency 1.2 s, normal 180-240 ms"
    field: str = ""
    series: list[tuple[float, float]] = []  # (epoch s, value)
    template_id: str = ""
    template: str = ""
    log_lines: list[str] = []
    related: list[str] = []  # fingerprints of the alerts a composite rule combined
    anomaly_id: str = ""  # the anomaly that fired an anomaly rule (a verdict on the alert
    # counts for it: ``sinks.clickhouse.ops_queries.verdict_history``)


class Signal(BaseModel):
    """A rule's verdict for one label set: it fires now, or it stopped."""

    model_config = ConfigDict(frozen=True)

    status: Literal["firing", "resolved"]
    rule: str
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    value: float = 0.0
    ts: float  # event time of the triggering data (for the trigger-to-delivery metric)
    evidence: Evidence = Evidence()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


class FlapConfig(BaseModel):
    """Hysteresis for flapping: start at ``high`` state changes in ``window_s``, stop at ``low``."""

    model_config = ConfigDict(frozen=True)

    window_s: float = 3600.0
    high: int = Field(default=6, ge=2)
    low: int = Field(default=2, ge=0)


class Alert(BaseModel):
    """One alert instance; the same labels always give the same fingerprint."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str
    rule: str
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    state: AlertState = AlertState.FIRING
    value: float = 0.0
    starts_at: float  # when this firing episode began
    updated_at: float
    ends_at: float | None = None
    trigger_ts: float  # event time of the data that triggered it
    acked_by: str = ""
    acked_at: float | None = None
    evidence: Evidence = Evidence()
    changes: list[float] = []  # times of recent firing<->resolved changes (flapping)
    flapping: bool = False

    @property
    def code(self) -> str:
        """Short code people type in an SMS reply (``ACK K3F7QZ``)."""
        return alert_code(self.fingerprint)

    @property
    def active(self) -> bool:
        return self.state is not AlertState.RESOLVED

    def summary(self) -> str:
        """One line for lists and SMS."""
        text = self.annotations.get("summary") or self.rule
        return f"[{self.labels.get('severity', '?')}] {text}"


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of a label set (order-independent)."""
    raw = "\x1f".join(f"{k}\x1e{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def alert_code(fp: str) -> str:
    """Six letters/digits derived from a fingerprint, unambiguous to read aloud."""
    return base64.b32encode(bytes.fromhex(fp)).decode()[:6]


def _flap(changes: list[float], was: bool, now: float, cfg: FlapConfig) -> tuple[list[float], bool]:
    recent = [t for t in changes if now - t < cfg.window_s]
    n = len(recent)
    return recent, (n >= cfg.high) if not was else (n > cfg.low)


def apply_signal(alert: Alert | None, sig: Signal, now: float,
                 flap: FlapConfig | None = None) -> Alert | None:
    """The alert after a rule's signal; ``None`` when a resolve arrives for no alert."""
    cfg = flap or FlapConfig()
    if sig.status == "resolved":
        return resolve(alert, now, cfg) if alert is not None else None
    if alert is not None and alert.active:  # dedup: same episode, refresh value and evidence
        return alert.model_copy(update={"value": sig.value, "updated_at": now,
                                        "annotations": sig.annotations,
                                        "evidence": sig.evidence})
    changes = [*(alert.changes if alert else []), now]
    changes, flapping = _flap(changes, alert.flapping if alert else False, now, cfg)
    return Alert(fingerprint=sig.fingerprint, rule=sig.rule, labels=sig.labels,
                 annotations=sig.annotations, value=sig.value, starts_at=now, updated_at=now,
                 trigger_ts=sig.ts, evidence=sig.evidence, changes=changes, flapping=flapping)


def acknowledge(alert: Alert, by: str, now: float) -> Alert:
    """Someone took it: stops escalation and repeats; a resolved alert stays resolved."""
    if alert.state is not AlertState.FIRING:
        return alert
    return alert.model_copy(update={"state": AlertState.ACKNOWLEDGED, "acked_by": by,
                                    "acked_at": now, "updated_at": now})


def resolve(alert: Alert, now: float, flap: FlapConfig | None = None) -> Alert:
    """The condition cleared (or a person resolved it)."""
    if alert.state is AlertState.RESOLVED:
        return alert
    cfg = flap or FlapConfig()
    changes, flapping = _flap([*alert.changes, now], alert.flapping, now, cfg)
    return alert.model_copy(update={"state": AlertState.RESOLVED, "ends_at": now,
                                    "updated_at": now, "changes": changes,
                                    "flapping": flapping})


def refresh_flapping(alert: Alert, now: float, flap: FlapConfig | None = None) -> Alert:
    """Re-check flapping on a timer: an alert that calmed down stops flapping."""
    changes, flapping = _flap(alert.changes, alert.flapping, now, flap or FlapConfig())
    if flapping == alert.flapping and changes == alert.changes:
        return alert
    return alert.model_copy(update={"changes": changes, "flapping": flapping})
