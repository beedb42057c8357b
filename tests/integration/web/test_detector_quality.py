"""Detector quality over time, from people's verdicts on anomalies, on real chDB."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from incidents.model import Incident
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.queries.base import Span
from sinks.clickhouse.queries.incidents import save_incident
from sinks.clickhouse.queries.quality import detector_quality_by_day, verdict_history
from sinks.clickhouse.settings import ClickHouseSettings
from web.api import create_app
from web.auth import TokenStore
from web.settings import WebSettings
from web.site import WebOptions

pytestmark = pytest.mark.integration
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)


@pytest.fixture(scope="module")
def db(chdb_store: Client) -> str:
    s = ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:10]}")
    migrate(chdb_store, s)
    anomalies, feedback = [], []
    # day 0: series a1-a4 judged true, true, false, unsure; a1 judged twice (the last wins)
    # day 1: b1 true, b2 false, and one incident reported missed; the challenger's c1 false
    verdicts = [(0, "a1", "series", "champion", "false"), (0, "a1", "series", "champion", "true"),
                (0, "a2", "series", "champion", "true"), (0, "a3", "hst", "champion", "false"),
                (0, "a4", "series", "champion", "unsure"), (1, "b1", "series", "champion", "true"),
                (1, "b2", "series", "champion", "false"),
                (1, "c1", "series", "challenger", "false")]
    for k, (day, aid, detector, variant, verdict) in enumerate(verdicts):
        at = DAY + timedelta(days=day, hours=1, minutes=k)
        anomalies.append([aid, at, f"svc {aid}", "svc", detector, variant])
        feedback.append([at + timedelta(minutes=5), "anomaly", aid, verdict, f"f{k}"])
    feedback.append([DAY + timedelta(days=1, hours=3), "incident", "inc-9", "missed", "f-m"])
    chdb_store.insert("anomalies", anomalies, database=s.database, column_names=[
        "event_id", "ts", "series", "service", "detector", "variant"])
    chdb_store.insert("feedback", feedback, database=s.database, column_names=[
        "ts", "target_kind", "target_id", "verdict", "event_id"])
    return s.database


def test_quality_per_day_counts_each_anomalys_last_verdict(chdb_store: Client, db: str) -> None:
    span = Span(DAY, DAY + timedelta(days=3))
    got = {(r["day"].date(), r["detector"], r["variant"]): r
           for r in detector_quality_by_day(chdb_store, db, span)}
    d0, d1 = DAY.date(), (DAY + timedelta(days=1)).date()
    assert set(got) == {(d0, "series", "champion"), (d0, "hst", "champion"),
                        (d1, "series", "champion"), (d1, "series", "challenger")}
    first = got[(d0, "series", "champion")]
    assert (first["true_alerts"], first["false_alerts"], first["unsure"]) == (2, 0, 1)
    assert (first["precision"], first["false_alert_rate"], first["recall"]) == (1.0, 0.0, 1.0)
    assert got[(d0, "hst", "champion")]["false_alert_rate"] == 1.0
    second = got[(d1, "series", "champion")]
    assert (second["precision"], second["recall"]) == (0.5, 0.5)  # 1 found, 1 missed
    assert got[(d1, "series", "challenger")]["recall"] == 0.0


async def test_the_intelligence_api_serves_it(chdb_store: Client, db: str,
                                              tmp_path: Path) -> None:
    token = TokenStore(tmp_path / "tokens.json").create("oncall", "responder")
    published: list[tuple[str, bytes]] = []
    opts = WebOptions(settings=WebSettings(), tokens_path=tmp_path / "tokens.json",
                      publish=lambda topic, value, key: published.append((topic, value)))
    app = create_app(chdb_store, database=db, executor_or_lock=threading.Lock(),
                     health_provider=lambda: {"status": "ok"},
                     metrics_registry=CollectorRegistry(), web_options=opts)
    async with TestClient(TestServer(app)) as client:
        body = await (await client.get("/api/intelligence", params={
            "since": DAY.isoformat(), "until": (DAY + timedelta(days=3)).isoformat()})).json()
        missed = await client.post("/api/feedback", headers={"Authorization": f"Bearer {token}"},
                                   json={"target_kind": "incident", "target_id": "INC-1042",
                                         "verdict": "missed"})
    assert missed.status == 202 and b'"target_kind":"incident"' in published[0][1]
    by_day = body["detectors_by_day"]
    assert len(by_day) == 4 and {r["variant"] for r in by_day} == {"champion", "challenger"}
    assert sorted(r["precision"] for r in by_day) == [0.0, 0.0, 0.5, 1.0]


def test_a_verdict_on_an_alert_counts_for_the_anomaly_that_fired_it(chdb_store: Client) -> None:
    s = ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:10]}")
    migrate(chdb_store, s)
    t0 = datetime.now(UTC) - timedelta(hours=2)
    chdb_store.insert("anomalies", [["x1", t0, "pay", "pay", "series", "champion"],
                                    ["x2", t0, "cart", "cart", "hst", "champion"]],
                      database=s.database, column_names=["event_id", "ts", "series", "service",
                                                         "detector", "variant"])
    # fp1 was fired by anomaly x1 (then acknowledged); fp3 by x2 but judged before it fired;
    # fp2 by a threshold rule: no anomaly to count
    alerts = [["fp1", t0, '{"anomaly_id": "x1"}', 1], ["fp1", t0 + timedelta(minutes=2),
                                                       '{"anomaly_id": "x1"}', 2],
              ["fp2", t0, '{"field": "error_rate"}', 1],
              ["fp3", t0 + timedelta(hours=1), '{"anomaly_id": "x2"}', 1]]
    chdb_store.insert("alerts", [[ts, fp, "r", "firing", ev, v, f"{fp}{v}"]
                                 for fp, ts, ev, v in alerts], database=s.database,
                      column_names=["ts", "fingerprint", "rule", "state", "evidence", "version",
                                    "event_id"])
    feedback = [[t0 + timedelta(minutes=1), "anomaly", "x1", "true", "f1"],
                [t0 + timedelta(minutes=5), "alert", "fp1", "false", "f2"],
                [t0 + timedelta(minutes=6), "alert", "fp2", "false", "f3"],
                [t0 + timedelta(minutes=7), "alert", "fp3", "false", "f4"]]
    chdb_store.insert("feedback", feedback, database=s.database,
                      column_names=["ts", "target_kind", "target_id", "verdict", "event_id"])
    history = verdict_history(chdb_store, s.database, 100)
    assert [(r["detector"], r["variant"], r["verdict"]) for r in history] == [
        ("series", "champion", "false")]  # x1 once, at its last verdict (through fp1)
    span = Span(t0 - timedelta(days=1), t0 + timedelta(days=1))
    day = detector_quality_by_day(chdb_store, s.database, span)
    assert [(r["detector"], r["false_alerts"], r["true_alerts"]) for r in day] == [
        ("series", 1, 0)]


def test_a_verdict_on_an_incident_counts_for_each_of_its_anomalies(chdb_store: Client) -> None:
    s = ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:10]}")
    migrate(chdb_store, s)
    t0 = datetime.now(UTC) - timedelta(hours=2)
    chdb_store.insert("anomalies", [["x1", t0, "pay", "pay", "series", "champion"],
                                    ["x2", t0, "db", "db", "hst", "champion"],
                                    ["x3", t0, "web", "web", "hst", "champion"]],
                      database=s.database, column_names=["event_id", "ts", "series", "service",
                                                         "detector", "variant"])
    inc = Incident(id="inc-1", ts=int(t0.timestamp() * 1000), last_signal_ms=0,
                   services=["pay", "db"], signal_ids=["x1"], version=1)
    save_incident(chdb_store, s.database, inc.model_dump(mode="json"), 0)
    inc.signal_ids, inc.version = ["x1", "x2"], 2  # the newest version holds x2 too
    save_incident(chdb_store, s.database, inc.model_dump(mode="json"), 0)
    feedback = [[t0 + timedelta(minutes=5), "incident", "inc-1", "false", "f1"],
                [t0 + timedelta(minutes=6), "incident", "inc-9", "false", "f2"]]  # unknown
    chdb_store.insert("feedback", feedback, database=s.database,
                      column_names=["ts", "target_kind", "target_id", "verdict", "event_id"])
    history = verdict_history(chdb_store, s.database, 100)
    assert sorted((r["detector"], r["verdict"]) for r in history) == [
        ("hst", "false"), ("series", "false")]  # x1 and x2, not x3
