"""The JSON API and dashboards on real chDB: data, auth and roles, validation, pagination,
hostile parameters that must stay data, missing tables as empty lists."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.settings import ClickHouseSettings
from web.api import create_app
from web.auth import TokenStore
from web.settings import WebSettings
from web.site import WebOptions

pytestmark = pytest.mark.integration
# Recent: rows older than the tables' TTL would be dropped on insert.
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


@pytest.fixture(scope="module")
def db(chdb_store: Client) -> str:
    s = ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:10]}")
    migrate(chdb_store, s)
    d = s.database
    wins, logs = [], []
    for i in range(30):
        start = T0 + timedelta(minutes=i)
        for svc, err in (("checkout", 0.02), ("search", 0.2 if i > 25 else 0.01)):
            wins.append([f"service:{svc}", svc, "service", "", "", 60, start,
                         start + timedelta(minutes=1), 600, int(600 * err), err, 10.0,
                         120.0 + i, 1])
    cols = ["series", "service", "scope", "route", "name", "window_s", "start", "end", "count",
            "error_count", "error_rate", "rate_per_s", "p95", "revision"]
    chdb_store.insert("windows", wins, column_names=cols, database=d)
    for i in range(250):
        logs.append([T0 + timedelta(seconds=i), "checkout", "ERROR" if i % 5 == 0 else "INFO",
                     f"payment {i} failed" if i % 5 == 0 else f"ok {i}", f"e{i}",
                     "t1" if i % 5 == 0 else "t2", "payments", 0 if i % 10 == 0 else 1,
                     12.5])
    chdb_store.insert("logs", logs, column_names=[
        "ts", "service", "level", "message", "event_id", "template_id", "peer_service",
        "peer_ok", "peer_duration_ms"], database=d)
    chdb_store.command(f"DROP TABLE {d}.anomalies")  # a stage that has not run yet
    return d


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, Any]:
    store = TokenStore(tmp_path / "tokens.json")
    return {"path": store.path, **{r: store.create(r, r) for r in ("viewer", "responder")}}


async def _client(store: Client, db: str, tokens: dict[str, Any], published: list[Any],
                  read_requires_token: bool = False) -> TestClient[Any, Any]:
    opts = WebOptions(settings=WebSettings(read_requires_token=read_requires_token),
                      tokens_path=tokens["path"],
                      publish=lambda topic, value, key: published.append((topic, value)))
    app = create_app(store, database=db, executor_or_lock=threading.Lock(),
                     health_provider=lambda: {"status": "ok"},
                     metrics_registry=CollectorRegistry(), web_options=opts)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def api(chdb_store: Client, db: str, tokens: dict[str, Any]
              ) -> AsyncIterator[tuple[TestClient[Any, Any], list[Any]]]:
    published: list[Any] = []
    client = await _client(chdb_store, db, tokens, published)
    yield client, published
    await client.close()


RANGE = {"since": T0.isoformat(), "until": (T0 + timedelta(hours=1)).isoformat()}


async def test_services_and_metrics_carry_the_windows(api: Any) -> None:
    client, _ = api
    body = await (await client.get("/api/services", params=RANGE)).json()
    by = {r["service"]: r for r in body["items"]}
    assert set(by) == {"checkout", "search"}
    assert by["checkout"]["events"] == 30 * 600
    assert by["search"]["error_rate"] > by["checkout"]["error_rate"]
    m = await (await client.get("/api/metrics", params={**RANGE, "service": "search"})).json()
    assert len(m["items"]) == 30 and m["items"][-1]["error_rate"] == pytest.approx(0.2)


async def test_logs_search_filters_and_pages(api: Any) -> None:
    client, _ = api
    first = await (await client.get("/api/logs", params={**RANGE, "level": "error",
                                                          "limit": "20"})).json()
    assert len(first["items"]) == 20 and first["next_offset"] == 20
    assert all(r["level"] == "ERROR" for r in first["items"])
    last = await (await client.get("/api/logs", params={**RANGE, "level": "ERROR",
                                                         "limit": "20", "offset": "40"})).json()
    assert len(last["items"]) == 10 and last["next_offset"] is None
    grouped = await (await client.get("/api/logs", params={**RANGE, "group": "template"})).json()
    assert {g["template_id"]: g["lines"] for g in grouped["items"]} == {"t1": 50, "t2": 200}
    text = await (await client.get("/api/logs", params={**RANGE, "q": "PAYMENT 15 "})).json()
    assert [r["message"] for r in text["items"]] == ["payment 15 failed"]


@pytest.mark.parametrize("hostile", [
    "' OR 1=1 --", "checkout' OR '1'='1", "x'; DROP TABLE logs; --", "checkout\\' --",
    "{service:String}", "1) UNION SELECT name, 1 FROM system.tables --"])
async def test_hostile_parameters_stay_data(api: Any, chdb_store: Client, db: str,
                                            hostile: str) -> None:
    client, _ = api
    for name in ("service", "q", "template_id"):
        resp = await client.get("/api/logs", params={**RANGE, name: hostile})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["items"] == []
    assert chdb_store.query(f"SELECT count() FROM {db}.logs").result_rows[0][0] == 250


@pytest.mark.parametrize(("params", "needle"), [
    ({"limit": "1001"}, "limit must be between 1 and 1000"),
    ({"limit": "0"}, "limit must be between 1 and 1000"),
    ({"limit": "ten"}, "limit must be an integer"),
    ({"offset": "-1"}, "offset must be between"),
    ({"level": "LOUD"}, "level must be one of"),
    ({"since": "yesterday"}, "since must be RFC 3339"),
    ({"range": "1 week"}, "range must look like"),
    ({"since": "2024-05-01T13:00:00Z", "until": "2024-05-01T12:00:00Z"}, "since must be before"),
    ({"service": "x" * 500}, "at most 200"),
])
async def test_bad_parameters_are_json_400s(api: Any, params: dict[str, str],
                                            needle: str) -> None:
    client, _ = api
    resp = await client.get("/api/logs", params=params)
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "bad_parameter"
    assert needle in body["error"]["message"]


async def test_missing_table_reads_as_empty(api: Any) -> None:
    client, _ = api
    resp = await client.get("/api/anomalies", params=RANGE)
    assert resp.status == 200 and (await resp.json())["items"] == []


async def test_writes_need_a_responder_token(api: Any, tokens: dict[str, Any]) -> None:
    client, published = api
    fb = {"target_kind": "alert", "target_id": "abc", "verdict": "false"}
    resp = await client.post("/api/feedback", json=fb)
    assert resp.status == 401 and "responder token" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/feedback", json=fb,
                             headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert resp.status == 403
    resp = await client.post("/api/feedback", json=fb,
                             headers={"Authorization": "Bearer lw_not_a_token"})
    assert resp.status == 401
    assert published == []
    resp = await client.post("/api/feedback", json=fb,
                             headers={"Authorization": f"Bearer {tokens['responder']}"})
    assert resp.status == 202
    assert published[0][0] == "logwarden.feedback.v1" and b'"user":"responder"' in published[0][1]


async def test_tokens_are_stored_hashed(tokens: dict[str, Any]) -> None:
    text = Path(tokens["path"]).read_text()
    assert tokens["viewer"] not in text and tokens["responder"] not in text
    assert "sha256" in text


async def test_reads_can_require_a_viewer_token(chdb_store: Client, db: str,
                                                tokens: dict[str, Any]) -> None:
    client = await _client(chdb_store, db, tokens, [], read_requires_token=True)
    try:
        assert (await client.get("/api/services")).status == 401
        assert (await client.get("/")).status == 401
        ok = await client.get("/api/services",
                              headers={"Authorization": f"Bearer {tokens['viewer']}"})
        assert ok.status == 200
    finally:
        await client.close()


async def test_openapi_and_pages(api: Any) -> None:
    client, _ = api
    doc = await (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and "/api/logs" in doc["paths"]
    limit = next(p for p in doc["paths"]["/api/logs"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000
    for path in ("/", "/logs", "/alerts", "/intelligence", "/pipeline", "/service/checkout"):
        resp = await client.get(path)
        assert resp.status == 200 and "/static/plotly.min.js" in await resp.text()
    js = await client.get("/static/plotly.min.js")
    assert js.status == 200 and len(await js.read()) > 1_000_000
    assert (await client.get("/static/../../etc/passwd")).status == 404
