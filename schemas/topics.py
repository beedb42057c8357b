"""Kafka topic names: the ingest contract and the project's internal topics."""

from __future__ import annotations

import re
from dataclasses import astuple, dataclass, fields

# Ingest contract (any producer may write these).
LOGS = "logwarden.logs.v1"
METRICS = "logwarden.metrics.v1"
CHANGES = "logwarden.changes.v1"
FEEDBACK = "logwarden.feedback.v1"

INGEST_TOPICS = (LOGS, METRICS, CHANGES, FEEDBACK)

DEFAULT_APP_ID = "logwarden"
_APP_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, slots=True)
class Internal:
    """The internal topics of one deployment (app id).

    Every app id gets its own, so two deployments on one cluster, or two test workers on one
    broker, never read each other's windows, signals or state. The default app id keeps the
    plain names (``logwarden.windows.v1``); another gets ``logwarden.<app id>.windows.v1``.
    The ingest topics are the contract and are shared.

    >>> internal("shop").windows
    'logwarden.shop.windows.v1'
    """

    windows: str  # closed (and revised) windowed aggregates
    dead_letters: str  # input that failed to parse or validate
    anomalies: str
    template_events: str  # new / spike / vanished / explosion
    template_state: str  # compacted: template miner state by service
    detector_state: str  # compacted: detector state by series
    alert_actions: str  # ack / resolve / silence from API, Slack, SMS
    alert_signals: str  # rule verdicts and manager ticks (partition 0)
    alert_ticks: str  # evaluation ticks, one per partition
    runbook_actions: str  # runbook triggers, approvals, ticks (partition 0)
    auth_events: str  # authentication events for the security detectors (schemas.auth_events)

    @property
    def all(self) -> tuple[str, ...]:
        return astuple(self)


def internal(app_id: str = DEFAULT_APP_ID) -> Internal:
    """The internal topic names of the deployment ``app_id``."""
    if _APP_ID.fullmatch(app_id) is None:
        raise ValueError(f"app id {app_id!r}: 1-100 of A-Z a-z 0-9 . _ - (it names topics)")
    ns = "logwarden" if app_id == DEFAULT_APP_ID else f"logwarden.{app_id}"
    return Internal(*(f"{ns}.{f.name.replace('_', '-')}.v1" for f in fields(Internal)))
