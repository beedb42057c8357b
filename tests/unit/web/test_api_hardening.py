"""Issue #11 (query abuse): who may run SQL, where it runs, its limits, Host and media type."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_api import FakeStore, make_app

from web.api import run_read_query
from web.auth import TokenStore
from web.query_runner import MB, QueryLimits
from web.settings import WebSettings
from web.site import WebOptions

SQL = {"sql": "SELECT 1"}


def tokens(tmp_path: Path, settings: WebSettings | None = None
           ) -> tuple[WebOptions, dict[str, dict[str, str]]]:
    store = TokenStore(tmp_path / "tokens.json")
    heads = {role: {"Authorization": f"Bearer {store.create(role, role)}"}
             for role in ("viewer", "responder", "admin")}
    return WebOptions(settings=settings or WebSettings(), tokens_path=store.path), heads


async def test_query_needs_a_responder_token_by_default(tmp_path: Path) -> None:
    opts, heads = tokens(tmp_path)
    store = FakeStore()
    async with TestClient(TestServer(make_app(store, web_options=opts))) as c:
        anonymous = await c.post("/api/query", json=SQL)
        assert anonymous.status == 401
        assert "responder" in (await anonymous.json())["error"]["message"]
        assert (await c.post("/api/query", json=SQL, headers=heads["viewer"])).status == 403
        for role in ("responder", "admin"):
            assert (await c.post("/api/query", json=SQL, headers=heads[role])).status == 200
    assert len(store.calls) == 2


async def test_query_role_is_configurable(tmp_path: Path) -> None:
    opts, heads = tokens(tmp_path, WebSettings(query_role="admin"))
    async with TestClient(TestServer(make_app(FakeStore(), web_options=opts))) as c:
        assert (await c.post("/api/query", json=SQL, headers=heads["responder"])).status == 403
        assert (await c.post("/api/query", json=SQL, headers=heads["admin"])).status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:6066", "127.0.0.1.evil.example",
                                  "10.0.0.7"])
async def test_request_for_another_host_is_refused_421(host: str) -> None:
    store = FakeStore()
    async with TestClient(TestServer(make_app(store))) as c:
        for method, path in (("POST", "/api/query"), ("GET", "/api/health"), ("GET", "/")):
            resp = await c.request(method, path, json=SQL, headers={"Host": host})
            assert resp.status == 421, (method, path)
            assert (await resp.json())["error"]["code"] == "host_not_allowed"
    assert store.calls == []


@pytest.mark.parametrize("host", ["localhost", "localhost:6066", "127.0.0.1:1", "[::1]:6066",
                                  "LOCALHOST"])
async def test_loopback_hosts_are_allowed(host: str) -> None:
    async with TestClient(TestServer(make_app(FakeStore()))) as c:
        assert (await c.post("/api/query", json=SQL, headers={"Host": host})).status == 200


async def test_configured_hosts_are_allowed() -> None:
    opts = WebOptions(settings=WebSettings(query_role="viewer",
                                           allowed_hosts=("logwarden.example.com",)))
    async with TestClient(TestServer(make_app(FakeStore(), web_options=opts))) as c:
        ok = await c.post("/api/query", json=SQL,
                          headers={"Host": "logwarden.example.com:443"})
        assert ok.status == 200
        other = await c.post("/api/query", json=SQL, headers={"Host": "other.example.com"})
        assert other.status == 421


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
async def test_json_endpoint_with_another_content_type_is_415(content_type: str | None
                                                              ) -> None:
    store = FakeStore()
    headers = {"Content-Type": content_type} if content_type else {}
    async with TestClient(TestServer(make_app(store))) as c:
        resp = await c.post("/api/query", data=b'{"sql": "SELECT 1"}', headers=headers,
                            skip_auto_headers=["Content-Type"])
        assert resp.status == 415
        assert (await resp.json())["error"]["code"] == "unsupported_media_type"
        feedback = await c.post("/api/feedback", data=b"{}",
                                headers={"Content-Type": "text/plain"})
        assert feedback.status == 415
        assert (await c.post("/api/query", json=SQL)).status == 200  # aiohttp: JSON type
    assert len(store.calls) == 1


class Gate:
    """A store whose queries wait until released: to hold the query threads busy."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.store = FakeStore(on_query=self._wait)

    def _wait(self) -> None:
        self.started.release()
        self.release.wait(10)


async def test_query_runs_on_its_own_client_and_threads_not_the_writers_store() -> None:
    writer_store = FakeStore()
    made: list[FakeStore] = []

    def connect() -> FakeStore:
        made.append(FakeStore())
        return made[-1]

    opts = WebOptions(settings=WebSettings(query_role="viewer", query_concurrency=2))
    app = make_app(writer_store, web_options=opts, query_connect=connect)
    async with TestClient(TestServer(app)) as c:
        for _ in range(4):
            assert (await c.post("/api/query", json=SQL)).status == 200
    assert writer_store.calls == []
    calls = [call for s in made for call in s.calls]
    assert len(calls) == 4 and 1 <= len(made) <= 2  # one client per query thread
    assert all(call["thread"].startswith("api-query") for call in calls)


async def test_query_limits_are_clickhouse_settings() -> None:
    store = FakeStore()
    opts = WebOptions(settings=WebSettings(query_role="viewer", query_timeout_s=7,
                                           query_max_memory_mb=256, query_max_threads=1))
    async with TestClient(TestServer(make_app(store, web_options=opts))) as c:
        assert (await c.post("/api/query", json={**SQL, "limit": 5})).status == 200
    settings = dict(store.calls[0]["settings"])
    # a role below security reads without the security logs and the audit (web/access.py)
    assert "logwarden.logs" in settings.pop("additional_table_filters")
    assert settings == {"max_result_rows": 6, "result_overflow_mode": "break",
                        "max_execution_time": 7, "max_memory_usage": 256 * MB,
                        "max_threads": 1, "readonly": 1}
    assert list(settings)[-1] == "readonly"


def test_direct_queries_get_the_limits_too() -> None:
    store = FakeStore()
    run_read_query(store, "SELECT 1", limits=QueryLimits(3, 64 * MB, 1))  # type: ignore[arg-type]
    assert store.calls[0]["settings"]["max_memory_usage"] == 64 * MB


async def test_too_many_queries_are_refused_429_not_queued_forever() -> None:
    gate = Gate()
    opts = WebOptions(settings=WebSettings(query_role="viewer", query_concurrency=1,
                                           query_queue=1))
    app = make_app(FakeStore(), web_options=opts, query_connect=lambda: gate.store)
    async with TestClient(TestServer(app)) as c:
        running = asyncio.create_task(c.post("/api/query", json=SQL))
        await asyncio.to_thread(gate.started.acquire, True, 10)
        waiting = asyncio.create_task(c.post("/api/query", json=SQL))
        await asyncio.sleep(0.2)
        refused = await c.post("/api/query", json=SQL)
        assert refused.status == 429
        assert (await refused.json())["error"]["code"] == "too_many_queries"
        assert (await c.get("/api/health")).status == 200  # the rest of the API still answers
        gate.release.set()
        assert [(await t).status for t in (running, waiting)] == [200, 200]


def test_settings_host_check() -> None:
    s = WebSettings(allowed_hosts=("Logwarden.Example.com.",))
    assert s.host_allowed("logwarden.example.com") and s.host_allowed("::1")
    assert not s.host_allowed("example.com")
    assert WebSettings(allowed_hosts=("*",)).host_allowed("anything")


