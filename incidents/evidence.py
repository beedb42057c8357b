"""Build an incident's evidence pack: ranked suspects with their signals, sample lines, the
changes, from whatever holds the telemetry (ClickHouse live, a replay in evaluation).

The pack is first built ``first_after_ms`` after the incident's first signal (enough for the
root's first minute of telemetry to land) and rebuilt every ``refresh_ms`` until
``settle_ms``: early evidence is quick, later evidence complete.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from incidents.model import Incident, SlowCall, SuspectView, TimelineEntry
from incidents.patterns import BUCKET_MS, PatternCounts
from incidents.ranking import SLOW_Z, Change, RankConfig, rank, saturation


class EvidenceConfig(BaseModel):
    """When the pack is built and what it looks at."""

    model_config = ConfigDict(frozen=True)

    first_after_ms: int = 30_000  # first pack this long after the first signal
    refresh_ms: int = 30_000  # rebuilt this often ...
    settle_ms: int = 180_000  # ... until this long after the first signal
    lookback_ms: int = 120_000  # the window starts this long before the first signal
    baseline_ms: int = 6 * 3_600_000  # the baseline: this much before the window
    guard_ms: int = 60_000  # between baseline and window
    suspects: int = 5  # suspects kept with evidence
    # resource gauges as a share of their limit (RE2 syntax: ClickHouse filters with it)
    resource_regex: str = r"^(cpu|mem|disk|pool|heap|conn)\w*(pct|percent|ratio|util)"


class Telemetry(Protocol):
    """What building evidence reads."""

    def pattern_rows(self, since_ms: int, until_ms: int) -> Sequence[Mapping[str, Any]]:
        """Rows with bucket (minute number), service, pattern, n, callee."""
        ...

    def resource_rows(self, since_ms: int, until_ms: int, regex: str
                      ) -> Sequence[Mapping[str, Any]]:
        """Rows with ts (ms), service, value."""
        ...

    def change_rows(self, since_ms: int, until_ms: int) -> Sequence[Mapping[str, Any]]:
        """Rows with id, ts (ms), service, kind, description."""
        ...

    def samples(self, service: str, since_ms: int, until_ms: int) -> list[str]:
        """A few log lines of ``service`` in the window."""
        ...

    def users_affected(self, services: Sequence[str], since_ms: int, until_ms: int) -> int:
        """Distinct users (``user.id``) whose requests to ``services`` failed in the window."""
        ...


def effective_ms(inc: Incident, watermark_ms: int, wall_ms: int) -> int:
    """The incident's "now": event time, or its first signal plus the wall time since it
    opened when that is further (no signal moves event time during a quiet incident)."""
    wall_age = wall_ms - inc.opened_wall_ms if inc.opened_wall_ms and wall_ms else 0
    return max(watermark_ms, inc.ts + wall_age)


def pack_times(ts: int, cfg: EvidenceConfig) -> range:
    """The event times an incident first signalled at ``ts`` gets a pack at:
    ``first_after`` after it, then every ``refresh`` until ``settle``."""
    return range(ts + cfg.first_after_ms, ts + cfg.settle_ms + 1, cfg.refresh_ms)


def due_points(inc: Incident, now_ms: int, cfg: EvidenceConfig) -> list[int]:
    """The ``pack_times`` that ``now_ms`` has passed and no pack was built at."""
    built = inc.evidence_updated_ms
    return [t for t in pack_times(inc.ts, cfg) if t <= now_ms and (built is None or t > built)]


def counts_from_rows(rows: Sequence[Mapping[str, Any]]) -> PatternCounts:
    """PatternCounts from ``pattern_rows``."""
    pc = PatternCounts()
    for r in rows:
        service, pattern = str(r["service"]), str(r["pattern"])
        pc.add(int(r["bucket"]) * BUCKET_MS, service, pattern, int(r["n"]))
        if pattern.startswith("P:") and r.get("callee"):
            pc.edges.add((service, str(r["callee"])))
    return pc


def build(inc: Incident, tel: Telemetry, watermark_ms: int, wall_ms: int,
          cfg: EvidenceConfig | None = None, rank_cfg: RankConfig | None = None,
          earlier: Iterable[Incident] = ()) -> Incident:
    """The incident with a fresh evidence pack (a new version). ``earlier``: incidents
    before it, whose windows leave the baselines of their top suspects."""
    cfg = cfg or EvidenceConfig()
    lo = inc.ts - cfg.lookback_ms
    hi = watermark_ms + 1  # never past the pack's time, however much the store holds
    base_lo = lo - cfg.guard_ms - cfg.baseline_ms
    pc = counts_from_rows(tel.pattern_rows(base_lo, hi))
    window = pc.window(lo, hi)
    rank_cfg = rank_cfg or RankConfig()
    top = rank_cfg.exclude_top
    exclude: dict[str, list[tuple[int, int]]] = {}
    for other in earlier:
        if other.id != inc.id and other.ts < inc.ts:
            for service in other.root_cause[:top]:
                exclude.setdefault(service, []).append(
                    (other.ts - cfg.lookback_ms, other.last_signal_ms + cfg.guard_ms))
    baseline = pc.baseline(base_lo, lo - cfg.guard_ms, exclude)
    rx = re.compile(cfg.resource_regex, re.IGNORECASE)
    w_res: dict[str, list[float]] = {}
    b_res: dict[str, list[float]] = {}
    for r in tel.resource_rows(base_lo, hi, cfg.resource_regex):
        if not rx.match(str(r.get("name", "cpu_pct"))):
            continue
        target = w_res if int(r["ts"]) >= lo else b_res
        target.setdefault(str(r["service"]), []).append(float(r["value"]))
    sat = {s: saturation(v, b_res.get(s, [])) for s, v in w_res.items()}
    changes = [Change(id=str(c["id"]), ts=int(c["ts"]), service=str(c["service"]),
                      kind=str(c["kind"]), description=str(c.get("description", "")))
               for c in tel.change_rows(inc.ts - rank_cfg.change_window_ms,
                                        hi)]
    first_bad = _first_bad(inc)
    found = {(a, b): inc.slow_found.get(e, SlowCall(z=SLOW_Z))
             for e in inc.slow_calls for a, _, b in [e.partition("->")] if b}
    ranked = rank(window, baseline, pc.edges, sat, changes, first_bad, inc.ts, rank_cfg,
                  slow_calls={e: f.z for e, f in found.items()}, scope=inc.services,
                  slow_detail={e: f.detail for e, f in found.items() if f.detail})
    # a service with nothing unusual is no suspect
    ranked = [s for s in ranked if s.score > 0][:cfg.suspects]
    out = inc.model_copy(deep=True)
    out.version += 1
    out.root_cause = [s.service for s in ranked]
    out.suspects = [SuspectView(service=s.service, score=round(s.score, 2),
                                evidence=s.evidence(), changes=s.changes) for s in ranked]
    by_change = [c for s in ranked for c in s.changes]
    out.suspect_changes = list(dict.fromkeys(by_change + inc.change_ids))
    out.samples = tel.samples(ranked[0].service, lo, hi) if ranked else []
    out.users_affected = tel.users_affected(inc.services, lo, hi)
    out.evidence_updated_ms = watermark_ms
    first = out.evidence_ms is None
    out.evidence_ms = watermark_ms if first else out.evidence_ms
    out.evidence_wall_ms = wall_ms if first else out.evidence_wall_ms
    if first:
        names = ", ".join(out.root_cause[:3]) or "no suspect"
        out.timeline.append(TimelineEntry(ts=watermark_ms, kind="evidence",
                                          text=f"evidence pack: suspects {names}"))
    return out


def _first_bad(inc: Incident) -> dict[str, int]:
    first: dict[str, int] = {}
    for e in inc.timeline:
        if e.kind in ("anomaly", "alert"):
            service = e.text.split(":", 1)[0]
            first.setdefault(service, e.ts)
    return first


def pack_lines(inc: Incident | Mapping[str, Any]) -> list[str]:
    """The evidence pack as a few lines (notifications, Slack, the CLI)."""
    d = inc.model_dump() if isinstance(inc, Incident) else dict(inc)
    lines = []
    for i, s in enumerate(d.get("suspects", [])[:3], 1):
        ev = "; ".join(s["evidence"][:3]) or "no distinctive signal"
        lines.append(f"{i}. {s['service']} ({s['score']}): {ev}")
    if d.get("suspect_changes"):
        lines.append("changes: " + ", ".join(d["suspect_changes"][:3]))
    for line in d.get("samples", [])[:2]:
        lines.append(f"  > {line[:160]}")
    return lines
