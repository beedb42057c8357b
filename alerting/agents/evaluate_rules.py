"""Rule evaluation inside the worker: windows, anomalies and template events in, signals out.

Pure of Kafka: ``evaluate`` takes one raw message of an input topic and the series-state
table (a Faust table, or any dict in tests) and returns the messages for the alert manager.
Table values remember the partition their key came from, so a tick arriving on partition p
only touches the series of partition p (their changelog stays in partition p).

Windows move the event-time watermarks (``alerting/watermark.py``); ticks evaluate the
time-based checks on the fleet watermark, not on the wall clock.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any

import orjson
from pydantic import ValidationError

from alerting.evaluate import (
    SeriesState,
    TemplateSignal,
    WentOn,
    on_anomaly,
    on_template,
    on_tick,
    on_window,
)
from alerting.inputs import CanarySeen, ManagerInput, SignalInput
from alerting.lifecycle import Signal
from alerting.rules import RuleSet
from alerting.watermark import Watermarks, kind_of
from schemas.topics import Internal
from schemas.windows import WindowStats

CANARY_SERVICE = "logwarden-canary"
Table = MutableMapping[str, bytes]


def wrap(st: SeriesState, partition: int) -> bytes:
    """A table value: the state and the partition its key lives in."""
    return orjson.dumps({"p": partition, "st": st.model_dump(mode="json")})


def unwrap(raw: bytes) -> tuple[SeriesState, int]:
    """The state and partition of a table value."""
    doc = orjson.loads(raw)
    return SeriesState.model_validate(doc["st"]), int(doc["p"])


def _seconds_from_ms(ts_ms: Any) -> float:
    """Epoch seconds from the epoch milliseconds the anomalies and template-events topics
    carry in ``ts`` (``schemas.anomalies.AnomalyEvent.ts``, ``rows.template_event_row``)."""
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int | float):
        raise ValueError(f"ts must be epoch milliseconds, not {ts_ms!r}")
    return float(ts_ms) / 1000


def anomaly_input(doc: dict[str, Any]) -> dict[str, Any] | None:
    """An anomalies-topic message as ``on_anomaly`` wants it (``ts`` in epoch s); None for
    challengers/garbage."""
    if doc.get("variant", "champion") != "champion" or "series" not in doc:
        return None
    observed = doc.get("observed", doc.get("value", math.nan))
    return {"series": str(doc["series"]), "service": str(doc.get("service", "")),
            "scope": str(doc.get("scope", "service")), "route": str(doc.get("route", "")),
            "name": str(doc.get("name") or doc.get("feature", "")),
            "ts": _seconds_from_ms(doc["ts"]), "score": float(doc["score"]),
            "value": float(observed) if observed is not None else math.nan,
            "observed": float(observed) if observed is not None else math.nan,
            "expected": doc.get("expected", "?"), "id": str(doc.get("id", "")),
            "feature": str(doc.get("feature", "")), "severity": str(doc.get("severity", "")),
            "direction": str(doc.get("direction", "up")),
            "lo": _float_or_nan(doc.get("lo")), "hi": _float_or_nan(doc.get("hi")),
            **{k: str(doc[k]) for k in ("peer", "callee") if k in doc}}


def _float_or_nan(x: Any) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def template_input(doc: dict[str, Any]) -> TemplateSignal:
    """A template-events message (ingest's row dict, details possibly JSON text)."""
    details = doc.get("details") or {}
    if isinstance(details, str | bytes):
        try:
            details = orjson.loads(details) if details else {}
        except orjson.JSONDecodeError:
            details = {}
    if not isinstance(details, dict):
        details = {}
    merged = {**details, **doc}
    return TemplateSignal(
        kind=str(merged.get("kind", "")), service=str(merged["service"]),
        template_id=str(merged["template_id"]), template=str(merged.get("template", "")),
        ts=_seconds_from_ms(doc["ts"]), level=str(merged.get("level", "")),
        category=str(merged.get("category", "")),
        count=int(float(merged.get("count", merged.get("value", 0)) or 0)),
        baseline=float(merged.get("baseline", 0.0) or 0.0),
        sample_lines=[str(x) for x in merged.get("sample_lines", merged.get("samples", []))][:10])


def _signals(sigs: list[Signal]) -> list[ManagerInput]:
    return [SignalInput(signal=s) for s in sigs]


def evaluate(rules: RuleSet, table: Table, names: Internal, topic: str, partition: int,
             raw: bytes, now: float, watermarks: Watermarks | None = None
             ) -> list[ManagerInput]:
    """One input message -> messages for the alert manager (signals, canary sightings).

    ``now`` is the arrival (wall-clock) time: it only tells idle sources apart in
    ``watermarks``, which every window (but the canary's) moves. Raises ValueError /
    ValidationError / KeyError on a message it cannot read.
    """
    if topic == names.windows:
        w = WindowStats.from_json(raw)
        if w.service == CANARY_SERVICE:  # stamped with the worker's clock: no event time
            return [CanarySeen(start=w.start.timestamp(), end=w.end.timestamp())]
        went_on = None
        if watermarks is not None:
            watermarks.observe(partition, (kind_of(w.scope), w.service), w.end.timestamp(),
                               now)
            watermarks.activity.observe(w)
            went_on = watermarks.activity.went_on
        key = w.series
        st, sigs = on_window(rules, _get(table, key), w, now, went_on)
    elif topic == names.anomalies:
        a = anomaly_input(orjson.loads(raw))
        if a is None or a["service"] == CANARY_SERVICE:
            return []
        key = a["series"]
        st, sigs = on_anomaly(rules, _get(table, key), a, now)
    elif topic == names.template_events:
        t = template_input(orjson.loads(raw))
        if t.service == CANARY_SERVICE:
            return []
        key = f"{t.service}#{t.template_id}"
        st, sigs = on_template(rules, _get(table, key), t, now)
    else:
        return []
    table[key] = wrap(st, partition)
    return _signals(sigs)


def _get(table: Table, key: str) -> SeriesState | None:
    raw = table.get(key)
    return unwrap(raw)[0] if raw is not None else None


def evaluate_tick(rules: RuleSet, table: Table, partition: int, watermark: float | None,
                  settle_s: float = 0.0, went_on: WentOn | None = None
                  ) -> list[ManagerInput]:
    """Time-based checks for the series of one partition at the fleet ``watermark`` (event
    time, None before the first window; ``went_on``: when the fleet sent data, for
    absences); only changed states are written."""
    out: list[ManagerInput] = []
    for key, raw in list(table.items()):
        try:
            st, p = unwrap(raw)
        except (ValueError, ValidationError, KeyError):
            del table[key]
            continue
        if p != partition:
            continue
        new, sigs = on_tick(rules, st, watermark, settle_s, went_on)
        if new != st:
            table[key] = wrap(new, partition)
        out += _signals(sigs)
    return out
