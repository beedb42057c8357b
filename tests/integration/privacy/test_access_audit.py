"""Roles and the audit trail on the real API and chDB: security logs hidden below the
security role (``/api/logs`` and SQL, no table-function way round), every write and query
audited, and an edited or deleted audit row named by the verification."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from audit.chain import verify
from audit.trail import AuditTrail, audit_rows, read_anchors, spool
from sinks.clickhouse.client import Client, connect
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.settings import ClickHouseSettings
from web.api import create_app
from web.auth import TokenStore
from web.settings import WebSettings
from web.site import WebOptions

pytestmark = pytest.mark.integration
KEY = b"integration-audit-key"


@pytest.fixture
def db(chdb_store: Client) -> Iterator[str]:
    s = ClickHouseSettings(database=f"lw_acc_{uuid.uuid4().hex[:8]}")
    migrate(chdb_store, s)
    chdb_store.command(
        f"INSERT INTO {s.database}.logs (ts, service, level, message, category, user_id, "
        "user_action, event_id) VALUES "
        "(now64(3) - 60, 'auth', 'WARN', 'login failed for <user>', 'security', 'h1', "
        "'login', 'e1'), (now64(3) - 60, 'auth', 'INFO', 'password changed', '', 'h2', "
        "'password_change', 'e2'), (now64(3) - 60, 'shop', 'INFO', 'GET /cart', '', '', '', "
        "'e3')")
    yield s.database
    chdb_store.command(f"DROP DATABASE IF EXISTS {s.database}")


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    store = TokenStore(tmp_path / "api_tokens.json")
    return {role: store.create(f"{role}-person", role)
            for role in ("viewer", "responder", "security", "admin")}


@pytest.fixture
async def api(chdb_store: Client, db: str, tokens: dict[str, str], tmp_path: Path,
              chdb_dir: Path) -> AsyncIterator[tuple[TestClient[Any, Any], AuditTrail]]:
    trail = AuditTrail(chdb_store, db, "api", KEY, tmp_path)
    with ThreadPoolExecutor(1) as pool:
        app = create_app(chdb_store, database=db, executor_or_lock=pool,
                         health_provider=lambda: {"status": "ok"},
                         metrics_registry=CollectorRegistry(),
                         web_options=WebOptions(settings=WebSettings(),
                                                tokens_path=tmp_path / "api_tokens.json"),
                         query_connect=lambda: connect(ClickHouseSettings(), chdb_dir),
                         audit=trail)
        async with TestClient(TestServer(app)) as c:
            yield c, trail


async def sql(c: TestClient[Any, Any], token: str, text: str) -> tuple[int, Any]:
    resp = await c.post("/api/query", json={"sql": text},
                        headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json()


async def test_security_logs_by_role_and_every_query_audited(
        api: tuple[TestClient[Any, Any], AuditTrail], tokens: dict[str, str], db: str,
        chdb_store: Client, tmp_path: Path) -> None:
    c, trail = api
    q = f"SELECT message FROM {db}.logs ORDER BY message"
    status, body = await sql(c, tokens["responder"], q)
    assert status == 200 and [r[0] for r in body["rows"]] == ["GET /cart"]
    status, body = await sql(c, tokens["security"], q)
    assert [r[0] for r in body["rows"]] == ["GET /cart", "login failed for <user>",
                                            "password changed"]
    status, body = await sql(c, tokens["responder"],
                             f"SELECT message FROM merge('{db}', '^logs$')")
    assert status == 403 and "merge()" in body["error"]["message"]
    status, body = await sql(c, tokens["responder"], "SELECT count() FROM numbers(5)")
    assert status == 200 and body["rows"] == [[5]]  # a generator reads no table
    status, body = await sql(c, tokens["responder"], f"SELECT count() FROM {db}.audit")
    assert body["rows"] == [[0]]  # the audit table: admins only
    status, body = await sql(c, tokens["admin"], f"SELECT count() FROM {db}.audit")
    assert body["rows"][0][0] >= 4
    resp = await c.get("/api/logs", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert [i["message"] for i in (await resp.json())["items"]] == ["GET /cart"]
    resp = await c.get("/api/logs", headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert len((await resp.json())["items"]) == 3
    resp = await c.post("/api/feedback", json={"target_kind": "alert"},
                        headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert resp.status == 403
    spool(tmp_path, "cli:ops", "local", "token.create", "deploy-bot", "role admin")
    assert trail.flush() == 0

    rows = audit_rows(chdb_store, db)
    seen = [(r["actor"], r["role"], r["action"], r["outcome"]) for r in rows]
    assert seen[:5] == [("responder-person", "responder", "query", "200"),
                        ("security-person", "security", "query", "200"),
                        ("responder-person", "responder", "query", "403"),
                        ("responder-person", "responder", "query", "200"),
                        ("responder-person", "responder", "query", "200")]
    assert ("viewer-person", "viewer", "logs.read", "200") in seen
    assert ("viewer-person", "viewer", "feedback", "403") in seen
    assert seen[-1] == ("cli:ops", "local", "token.create", "ok")
    assert rows[0]["detail"] == q
    assert verify(rows, KEY, read_anchors(tmp_path)).ok


async def test_an_edited_or_deleted_audit_row_is_named(
        api: tuple[TestClient[Any, Any], AuditTrail], tokens: dict[str, str], db: str,
        chdb_store: Client, tmp_path: Path) -> None:
    c, trail = api
    for i in range(6):
        await sql(c, tokens["responder"], f"SELECT {i}")
    anchors = read_anchors(tmp_path)
    assert verify(audit_rows(chdb_store, db), KEY, anchors).ok
    w = trail.writer
    chdb_store.command(f"ALTER TABLE {db}.audit UPDATE detail = 'SELECT 42' WHERE seq = 2",
                       settings={"mutations_sync": 2})
    problems = verify(audit_rows(chdb_store, db), KEY, anchors).problems
    assert problems == [f"writer {w} seq 2: its content does not match its hash (edited: "
                        "query by responder-person)"]
    chdb_store.command(f"ALTER TABLE {db}.audit DELETE WHERE seq IN (2, 5)",
                       settings={"mutations_sync": 2})
    problems = verify(audit_rows(chdb_store, db), KEY, anchors).problems
    assert problems == [f"writer {w} seq 2: missing (deleted) before seq 3",
                        f"writer {w} seq 5: missing (deleted) at the end of the chain; the "
                        "anchor holds seq 5"]
