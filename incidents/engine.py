"""The incident engine: signals in, incidents out, evidence on time. Pure: the caller passes
event time (the watermark), wall time and the telemetry reader, and stores what comes out.

State is the incidents that can still take signals. It is rebuilt at start from the store's
newest versions (``restore``), so a restarted worker keeps grouping into the same incidents
and never opens a second one for a redelivered signal (ids derive from the opening signal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from statistics import NormalDist
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from incidents.evidence import EvidenceConfig, Telemetry, build, due_points, effective_ms
from incidents.grouping import GroupingConfig, GroupingState, assign, expire
from incidents.model import Action, Incident, Signal, SlowCall, apply_action
from incidents.ranking import RankConfig
from schemas.anomalies import PERCENTILES
from schemas.evidence import FEATURE_WORDS, describe_reading

KEEP_MS = 24 * 3_600_000  # incidents quiet this long leave memory (they stay in the store)


class IncidentSettings(BaseModel):
    """``LOGWARDEN_INCIDENTS_*``: the incident stage."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True  # LOGWARDEN_INCIDENTS_ENABLED
    grouping: GroupingConfig = Field(default_factory=GroupingConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    ranking: RankConfig = Field(default_factory=RankConfig)
    tick_s: float = 5.0  # how often the stage checks for evidence due
    min_severity: str = "warning"  # anomalies below this open no incident


def signal_from_anomaly(a: Mapping[str, Any]) -> Signal:
    """A champion anomaly (``AnomalyEvent`` JSON) as a signal."""
    changes = tuple(f"{c['service']}@{c['ts']}" for c in a.get("changes") or [])
    observed, expected = float(a.get("observed") or 0), float(a.get("expected") or 0)
    what = f"{a.get('feature', '')} {observed:.3g} (expected {expected:.3g})"
    return Signal(id=str(a["id"]), ts=int(a["ts"]), service=str(a["service"]), kind="anomaly",
                  severity=str(a.get("severity", "warning")), summary=what.strip(),
                  route=str(a.get("route", "")), change_ids=changes,
                  slow_calls=slow_calls(a), callee=callee_of(a),
                  since=int(a.get("since") or 0))


def callee_of(a: Mapping[str, Any]) -> str:
    """The called end of an edge anomaly (its series is ``caller->callee``), else "".

    >>> callee_of({"scope": "edge", "series": "web->db"}), callee_of({"scope": "route"})
    ('db', '')
    """
    if a.get("scope") != "edge":
        return ""
    return str(a.get("series", "")).partition("->")[2]


def slow_calls(a: Mapping[str, Any]) -> dict[str, SlowCall]:
    """The dependency edges ("caller->callee") an anomaly finds slower, each with the
    finding's strength in standard deviations (``strength``): its own series when it is an
    edge's latency going up (with its reading in words), and the edges' latency anomalies
    it stands for (its ``contributing`` entries ``"<caller>-><callee>:<percentile>":
    score``).

    >>> out = slow_calls({"scope": "edge", "series": "a->b", "feature": "p95", "score": 0.99999,
    ...                   "observed": 212.0, "lo": 3.1, "hi": 12.4, "direction": "up",
    ...                   "contributing": {"p95": 24.3, "a->c:p50": 0.9987, "a->b:error_rate": 1}})
    >>> {e: (f.z, f.detail) for e, f in out.items()}
    {'a->b': (4.26, 'p95 latency 210 ms, normal 3.1-12 ms'), 'a->c': (3.01, '')}
    """
    out: dict[str, SlowCall] = {}
    if a.get("scope") == "edge" and a.get("feature") in PERCENTILES and a.get(
            "direction", "up") == "up":
        feature = str(a["feature"])
        out[str(a.get("series", ""))] = SlowCall(
            z=strength(float(a.get("score") or 0.0)),
            detail=f"{FEATURE_WORDS.get(feature, feature)} {describe_reading(a)}")
    for key, value in (a.get("contributing") or {}).items():
        series, _, feature = str(key).rpartition(":")
        if "->" in series and feature in PERCENTILES:
            # contributors' scores are rounded to 4 decimals: 1.0 stands for >= 0.99995
            found = SlowCall(z=strength(min(float(value), 0.99995)))
            out[series] = found.stronger(out.get(series))
    return out


def strength(score: float) -> float:
    """A calibrated anomaly score (1 - p) as the standard normal deviate of its p-value, to
    two decimals: the scale of the ranking's evidence (``ranking.SLOW_Z`` is the warning
    threshold's).

    >>> strength(0.99865), strength(0.9999999)
    (3.0, 5.2)
    """
    p = min(max(1.0 - score, 1e-15), 0.5)
    return round(NormalDist().inv_cdf(1.0 - p), 2)


class IncidentEngine:
    """Grouping state plus the evidence schedule."""

    def __init__(self, settings: IncidentSettings | None = None) -> None:
        self.s = settings or IncidentSettings()
        self.state = GroupingState()
        self.edges: set[tuple[str, str]] = set()
        self.watermark_ms = 0

    def restore(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Load stored incidents (newest versions); how many can still take signals."""
        for d in docs:
            inc = Incident.model_validate(d)
            self.state.incidents[inc.id] = inc
            for sid in inc.signal_ids:
                self.state.placed[sid] = inc.id
            self.watermark_ms = max(self.watermark_ms, inc.last_signal_ms)
        return len(self.state.incidents)

    def on_signal(self, sig: Signal, wall_ms: int) -> Incident | None:
        """Place a signal; the changed incident, or None (already placed, or too minor)."""
        if sig.id in self.state.placed:
            return None
        order = ("info", "warning", "critical")
        if sig.severity in order and order.index(sig.severity) < order.index(
                self.s.min_severity):
            return None
        self.watermark_ms = max(self.watermark_ms, sig.ts)
        iid, _ = assign(self.state, sig, self.edges, self.s.grouping, wall_ms)
        return self.state.incidents[iid]

    def incident_for(self, service: str, ts_ms: int) -> str | None:
        """The id of the unresolved incident that holds ``service`` at event time ``ts_ms``
        (from its first signal to ``quiet_ms`` after its last), the newest if several; None
        when there is none. Called from the alerting stage's thread: reads a snapshot."""
        try:
            found = [inc for inc in list(self.state.incidents.values())
                     if inc.status != "resolved" and service in inc.services
                     and inc.ts <= ts_ms <= inc.last_signal_ms + self.s.grouping.quiet_ms]
        except RuntimeError:  # the dict changed while copied: take the next trigger's view
            return None
        return max(found, key=lambda inc: inc.ts).id if found else None

    def on_action(self, incident: Incident, action: Action, actor: str, wall_ms: int,
                  text: str = "") -> Incident:
        """A responder's action (IncidentError when the state forbids it)."""
        out = apply_action(incident, action, actor, wall_ms, text)
        if out.id in self.state.incidents:
            self.state.incidents[out.id] = out
        return out

    def advance(self, until_ms: int, tel: Telemetry) -> list[Incident]:
        """Move event time to ``until_ms``, building every pack due on the way at the event
        time it falls due (a replay gets the packs a live worker would have built)."""
        out: dict[str, Incident] = {}
        while True:
            pending = [pts[0] for inc in self.state.incidents.values()
                       if inc.status != "resolved"
                       and (pts := due_points(inc, until_ms, self.s.evidence))]
            if not pending:
                break
            self.watermark_ms = max(self.watermark_ms, min(pending))
            out.update((i.id, i) for i in self.tick(0, tel, ready_ms=min(pending)))
        self.watermark_ms = max(self.watermark_ms, until_ms)
        return list(out.values())

    def first_due(self, wall_ms: int) -> int | None:
        """The earliest event time a pack is due at now, whatever the telemetry holds."""
        return min((pts[0] for inc in self.state.incidents.values()
                    if inc.status != "resolved" and (pts := due_points(
                        inc, effective_ms(inc, self.watermark_ms, wall_ms), self.s.evidence))),
                   default=None)

    def tick(self, wall_ms: int, tel: Telemetry, ready_ms: int | None = None
             ) -> list[Incident]:
        """Build the evidence packs that are due, each at the event time it falls due (never
        later, so a replay at full speed reads the windows a worker living through it
        reads); the incidents that changed. ``ready_ms``: how far in event time the
        telemetry holds (None: all of it); a pack waits until it holds the pack's time.
        Several packs due at once (a fast replay) build the first and the latest."""
        out = []
        for inc in list(self.state.incidents.values()):
            if inc.status == "resolved":
                continue
            now = effective_ms(inc, self.watermark_ms, wall_ms)
            points = due_points(inc, now if ready_ms is None else min(now, ready_ms),
                                self.s.evidence)
            if not points:
                continue
            at = [points[0], points[-1]] if inc.evidence_ms is None else [points[-1]]
            for t in dict.fromkeys(at):
                inc = build(inc, tel, t, wall_ms, self.s.evidence, self.s.ranking,
                            self.state.incidents.values())
                self.state.incidents[inc.id] = inc
            out.append(inc)
        expire(self.state, self.watermark_ms, KEEP_MS)
        return out
