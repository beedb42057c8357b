"""Incidents: write a version, read the newest version of each (list, one, metrics input),
and the rows an incident's timeline and evidence pack need (logs, metrics, changes, alerts,
notifications, and runbook ``actions`` when that table exists)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries.base import TS, ident, select

_COLUMNS = ("id", "ts", "updated_at", "version", "status", "severity", "team", "services",
            "root_cause", "suspect_changes", "alerts", "anomalies", "doc")


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def save_incident(store: Store, db: str, doc: Mapping[str, Any], now_ms: int) -> None:
    """Write one version of an incident (``Incident.model_dump``); same version = same row."""
    row = [doc["id"], _dt(int(doc["ts"])), _dt(now_ms), int(doc["version"]), doc["status"],
           doc["severity"], doc.get("team", ""), list(doc["services"]),
           list(doc["root_cause"]), list(doc["suspect_changes"]), int(doc["alerts"]),
           int(doc["anomalies"]), json.dumps(doc, separators=(",", ":"))]
    store.insert(f"{ident(db)}.incidents", [row], column_names=list(_COLUMNS),
                 settings={"insert_deduplication_token": f"inc-{doc['id']}-{doc['version']}"})


_NEWEST = ("SELECT id, argMax(doc, version) AS doc, max(version) AS v, any(ts) AS ts "
           "FROM {db}.incidents GROUP BY id")


def list_incidents(store: Store, db: str, since_ms: int, *, status: str | None = None,
                   service: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The newest version of every incident whose first signal is at or after ``since_ms``,
    newest first."""
    where = " AND ts >= {since:" + TS + "}"
    params: dict[str, Any] = {"since": _dt(since_ms), "limit": limit}
    sql = (f"SELECT doc FROM ({_NEWEST.format(db=ident(db))}) WHERE 1{where} "
           "ORDER BY ts DESC LIMIT {limit:UInt32}")
    docs = [json.loads(r["doc"]) for r in select(store, sql, params)]
    if status:
        docs = [d for d in docs if d["status"] == status]
    if service:
        docs = [d for d in docs if service in d["services"]]
    return docs


def get_incident(store: Store, db: str, incident_id: str) -> dict[str, Any] | None:
    """The newest version of one incident, or None."""
    sql = (f"SELECT argMax(doc, version) AS doc FROM {ident(db)}.incidents "
           "WHERE id = {id:String} GROUP BY id")
    rows = select(store, sql, {"id": incident_id})
    return json.loads(rows[0]["doc"]) if rows else None


def unresolved_incidents(store: Store, db: str, since_ms: int) -> list[dict[str, Any]]:
    """Incidents not resolved (and recently resolved ones) since ``since_ms``: what the
    engine reloads at start."""
    return list_incidents(store, db, since_ms, limit=10_000)


# incidents.patterns.BANDS_PER_OCTAVE and STATEMENT (sinks import no stage): the
# integration test test_the_store_counts_call_latencies_as_a_replay_does checks that the
# counts agree
BANDS_PER_OCTAVE = 4
STATEMENT = "[#:][0-9]+$"


def pattern_counts(store: Store, db: str, since_ms: int, until_ms: int, latency: bool = True
                   ) -> list[dict[str, Any]]:
    """Per minute, service and pattern (see ``incidents.patterns``): log row counts, and
    (``latency``) the latency bands of calls (``L:`` rows) and served requests (``S:``)."""
    where = f"FROM {ident(db)}.logs WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}} "
    bucket = "intDiv(toUnixTimestamp64Milli(ts), 60000) AS bucket, service, "
    sql = ("SELECT " + bucket +
           "multiIf(http_status > 0, concat('H:', http_route, ':', toString(http_status)), "
           "peer_service != '', concat('P:', peer_service, ':', peer_operation, ':', "
           "toString(ifNull(peer_ok, 1))), "
           f"concat('T:', if(match(logger, '{STATEMENT}') OR template_id = '', logger, "
           "template_id), ':', upper(level))) "
           "AS pattern, count() AS n, any(peer_service) AS callee " + where +
           "GROUP BY bucket, service, pattern LIMIT 200000")
    if latency:
        sql += (" UNION ALL SELECT " + bucket +
                f"concat('L:', peer_service, ':', {_band('peer_duration_ms')}) "
                "AS pattern, count() AS n, any(peer_service) AS callee " + where +
                "AND peer_service != '' AND peer_duration_ms > 0 "
                "AND isFinite(peer_duration_ms) GROUP BY bucket, service, pattern LIMIT 200000 "
                "UNION ALL SELECT " + bucket +
                f"concat('S:', {_band('http_duration_ms')}) AS pattern, count() AS n, "
                "'' AS callee " + where +
                "AND http_status > 0 AND http_duration_ms > 0 AND isFinite(http_duration_ms) "
                "GROUP BY bucket, service, pattern LIMIT 200000")
    return select(store, sql, {"since": _dt(since_ms), "until": _dt(until_ms)})


def _band(column: str) -> str:
    """SQL for ``incidents.patterns.latency_band`` of a positive latency column."""
    return (f"toString(toInt32(floor({BANDS_PER_OCTAVE} * "
            f"log2(toFloat64(assumeNotNull({column}))))))")


def newest_log_ms(store: Store, db: str, since_ms: int) -> int | None:
    """The event time of the newest stored log row at or after ``since_ms`` (None: none).
    Reads only the granules after ``since_ms``."""
    rows = select(store, f"SELECT count() AS n, toUnixTimestamp64Milli(max(ts)) AS ms "
                         f"FROM {ident(db)}.logs WHERE ts >= {{since:{TS}}}",
                  {"since": _dt(since_ms)})
    return int(rows[0]["ms"]) if rows and int(rows[0]["n"]) else None


def seconds_since_logs_written(store: Store, db: str) -> float | None:
    """Seconds since the logs table last got a part (an insert or a merge), by the store's
    clock; None when it has none, or when the store's user may not read ``system.parts``."""
    try:
        rows = select(store, "SELECT count() AS n, dateDiff('second', max(modification_time), "
                             "now()) AS s FROM system.parts WHERE database = {db:String} "
                             "AND table = 'logs' AND active", {"db": db})
    except DatabaseError:
        return None
    return float(rows[0]["s"]) if rows and int(rows[0]["n"]) else None


def call_edges(store: Store, db: str, since_ms: int, until_ms: int) -> list[tuple[str, str]]:
    """The (caller, callee) pairs of outbound calls logged in [since, until)."""
    sql = ("SELECT DISTINCT service, peer_service "
           f"FROM {ident(db)}.logs WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}} "
           "AND peer_service != '' LIMIT 100000")
    rows = select(store, sql, {"since": _dt(since_ms), "until": _dt(until_ms)})
    return [(str(r["service"]), str(r["peer_service"])) for r in rows]


def resource_points(store: Store, db: str, since_ms: int, until_ms: int,
                    names_regex: str) -> list[dict[str, Any]]:
    """(ts ms, service, value) of resource gauges whose name matches ``names_regex``."""
    sql = ("SELECT toUnixTimestamp64Milli(ts) AS ts_ms, service, name, value "
           f"FROM {ident(db)}.metric_points WHERE ts >= {{since:{TS}}} AND ts < {{until:{TS}}} "
           "AND match(name, {rx:String}) LIMIT 200000")
    return _ms(select(store, sql, {"since": _dt(since_ms), "until": _dt(until_ms),
                                   "rx": names_regex}))


def changes_between(store: Store, db: str, since_ms: int, until_ms: int
                    ) -> list[dict[str, Any]]:
    """Changes (deploys, config, flags) in [since, until)."""
    sql = ("SELECT event_id AS id, toUnixTimestamp64Milli(ts) AS ts_ms, service, kind, "
           f"description FROM {ident(db)}.changes WHERE ts >= {{since:{TS}}} "
           f"AND ts < {{until:{TS}}} ORDER BY ts LIMIT 1000")
    return _ms(select(store, sql, {"since": _dt(since_ms), "until": _dt(until_ms)}))


def _ms(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ts_ms`` (an alias must not shadow the ``ts`` column in WHERE) back to ``ts``."""
    for r in rows:
        r["ts"] = int(r.pop("ts_ms"))
    return rows


def sample_lines(store: Store, db: str, service: str, since_ms: int, until_ms: int,
                 limit: int = 3) -> list[str]:
    """A few WARN-or-worse log lines of a service in the window, else any lines."""
    sql = ("SELECT message FROM " + ident(db) + ".logs WHERE service = {service:String} "
           f"AND ts >= {{since:{TS}}} AND ts < {{until:{TS}}} "
           "ORDER BY level IN ('ERROR', 'CRITICAL', 'FATAL', 'WARN', 'WARNING') DESC, ts "
           "LIMIT {limit:UInt32}")
    rows = select(store, sql, {"service": service, "since": _dt(since_ms),
                               "until": _dt(until_ms), "limit": limit})
    return [str(r["message"])[:300] for r in rows]


def users_affected(store: Store, db: str, services: Sequence[str], since_ms: int,
                   until_ms: int) -> int:
    """Distinct users whose events on ``services`` failed in the window: an error line or
    an HTTP 5xx answer carrying a ``user.id`` (a keyed hash when privacy hashes it)."""
    sql = ("SELECT uniqExact(user_id) AS n FROM " + ident(db) + ".logs WHERE service IN "
           f"{{services:Array(String)}} AND ts >= {{since:{TS}}} AND ts < {{until:{TS}}} "
           "AND user_id != '' AND (level IN ('ERROR', 'CRITICAL', 'FATAL') "
           "OR http_status >= 500)")
    rows = select(store, sql, {"services": list(services), "since": _dt(since_ms),
                               "until": _dt(until_ms)})
    return int(rows[0]["n"]) if rows else 0


def related_rows(store: Store, db: str, services: Sequence[str], since_ms: int,
                 until_ms: int, incident_id: str, wall_since_ms: int | None = None,
                 wall_until_ms: int | None = None) -> list[dict[str, Any]]:
    """Timeline rows from other stages: alerts of the incident's services that fired in
    [since, until] of event time (``trigger_ts``, so an incident left open does not gather
    its services' later alerts, and each incident of a replay gets its own alerts though
    all of them fire at once), their notifications sent in the wall-time span (default:
    the same), and runbook actions of the incident (the ``actions`` table: incident_id, ts,
    kind, outcome), each as ``{ts, kind, text, ref}``."""
    span = {"since": _dt(since_ms), "until": _dt(until_ms), "services": list(services),
            "incident": incident_id,
            "wall_since": _dt(since_ms if wall_since_ms is None else wall_since_ms),
            "wall_until": _dt(until_ms if wall_until_ms is None else wall_until_ms)}
    d = ident(db)
    fired = (f"FROM {d}.alerts WHERE service IN {{services:Array(String)}} "
             "AND if(toUnixTimestamp64Milli(trigger_ts) > 0, trigger_ts, ts) "
             f"BETWEEN {{since:{TS}}} AND {{until:{TS}}} ")
    out = select(store, (
        "SELECT toUnixTimestamp64Milli(ts) AS ts_ms, 'alert' AS kind, "
        "concat(rule, ' ', state, ' on ', service, ': ', summary) AS text, fingerprint AS ref "
        + fired + "ORDER BY ts LIMIT 500"), span)
    out += select(store, (
        "SELECT toUnixTimestamp64Milli(ts) AS ts_ms, 'notification' AS kind, "
        "concat(receiver, ' via ', channel, ': ', status) AS text, message_id AS ref "
        f"FROM {d}.notifications WHERE ts >= {{wall_since:{TS}}} AND ts < {{wall_until:{TS}}} "
        "AND fingerprint IN (SELECT fingerprint " + fired + ") ORDER BY ts LIMIT 500"), span)
    out += select(store, (
        "SELECT toUnixTimestamp64Milli(ts) AS ts_ms, 'action' AS kind, "
        "concat(kind, ': ', outcome) AS text, '' AS ref "
        f"FROM {d}.actions WHERE incident_id = {{incident:String}} ORDER BY ts LIMIT 500"),
        span)
    return sorted(_ms(out), key=lambda r: int(r["ts"]))
