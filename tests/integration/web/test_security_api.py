"""``GET /api/security`` and the detectors' address book on real chDB: authentication
failures by address and user, new addresses, privilege changes, open security alerts."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from alerting.lifecycle import FlapConfig, apply_signal
from alerting.security import SecurityDetector
from alerting.security_rules import load_security
from schemas.auth_events import auth_event
from sinks.clickhouse import rows
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.queries.security import known_addresses
from sinks.clickhouse.settings import ClickHouseSettings
from web.api import create_app
from web.auth import TokenStore
from web.settings import WebSettings
from web.site import WebOptions

pytestmark = pytest.mark.integration
SHIPPED = Path(__file__).resolve().parents[3] / "deploy" / "config" / "security.yaml"
NOW = datetime.now(UTC).replace(microsecond=0)


def log(at: datetime, user: str, ip: str, action: str, outcome: str, status: int,
        n: int) -> dict[str, Any]:
    return {"ts": int(at.timestamp() * 1000), "service": "shop", "level": "INFO",
            "message": f"{action} {outcome} for {user}", "attrs": {},
            "http": {"method": "POST", "route": "/login", "status": status},
            "user": {"id": user, "ip": ip, "action": action, "outcome": outcome},
            "event_id": f"ev{n}"}


@pytest.fixture(scope="module")
def db(chdb_store: Client) -> tuple[str, list[Any]]:
    s = ClickHouseSettings(database=f"lw_sec_{uuid.uuid4().hex[:10]}")
    migrate(chdb_store, s)
    events = []
    t0 = NOW - timedelta(days=3)  # history: alice and root at home
    events += [log(t0, "alice", "10.0.0.1", "login", "success", 200, 0),
               log(t0, "root", "10.0.0.2", "login", "success", 200, 1)]
    t1 = NOW - timedelta(minutes=20)  # a stuffing run from two addresses
    for i in range(40):
        events.append(log(t1 + timedelta(seconds=i / 4), f"user{i:02d}",
                          f"203.0.113.{i % 2}", "login", "failure", 401, 100 + i))
    events.append(log(t1 + timedelta(minutes=1), "root", "198.51.100.7", "login", "success",
                      200, 200))  # root from a new address
    events.append(log(t1 + timedelta(minutes=2), "mallory", "198.51.100.8",
                      "role.grant", "success", 200, 201))
    now_ms = int(time.time() * 1000)
    body = orjson.dumps([rows.log_row(e, str(e["event_id"]), 0, i, now_ms)
                         for i, e in enumerate(events)])[1:-1]  # as the ingest writer does
    chdb_store.raw_insert(f"{s.database}.logs", list(rows.TABLE_COLUMNS["logs"]),
                          insert_block=body, fmt="JSONCompactEachRow")
    det = SecurityDetector(load_security(SHIPPED))
    sigs = []
    for e in events:
        h = e["http"]
        doc = auth_event(e, f"{h['method']} {h['route']}", h["status"], e["event_id"])
        assert doc is not None
        sigs += det.observe(doc)
    alerts = [apply_signal(None, sg, sg.ts, FlapConfig()) for sg in sigs]
    chdb_store.insert("alerts", [rows.alert_row(a.model_dump(mode="json"), now_ms)
                                 for a in alerts if a is not None],
                      database=s.database, column_names=list(rows.TABLE_COLUMNS["alerts"]))
    return s.database, sigs


@pytest.fixture
async def client(chdb_store: Client, db: tuple[str, list[Any]], tmp_path: Path
                 ) -> Any:
    tokens = tmp_path / "tokens.json"
    TokenStore(tokens).create("viewer", "viewer")
    app = create_app(chdb_store, database=db[0], executor_or_lock=threading.Lock(),
                     health_provider=lambda: {"status": "ok"},
                     metrics_registry=CollectorRegistry(),
                     web_options=WebOptions(settings=WebSettings(), tokens_path=tokens))
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_security_api_lists_failures_new_addresses_changes_and_alerts(
        client: Any, db: tuple[str, list[Any]]) -> None:
    since = (NOW - timedelta(hours=1)).isoformat()
    r = await client.get("/api/security", params={"since": since, "until": NOW.isoformat()})
    assert r.status == 200, await r.text()
    d = await r.json()
    by_ip = {x["ip"]: x for x in d["failures_by_address"]}
    assert set(by_ip) == {"203.0.113.0", "203.0.113.1"}
    assert (by_ip["203.0.113.0"]["failures"], by_ip["203.0.113.0"]["users"]) == (20, 20)
    assert len(d["failures_by_user"]) == 40 and d["failures_by_user"][0]["failures"] == 1
    assert [(x["user"], x["ip"]) for x in d["new_addresses"]] == [("root", "198.51.100.7")]
    assert [(x["user"], x["action"]) for x in d["privilege_changes"]] == [
        ("mallory", "role.grant")]
    rules = {a["rule"] for a in d["alerts"]}
    assert {"CredentialStuffing", "PrivilegeChange"} <= rules
    assert all(a["labels"]["category"] == "security" for a in d["alerts"])
    stuffing = next(a for a in d["alerts"] if a["rule"] == "CredentialStuffing")
    assert "203.0.113." in stuffing["summary"] and "addresses" in stuffing["evidence"]


async def test_security_api_refuses_bad_parameters(client: Any) -> None:
    r = await client.get("/api/security", params={"range": "forever"})
    assert r.status == 400


def test_address_book_is_seeded_from_successful_logins(chdb_store: Client,
                                                      db: tuple[str, list[Any]]) -> None:
    pairs = {(u, ip) for u, ip, _ in known_addresses(chdb_store, db[0])}
    assert pairs == {("alice", "10.0.0.1"), ("root", "10.0.0.2"), ("root", "198.51.100.7")}


def test_rules_test_replays_stored_auth_events(chdb_store: Client,
                                               db: tuple[str, list[Any]]) -> None:
    """What `logwarden rules test deploy/config/security.yaml` runs, on real rows."""
    from cli.security import replay_rows
    from sinks.clickhouse.queries.security import AUTH_EVENT_SQL

    res = chdb_store.query(AUTH_EVENT_SQL.format(db=db[0]), parameters={"since": 7 * 86400})
    n, fired = replay_rows(load_security(SHIPPED), list(res.column_names),
                           [list(r) for r in res.result_rows])
    assert n == 44
    assert len(fired["CredentialStuffing"]) == 2  # one per attacking address
    assert {e["labels"]["ip"] for e in fired["CredentialStuffing"]} == {"203.0.113.0",
                                                                       "203.0.113.1"}
    assert len(fired["PrivilegeChange"]) == 1
