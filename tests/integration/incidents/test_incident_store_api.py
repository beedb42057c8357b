"""Incidents in real chDB: versions stored and read back, evidence from the logs table, the
API (list, show, actions, postmortem, metrics) and the /incidents page."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from incidents.engine import IncidentEngine, signal_from_anomaly
from incidents.evidence import counts_from_rows
from incidents.patterns import PatternCounts
from sinks.clickhouse.client import Client, connect
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.queries import incidents as q
from sinks.clickhouse.settings import ClickHouseSettings
from streams.agents.incidents import IncidentStage, StoreTelemetry, save
from web.api import create_app
from web.auth import TokenStore
from web.settings import WebSettings
from web.site import WebOptions

pytestmark = pytest.mark.integration
NOW = int(time.time() * 1000) // 60_000 * 60_000


@pytest.fixture
def db(chdb_store: Client) -> Iterator[str]:
    name = f"lw_inc_{uuid.uuid4().hex[:10]}"
    migrate(chdb_store, ClickHouseSettings(database=name))
    yield name
    chdb_store.command(f"DROP DATABASE IF EXISTS {name}")


def log_rows(start_ms: int, minutes: int, bad_from_ms: int) -> list[list[Any]]:
    """api -> db traffic; from ``bad_from_ms`` db logs a new error and api answers 500."""
    rows = []
    for m in range(minutes):
        for k in range(20):
            t = start_ms + m * 60_000 + k * 3000
            ts = datetime.fromtimestamp(t / 1000, UTC)
            bad = t >= bad_from_ms and k % 2 == 0
            rows.append([ts, "api", "INFO", "GET /x", "", "", 500 if bad else 200, "", "", None,
                         f"a{t}", f"u{k % 4}"])  # the failed requests: users u0 and u2
            rows.append([ts, "api", "INFO", "call db", "", "", 0, "db", "query",
                         0 if bad else 1, f"p{t}", ""])
            rows.append([ts, "db", "ERROR" if bad else "INFO",
                         "deadlock on orders" if bad else "query ok",
                         "t-dead" if bad else "t-ok", "db.repo", 0, "", "", None, f"d{t}", ""])
    return rows


COLS = ["ts", "service", "level", "message", "template_id", "logger", "http_status",
        "peer_service", "peer_operation", "peer_ok", "event_id", "user_id"]


def test_stage_builds_evidence_from_the_store_and_restarts_into_the_same_incident(
        chdb_store: Client, db: str) -> None:
    bad = NOW - 5 * 60_000
    chdb_store.insert(f"{db}.logs", log_rows(NOW - 60 * 60_000, 60, bad), column_names=COLS)
    stage = IncidentStage(chdb_store, db, IncidentEngine().s)
    stage.restore(NOW)
    import orjson
    a1 = {"id": "an-1", "ts": bad + 5000, "service": "api", "feature": "error_rate",
          "observed": 0.5, "expected": 0.0, "severity": "critical", "variant": "champion"}
    inc = stage.handle(orjson.dumps(a1), NOW - 100_000)
    assert inc is not None
    built = stage.tick(NOW - 100_000 + 31_000)
    assert [i.id for i in built] == [inc.id]
    stored = q.get_incident(chdb_store, db, inc.id)
    assert stored is not None and stored["root_cause"][0] == "db"
    assert any("t-dead" in line for line in stored["suspects"][0]["evidence"])
    assert stored["users_affected"] == 2  # u0 and u2 got 500s; u1 and u3 did not
    assert ("api", "db") in stage.engine.edges
    # a new stage (a restarted worker) groups the next signal into the same incident
    again = IncidentStage(chdb_store, db, IncidentEngine().s)
    again.restore(NOW)
    a2 = {**a1, "id": "an-2", "ts": bad + 30_000, "service": "db"}
    joined = again.handle(orjson.dumps(a2), NOW)
    assert joined is not None and joined.id == inc.id and joined.anomalies == 2
    assert again.handle(orjson.dumps(a2), NOW) is None  # redelivered: nothing new
    tel = StoreTelemetry(chdb_store, db)
    assert tel.samples("db", bad, NOW + 1)[0] == "deadlock on orders"


def test_a_pack_waits_until_the_store_holds_its_window(chdb_store: Client, db: str) -> None:
    """A replay at full speed: the anomaly arrives while the store holds logs only up to
    20 s after it. The pack (due 30 s after it) waits for the rest; once stored, it is
    built at its own event times, not at the far later one the anomalies reached. A store
    that has written nothing for ``store_idle_s`` holds all it will get (a quiet stream)."""
    import orjson
    bad = NOW - 10 * 60_000
    rows = log_rows(NOW - 60 * 60_000, 60, bad)
    cut = bad + 20_000
    early = [r for r in rows if r[0].timestamp() * 1000 < cut]
    chdb_store.insert(f"{db}.logs", early, column_names=COLS)
    stage = IncidentStage(chdb_store, db, IncidentEngine().s)
    stage.restore(NOW)
    a = {"id": "an-1", "ts": bad + 5000, "service": "api", "feature": "error_rate",
         "observed": 0.5, "expected": 0.0, "severity": "critical", "variant": "champion"}
    later = {**a, "id": "an-2", "ts": NOW + 3_600_000, "service": "web"}
    inc = stage.handle(orjson.dumps(a), NOW)
    stage.handle(orjson.dumps(later), NOW)
    assert inc is not None
    ready = stage.ready_ms(NOW + 1000)
    assert ready is not None and ready < inc.ts + 30_000  # nothing stored at the pack's time
    assert stage.tick(NOW + 1000) == []  # the store is still being written
    chdb_store.insert(f"{db}.logs", rows[len(early):], column_names=COLS)
    (built,) = [i for i in stage.tick(NOW + 2000) if i.id == inc.id]
    assert built.evidence_ms == inc.ts + 30_000
    assert built.evidence_updated_ms == inc.ts + 180_000
    assert built.root_cause[0] == "db"
    stage.store_idle_s = 0.0  # idle: whatever is due is built, nothing waits
    assert stage.ready_ms(NOW + 3000) is None


def test_the_store_counts_call_latencies_as_a_replay_does_and_ranks_a_slow_callee(
        chdb_store: Client, db: str) -> None:
    """api calls db every 3 s, ~10 ms each (a few at 13 ms); for the last 5 minutes db is
    200 ms slower and nothing else changes: no error, no new log line. The latency bands
    ClickHouse counts are the ones ``PatternCounts`` counts from the same events, and the
    stage's evidence, read from the store, quotes api's slow calls against db."""
    import orjson
    slow_from = NOW - 5 * 60_000
    rows, events = [], []
    for m in range(60):
        for k in range(20):
            t = NOW - 60 * 60_000 + m * 60_000 + k * 3000
            ms = (210.0 if t >= slow_from else 10.0) + (3.0 if k == 7 else 0.0)
            rows.append([datetime.fromtimestamp(t / 1000, UTC), "api", "INFO", "call db", "",
                         "", 0, "db", "query", 1, ms, f"p{t}"])
            events.append((t, {"service": "api", "level": "INFO",
                               "peer": {"service": "db", "operation": "query", "ok": True,
                                        "duration_ms": ms}}))
        # db's own lines: a source location keys the pattern (two templates mined from one
        # statement are one), a logger without a line leaves it to the template
        for k, (logger, tid) in enumerate([("Repo#40", f"t-{m % 2}"), ("db.pool", "t-pool")]):
            rows.append([datetime.fromtimestamp(t / 1000, UTC), "db", "INFO", "x", tid, logger,
                         0, "", "", None, None, f"d{k}{t}"])
            events.append((t, {"service": "db", "level": "INFO", "logger": logger,
                               "template_id": tid}))
    chdb_store.insert(f"{db}.logs", rows, column_names=[
        "ts", "service", "level", "message", "template_id", "logger", "http_status",
        "peer_service", "peer_operation", "peer_ok", "peer_duration_ms", "event_id"])
    replayed = PatternCounts()
    for t, e in events:
        replayed.add_event(e, t)
    stored = counts_from_rows(q.pattern_counts(chdb_store, db, NOW - 3_600_000, NOW))
    assert stored.window(0, NOW) == replayed.window(0, NOW)
    assert set(replayed.window(0, NOW)["db"]) == {"T:Repo#40:INFO", "T:t-pool:INFO"}
    assert {k for k in replayed.window(0, NOW)["api"] if k.startswith("L:")} == {
        "L:db:13", "L:db:14", "L:db:30"}
    stage = IncidentStage(chdb_store, db, IncidentEngine().s)
    a = {"id": "an-slow", "ts": slow_from + 5000, "service": "api", "scope": "edge",
         "series": "api->db", "feature": "p95", "direction": "up", "score": 0.9987,
         "observed": 210.0, "expected": 10.0, "severity": "critical", "variant": "champion"}
    inc = stage.handle(orjson.dumps(a), NOW - 100_000)
    assert inc is not None
    stage.tick(NOW - 100_000 + 31_000)
    got = q.get_incident(chdb_store, db, inc.id)
    assert got is not None and got["root_cause"][0] == "db", got
    assert re.match(r"callers see it slow: api \(\d+ calls slower than 13.5 ms",
                    got["suspects"][0]["evidence"][0]), got["suspects"][0]


def test_a_caller_and_its_callee_bad_in_one_window_open_one_incident(
        chdb_store: Client, db: str) -> None:
    """The first two signals of a fresh stage, before any tick: the call graph is read
    around them, not at the wall clock (a replay's events can be far from it)."""
    import orjson
    bad = NOW - 5 * 60_000
    chdb_store.insert(f"{db}.logs", log_rows(NOW - 30 * 60_000, 30, bad), column_names=COLS)
    stage = IncidentStage(chdb_store, db, IncidentEngine().s)
    first = {"id": "an-db", "ts": bad, "service": "db", "feature": "error_rate",
             "observed": 0.5, "expected": 0.0, "severity": "critical"}
    a = stage.handle(orjson.dumps(first), NOW + 3_600_000)
    b = stage.handle(orjson.dumps({**first, "id": "an-api", "service": "api"}), NOW + 3_600_000)
    assert a is not None and b is not None and a.id == b.id
    assert b.services == ["db", "api"]


def test_versions_newest_wins_and_list_filters(chdb_store: Client, db: str) -> None:
    eng = IncidentEngine()
    inc = eng.on_signal(signal_from_anomaly(
        {"id": "x1", "ts": NOW - 60_000, "service": "db", "severity": "warning"}), 0)
    assert inc is not None
    save(chdb_store, db, inc, NOW)
    newer = inc.model_copy(update={"status": "acknowledged"})
    save(chdb_store, db, newer, NOW + 1)
    save(chdb_store, db, newer, NOW + 1)  # the same write retried: one row
    docs = q.list_incidents(chdb_store, db, NOW - 3_600_000)
    assert [d["status"] for d in docs] == ["acknowledged"]
    assert q.list_incidents(chdb_store, db, NOW - 3_600_000, status="open") == []
    assert q.list_incidents(chdb_store, db, NOW) == []


@pytest.fixture
async def client(chdb_store: Client, db: str, tmp_path: Path, chdb_dir: Path
                 ) -> AsyncIterator[TestClient[Any, Any]]:
    tokens = tmp_path / "tokens.json"
    token = TokenStore(tokens).create("ana", "responder")
    with ThreadPoolExecutor(max_workers=1) as pool:
        app = create_app(chdb_store, database=db, executor_or_lock=pool,
                         health_provider=lambda: {"status": "ok"},
                         metrics_registry=CollectorRegistry(),
                         web_options=WebOptions(settings=WebSettings(), tokens_path=tokens),
                         query_connect=lambda: connect(ClickHouseSettings(), chdb_dir))
        async with TestClient(TestServer(app),
                              headers={"Authorization": f"Bearer {token}"}) as c:
            yield c


async def test_api_lists_shows_acts_and_drafts(client: TestClient[Any, Any],
                                               chdb_store: Client, db: str) -> None:
    eng = IncidentEngine()
    inc = eng.on_signal(signal_from_anomaly(
        {"id": "y1", "ts": NOW - 120_000, "service": "db", "severity": "critical"}), 0)
    assert inc is not None
    save(chdb_store, db, inc, NOW - 100_000)
    def at(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC)

    # its alert, and a later one of the same service (another problem, fired an hour after
    # in event time though stored as soon: a replay) that its timeline must not gather
    chdb_store.insert(f"{db}.alerts", [
        [at(NOW - 110_000), at(NOW - 115_000), "fp1", "DbErrors", "firing", "critical", "db",
         "db errors up", 1, "e1"],
        [at(NOW - 105_000), at(NOW + 3_600_000), "fp2", "DbSlow", "firing", "warning", "db",
         "db slow", 1, "e2"]],
        column_names=["ts", "trigger_ts", "fingerprint", "rule", "state", "severity",
                      "service", "summary", "version", "event_id"])
    r = await client.get("/api/incidents?since=1h")
    body = await r.json()
    assert r.status == 200 and [i["id"] for i in body["items"]] == [inc.id]
    item = body["items"][0]
    for key in ("id", "ts", "severity", "status", "services", "root_cause",
                "suspect_changes", "alerts"):
        assert key in item
    r = await client.get(f"/api/incidents/{inc.id}")
    timeline = (await r.json())["timeline"]
    assert [e["kind"] for e in timeline] == ["anomaly", "alert"]
    assert timeline[1]["ref"] == "fp1"
    r = await client.post(f"/api/incidents/{inc.id}/ack", json={"text": "on it"})
    assert r.status == 200 and (await r.json())["owner"] == "ana"
    r = await client.post(f"/api/incidents/{inc.id}/note", json={"text": "pool raised"})
    assert r.status == 200
    r = await client.post(f"/api/incidents/{inc.id}/resolve", json={})
    assert (await r.json())["status"] == "resolved"
    r = await client.post(f"/api/incidents/{inc.id}/ack", json={})
    assert r.status == 409
    r = await client.get(f"/api/incidents/{inc.id}/postmortem?format=md")
    md = await r.text()
    assert "## Timeline" in md and "pool raised" in md and "acknowledged by ana" in md
    r = await client.get(f"/api/incidents/{inc.id}/postmortem?format=html")
    assert r.content_type == "text/html" and "<h2>Root cause and evidence</h2>" in await r.text()
    r = await client.get("/api/incident-metrics?since=1d")
    m = await r.json()
    assert m["overall"]["incidents"] == 1 and m["overall"]["mttr_s"] is not None
    r = await client.get("/api/incidents/nope")
    assert r.status == 404
    r = await client.get("/api/incidents?since=yesterday")
    assert r.status == 400
    r = await client.get("/incidents")
    assert r.status == 200 and "/api/incidents" in await r.text()
