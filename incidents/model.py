"""The incident: its state machine, its signals, its ranked suspects and its timeline."""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

Status = Literal["open", "acknowledged", "mitigated", "resolved"]
STATUSES: tuple[Status, ...] = ("open", "acknowledged", "mitigated", "resolved")
SEVERITIES = ("info", "warning", "critical")
Action = Literal["ack", "mitigate", "resolve", "note"]
_TARGET: dict[str, Status] = {"ack": "acknowledged", "mitigate": "mitigated",
                              "resolve": "resolved"}


class IncidentError(ValueError):
    """An action an incident's state does not allow (resolve twice, ack a resolved one)."""


class SlowCall(BaseModel):
    """An edge's calls found slower: how strongly, and the finding in words."""

    model_config = ConfigDict(frozen=True)

    z: float  # standard deviations (``engine.strength``)
    # "p95 latency 210 ms, normal 3-12 ms", when the anomaly was the edge's own series
    detail: str = ""

    def stronger(self, other: SlowCall | None) -> SlowCall:
        """The stronger of two findings on one edge, keeping a detail either has.

        >>> SlowCall(z=6.1).stronger(SlowCall(z=4.0, detail="p50 latency 90 ms"))
        SlowCall(z=6.1, detail='p50 latency 90 ms')
        """
        if other is None:
            return self
        top, low = (self, other) if self.z >= other.z else (other, self)
        return top if top.detail or not low.detail else SlowCall(z=top.z, detail=low.detail)


class Signal(BaseModel):
    """Something that may belong to an incident: an anomaly, an alert or a change."""

    model_config = ConfigDict(frozen=True)

    id: str
    ts: int  # event time, epoch ms
    service: str
    kind: Literal["anomaly", "alert", "change"]
    severity: str = "warning"
    summary: str = ""
    route: str = ""
    template: str = ""  # a template id the signal is about, if any
    change_ids: tuple[str, ...] = ()  # changes the signal names (an anomaly's recent changes)
    # dependency edges ("caller->callee") whose latency the anomaly found rising, each with
    # that finding (``engine.slow_calls``)
    slow_calls: dict[str, SlowCall] = Field(default_factory=dict)
    callee: str = ""  # an edge anomaly's other end: the service called
    # event time its service's disturbance began (the anomaly's ``since``): a signal of a
    # disturbance that goes on since an incident was live is part of it; 0: unknown
    since: int = 0


class TimelineEntry(BaseModel):
    """One line of an incident's timeline."""

    model_config = ConfigDict(frozen=True)

    ts: int  # epoch ms
    kind: str  # anomaly, alert, change, notification, status, note, action, evidence
    text: str
    actor: str = ""
    ref: str = ""  # the id of what the line is about


class SuspectView(BaseModel):
    """A ranked suspect as stored and shown: service, score, evidence lines."""

    model_config = ConfigDict(frozen=True)

    service: str
    score: float
    evidence: list[str] = Field(default_factory=list)
    changes: list[str] = Field(default_factory=list)


class Incident(BaseModel):
    """One problem across services, from its first signal to its resolution."""

    id: str
    ts: int  # event time of the first signal, epoch ms
    last_signal_ms: int
    status: Status = "open"
    severity: str = "warning"
    owner: str = ""
    team: str = ""
    title: str = ""
    services: list[str] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list)
    users_affected: int = 0  # distinct users whose requests failed (evidence.build)
    signal_ids: list[str] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list)
    change_ids: list[str] = Field(default_factory=list)  # changes seen among the signals
    # dependency edges ("caller->callee") found slowing down among the signals
    slow_calls: list[str] = Field(default_factory=list)
    slow_found: dict[str, SlowCall] = Field(default_factory=dict)  # edge -> strongest finding
    callees: list[str] = Field(default_factory=list)  # the called ends of its edge signals
    alerts: int = 0
    anomalies: int = 0
    root_cause: list[str] = Field(default_factory=list)  # ranked services, best first
    suspects: list[SuspectView] = Field(default_factory=list)
    suspect_changes: list[str] = Field(default_factory=list)
    samples: list[str] = Field(default_factory=list)  # sample log lines of the top suspect
    evidence_ms: int | None = None  # event time the evidence pack was first built
    evidence_wall_ms: int | None = None  # wall time it was first built
    evidence_updated_ms: int | None = None  # event time of its latest rebuild
    opened_wall_ms: int = 0  # wall time the incident was opened
    acknowledged_ms: int | None = None
    mitigated_ms: int | None = None
    resolved_ms: int | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    version: int = 0  # grows with every change (the store keeps the highest)

    def to_json(self) -> bytes:
        """orjson bytes."""
        return orjson.dumps(self.model_dump(mode="json"))

    def summary(self) -> dict[str, object]:
        """The list fields: what `incidents list --format jsonl` prints."""
        return {"id": self.id, "ts": self.ts, "severity": self.severity,
                "status": self.status, "services": self.services,
                "root_cause": self.root_cause, "suspect_changes": self.suspect_changes,
                "alerts": self.alerts, "anomalies": self.anomalies, "title": self.title,
                "owner": self.owner, "users_affected": self.users_affected}


def apply_action(inc: Incident, action: Action, actor: str, now_ms: int,
                 text: str = "") -> Incident:
    """The incident after a responder's action; IncidentError when its state forbids it.

    open -> acknowledged -> mitigated -> resolved; a step may be skipped (resolve an open
    incident), never taken back. A note is allowed in any state.

    >>> i = Incident(id="i", ts=0, last_signal_ms=0)
    >>> apply_action(i, "ack", "ana", 5).status
    'acknowledged'
    """
    out = inc.model_copy(deep=True)
    out.version += 1
    if action == "note":
        if not text.strip():
            raise IncidentError("a note needs text")
        out.timeline.append(TimelineEntry(ts=now_ms, kind="note", text=text, actor=actor))
        return out
    target = _TARGET[action]
    if STATUSES.index(target) <= STATUSES.index(inc.status):
        raise IncidentError(f"incident {inc.id} is {inc.status}: cannot {action}")
    out.status = target
    if action == "ack":
        out.acknowledged_ms = now_ms
        out.owner = out.owner or actor
    elif action == "mitigate":
        out.mitigated_ms = now_ms
        out.acknowledged_ms = out.acknowledged_ms or now_ms
    else:
        out.resolved_ms = now_ms
        out.acknowledged_ms = out.acknowledged_ms or now_ms
        out.mitigated_ms = out.mitigated_ms or now_ms
    out.timeline.append(TimelineEntry(ts=now_ms, kind="status", actor=actor,
                                      text=f"{target} by {actor}" + (f": {text}" if text else "")))
    return out
