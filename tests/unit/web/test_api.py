"""The worker API on a fake store: read-only guard, limits, JSON errors, health and metrics."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from prometheus_client import CollectorRegistry, Counter

from web.api import DEFAULT_LIMIT, MAX_LIMIT, check_read_only, create_app, serve
from web.auth import TokenStore
from web.http import ApiError, json_safe
from web.settings import WebSettings
from web.site import WebOptions


@dataclass
class Result:
    column_names: list[str]
    result_rows: list[tuple[Any, ...]]


@dataclass
class FakeStore:
    """Answers every query with ``result`` or raises ``error``; records calls and threads."""

    result: Result = field(default_factory=lambda: Result(["n"], [(1,), (2,)]))
    error: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    on_query: Callable[[], None] | None = None

    def query(self, query: str | None = None, parameters: Any = None,
              settings: dict[str, Any] | None = None, **_: Any) -> Result:
        self.calls.append({"sql": query, "params": parameters, "settings": settings,
                           "thread": threading.current_thread().name})
        if self.on_query:
            self.on_query()
        if self.error:
            raise self.error
        return self.result

    def command(self, *a: Any, **k: Any) -> Any:
        raise AssertionError("the API must not run commands")

    def insert(self, *a: Any, **k: Any) -> Any:
        raise AssertionError("the API must not insert")


HEALTH: dict[str, Any] = {"status": "ok", "events_in": 10, "lag": 0.0}


def make_app(store: FakeStore, *, executor_or_lock: Any = None,
             health: Callable[[], Any] = lambda: HEALTH,
             registry: CollectorRegistry | None = None, **kw: Any) -> web.Application:
    return create_app(store, database="logwarden",
                      executor_or_lock=executor_or_lock or threading.Lock(),
                      health_provider=health, metrics_registry=registry or CollectorRegistry(),
                      **kw)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def client(store: FakeStore) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(store))) as c:
        yield c


# -- the read-only guard ---------------------------------------------------------------

@pytest.mark.parametrize(("sql", "sent"), [
    ("SELECT 1", "SELECT 1"),
    ("  select 1 ;; \n", "  select 1"),
    ("-- the count\nSELECT count() FROM logwarden.logs; -- done", "-- the count\nSELECT count() "
     "FROM logwarden.logs"),
    ("/* x; y */ WITH 1 AS a SELECT a", "/* x; y */ WITH 1 AS a SELECT a"),
    ("SELECT ';', 'it''s; \\' ;' AS `a;b`", "SELECT ';', 'it''s; \\' ;' AS `a;b`"),
    ("SELECT 'INSERT INTO t' AS s -- INTO OUTFILE", "SELECT 'INSERT INTO t' AS s -- INTO OUTFILE"),
    ("(SELECT 1) UNION ALL (SELECT 2)", "(SELECT 1) UNION ALL (SELECT 2)"),
    ("SHOW TABLES FROM logwarden", "SHOW TABLES FROM logwarden"),
    ("DESCRIBE logwarden.logs", "DESCRIBE logwarden.logs"),
    ("desc logwarden.logs", "desc logwarden.logs"),
    ("EXPLAIN SELECT 1", "EXPLAIN SELECT 1"),
])
def test_read_only_statements_pass_without_trailing_semicolons(sql: str, sent: str) -> None:
    assert check_read_only(sql) == sent


@pytest.mark.parametrize(("sql", "code"), [
    ("INSERT INTO logwarden.logs VALUES (1)", "not_read_only"),
    ("DROP TABLE logwarden.logs", "not_read_only"),
    ("/* SELECT */ ALTER TABLE t DELETE WHERE 1", "not_read_only"),
    ("SELECT 1; DROP TABLE logwarden.logs", "multiple_statements"),
    ("SELECT 1 -- x\n; INSERT INTO t VALUES (1)", "multiple_statements"),
    ("SELECT 'a'; SELECT 'b'", "multiple_statements"),
    ("SELECT 1 INTO  OUTFILE '/tmp/x'", "not_read_only"),
    ("WITH 1 AS a INSERT INTO t SELECT a", "not_read_only"),
    ("SET readonly = 0", "not_read_only"),
    ("", "empty_sql"),
    (" -- just a comment\n ;", "empty_sql"),
])
def test_anything_but_one_read_statement_is_refused(sql: str, code: str) -> None:
    with pytest.raises(ApiError) as info:
        check_read_only(sql)
    assert (info.value.status, info.value.code) == (400, code)


def test_json_safe_makes_clickhouse_values_plain_json() -> None:
    ts = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    row = [ts, float("nan"), float("inf"), b"ok", b"\xff\x00", Decimal("1.50"),
           UUID(int=1), 2**100, (1, "x"), {"k": [ts]}, None, True]
    assert json_safe(row) == [
        "2024-05-01T12:00:00+00:00", None, None, "ok", "base64:/wA=", "1.50",
        "00000000-0000-0000-0000-000000000001", str(2**100), [1, "x"],
        {"k": ["2024-05-01T12:00:00+00:00"]}, None, True]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
async def test_response_bodies_encode_like_json_safe(
        client: TestClient[Any, Any], store: FakeStore, fmt: str) -> None:
    row = (datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC), float("-inf"), b"\xff\x00",
           Decimal("1.50"), IPv4Address("10.0.0.1"), {1: b"ok"}, (2**100, "x"))
    store.result = Result([f"c{i}" for i in range(len(row))], [row])
    resp = await client.post("/api/query", json={"sql": "SELECT 1", "format": fmt})
    body = orjson.loads(await resp.read())
    got = body["rows"][0] if fmt == "json" else list(body.values())
    assert got == json_safe(list(row))


# -- POST /api/query -------------------------------------------------------------------

async def test_query_returns_rows_and_runs_read_only_with_limits(
        client: TestClient[Any, Any], store: FakeStore) -> None:
    store.result = Result(["ts", "v"], [(datetime(2024, 1, 1), float("nan"))])
    resp = await client.post("/api/query", json={
        "sql": "SELECT ts, v FROM logwarden.t WHERE s = {s:String};", "params": {"s": "a"}})
    assert resp.status == 200
    body = await resp.json()
    assert body["columns"] == ["ts", "v"]
    assert body["rows"] == [["2024-01-01T00:00:00", None]]
    assert (body["row_count"], body["truncated"]) == (1, False)
    assert body["elapsed_ms"] >= 0
    call = store.calls[0]
    assert call["sql"] == "SELECT ts, v FROM logwarden.t WHERE s = {s:String}"
    assert call["params"] == {"s": "a"}
    assert call["settings"]["readonly"] == 1
    assert list(call["settings"])[-1] == "readonly"  # ClickHouse refuses settings after it
    assert call["settings"]["max_result_rows"] == DEFAULT_LIMIT + 1
    assert call["settings"]["max_execution_time"] > 0


async def test_rows_beyond_the_limit_are_cut_and_flagged(
        client: TestClient[Any, Any], store: FakeStore) -> None:
    store.result = Result(["n"], [(i,) for i in range(10)])
    body = await (await client.post("/api/query", json={"sql": "SELECT n", "limit": 3})).json()
    assert body["rows"] == [[0], [1], [2]]
    assert body["truncated"] is True


async def test_a_huge_limit_is_capped(client: TestClient[Any, Any], store: FakeStore) -> None:
    resp = await client.post("/api/query", json={"sql": "SELECT 1", "limit": 10**12})
    assert resp.status == 200
    assert store.calls[0]["settings"]["max_result_rows"] == MAX_LIMIT + 1


async def test_writes_are_refused_before_reaching_the_store(
        client: TestClient[Any, Any], store: FakeStore) -> None:
    for sql in ("DROP TABLE logwarden.logs", "SELECT 1; DROP TABLE logwarden.logs"):
        resp = await client.post("/api/query", json={"sql": sql})
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["code"] in ("not_read_only", "multiple_statements")
        assert error["message"]
    assert store.calls == []


@pytest.mark.parametrize(("exc", "status", "code"), [
    (DatabaseError("Code: 62. DB::Exception: Syntax error: failed at position 7", code=62),
     400, "clickhouse_error"),
    (DatabaseError("Code: 159. Timeout exceeded", code=159), 408, "query_timeout"),
    (OperationalError("connection refused"), 503, "store_unavailable"),
    (RuntimeError("boom"), 500, "internal_error"),
])
async def test_store_failures_map_to_json_errors(
        client: TestClient[Any, Any], store: FakeStore, exc: Exception, status: int,
        code: str) -> None:
    store.error = exc
    resp = await client.post("/api/query", json={"sql": "SELECT 1"})
    assert resp.status == status
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert error["code"] == code
    assert str(exc).split(".")[0] in error["message"]


async def test_unknown_table_error_hints_at_the_database(
        client: TestClient[Any, Any], store: FakeStore) -> None:
    store.error = DatabaseError("Code: 60. Unknown table expression identifier 'logs'", code=60)
    error = (await (await client.post("/api/query", json={"sql": "SELECT * FROM logs"})).json())
    assert "logwarden.<table>" in error["error"]["message"]


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "bad_json"),
    (b'{"query": "SELECT 1"}', "bad_request"),
    (b'{"sql": "SELECT 1", "params": [1]}', "bad_request"),
    (b'{"sql": "SELECT 1", "format": "xml"}', "bad_format"),
    (b'{"sql": "SELECT 1", "limit": 0}', "bad_limit"),
    (b'{"sql": "SELECT 1", "limit": "10"}', "bad_limit"),
])
async def test_malformed_requests_are_400(client: TestClient[Any, Any], body: bytes,
                                          code: str) -> None:
    resp = await client.post("/api/query", data=body)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == code


async def test_csv_and_jsonl_formats(client: TestClient[Any, Any], store: FakeStore) -> None:
    store.result = Result(["a", "b"], [(1, "x,y"), (None, [1, 2])])
    resp = await client.post("/api/query", json={"sql": "SELECT 1", "format": "csv"})
    assert resp.content_type == "text/csv"
    assert await resp.text() == 'a,b\n1,"x,y"\n,"[1,2]"\n'
    assert resp.headers["X-Row-Count"] == "2"
    resp = await client.post("/api/query", json={"sql": "SELECT 1", "format": "jsonl"})
    assert await resp.text() == '{"a":1,"b":"x,y"}\n{"a":null,"b":[1,2]}\n'


async def test_http_errors_are_json(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/nope")
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "not_found")
    resp = await client.get("/api/query")
    assert resp.status == 405
    assert "POST" in resp.headers["Allow"]
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    resp = await client.post("/api/query", data=b"x" * (2 << 20))
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "request_entity_too_large"


# -- store thread, auth, health, metrics -----------------------------------------------

async def test_store_calls_run_on_the_given_executor() -> None:
    store = FakeStore()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store") as pool:
        async with TestClient(TestServer(make_app(store, executor_or_lock=pool))) as c:
            assert (await c.post("/api/query", json={"sql": "SELECT 1"})).status == 200
    assert store.calls[0]["thread"].startswith("store")


async def test_store_calls_hold_the_given_lock() -> None:
    lock = threading.Lock()
    held: list[bool] = []
    store = FakeStore(on_query=lambda: held.append(lock.locked()))
    async with TestClient(TestServer(make_app(store, executor_or_lock=lock))) as c:
        assert (await c.post("/api/query", json={"sql": "SELECT 1"})).status == 200
    assert held == [True]
    assert not lock.locked()


async def test_tokens_guard_queries_but_not_health_or_metrics(
        store: FakeStore, tmp_path: Path) -> None:
    token = TokenStore(tmp_path / "tokens.json").create("analyst", "viewer")
    opts = WebOptions(settings=WebSettings(read_requires_token=True),
                      tokens_path=tmp_path / "tokens.json")
    async with TestClient(TestServer(make_app(store, web_options=opts))) as c:
        resp = await c.post("/api/query", json={"sql": "SELECT 1"})
        assert (resp.status, (await resp.json())["error"]["code"]) == (401, "unauthorized")
        nope = await c.post("/api/query", json={"sql": "SELECT 1"},
                            headers={"Authorization": "Bearer nope"})
        assert nope.status == 401
        ok = await c.post("/api/query", json={"sql": "SELECT 1"},
                          headers={"Authorization": f"Bearer {token}"})
        assert ok.status == 200
        assert (await c.get("/api/health")).status == 200  # probes carry no token
        assert (await c.get("/metrics")).status == 200
    assert len(store.calls) == 1


@pytest.mark.parametrize(("report", "status"), [
    ({"status": "ok", "lag": {"logs": 3}, "at": datetime(2024, 1, 1, tzinfo=UTC)}, 200),
    ({"status": "down", "reason": "writer stopped"}, 503),
])
async def test_health_serves_the_providers_report(report: Mapping[str, Any], status: int
                                                  ) -> None:
    async with TestClient(TestServer(make_app(FakeStore(), health=lambda: report))) as c:
        resp = await c.get("/api/health")
        assert resp.status == status
        body = await resp.json()
    assert body["status"] == report["status"]
    if "at" in report:
        assert body["at"] == "2024-01-01T00:00:00+00:00"


async def test_health_accepts_an_async_provider() -> None:
    async def provider() -> dict[str, Any]:
        return {"status": "ok", "events_in": 5}

    async with TestClient(TestServer(make_app(FakeStore(), health=provider))) as c:
        assert (await (await c.get("/api/health")).json())["events_in"] == 5


async def test_metrics_expose_the_registry() -> None:
    registry = CollectorRegistry()
    Counter("logwarden_events_in", "Events read.", registry=registry).inc(7)
    async with TestClient(TestServer(make_app(FakeStore(), registry=registry))) as c:
        resp = await c.get("/metrics")
        text = await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "logwarden_events_in_total 7.0" in text


async def test_serve_starts_and_stops_on_the_running_loop() -> None:
    runner = await serve(make_app(FakeStore()), "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://{host}:{port}/api/health") as resp:
            assert (await resp.json())["events_in"] == 10
    finally:
        await runner.cleanup()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://{host}:{port}/api/health")
