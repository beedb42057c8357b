"""Incident metrics: MTTD, MTTA and MTTR per incident (not per alert), weekly and per team.

Per incident, from its first signal (``ts``, event time of the first bad event seen):
- time to detect (TTD): until the evidence pack was ready (``evidence_ms``) - the moment a
  responder had a ranked root cause to act on;
- time to acknowledge (TTA): until the first acknowledgement;
- time to resolve (TTR): until it was resolved.
Means are over the incidents that reached that step; a week is the ISO week of ``ts``.

>>> docs = [{"id": "a", "ts": 0, "team": "core", "severity": "critical",
...          "evidence_ms": 30_000, "acknowledged_ms": 120_000, "resolved_ms": 600_000}]
>>> m = incident_metrics(docs)
>>> m["overall"]["mttd_s"], m["overall"]["mtta_s"], m["overall"]["mttr_s"]
(30.0, 120.0, 600.0)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any


def per_incident(d: Mapping[str, Any]) -> dict[str, Any]:
    """TTD, TTA, TTR in seconds of one incident document (None: not reached)."""
    t0 = int(d["ts"])

    def since(key: str) -> float | None:
        v = d.get(key)
        return None if v is None else round(max(0, int(v) - t0) / 1000, 1)

    week = datetime.fromtimestamp(t0 / 1000, UTC).isocalendar()
    return {"id": d["id"], "ts": t0, "team": d.get("team") or "(none)",
            "severity": d.get("severity", ""), "status": d.get("status", ""),
            "week": f"{week.year}-W{week.week:02d}", "ttd_s": since("evidence_ms"),
            "tta_s": since("acknowledged_ms"), "ttr_s": since("resolved_ms")}


def _means(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"incidents": len(rows)}
    for key, name in (("ttd_s", "mttd_s"), ("tta_s", "mtta_s"), ("ttr_s", "mttr_s")):
        xs = [float(r[key]) for r in rows if r[key] is not None]
        out[name] = round(sum(xs) / len(xs), 1) if xs else None
    return out


def incident_metrics(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per incident, overall, per ISO week and per team."""
    rows = [per_incident(d) for d in docs]
    weeks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    teams: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        weeks[r["week"]].append(r)
        teams[r["team"]].append(r)
    return {"overall": _means(rows),
            "weekly": {w: _means(v) for w, v in sorted(weeks.items())},
            "teams": {t: _means(v) for t, v in sorted(teams.items())},
            "incidents": sorted(rows, key=lambda r: r["ts"])}
