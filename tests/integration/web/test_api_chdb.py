"""The worker API and ``logwarden query`` against real chDB: reads work, writes never do."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from clickhouse_connect.driver.exceptions import StreamFailureError
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from cli import query as query_cmd
from cli.common import settings
from cli.main import cli as main_cli
from sinks.clickhouse.client import Client, connect
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.settings import ClickHouseSettings
from web import api
from web.api import MAX_LIMIT, create_app, serve
from web.auth import TokenStore
from web.settings import WebSettings
from web.site import WebOptions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store_thread() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store") as pool:
        yield pool


@pytest.fixture
def db(chdb_store: Client) -> Iterator[str]:
    name = f"lw_api_{uuid.uuid4().hex[:10]}"
    chdb_store.command(f"CREATE DATABASE {name}")
    chdb_store.command(
        f"CREATE TABLE {name}.logs (ts DateTime64(3, 'UTC'), service LowCardinality(String), "
        "level String, latency Float64, note Nullable(String), "
        # what a responder's row filter reads (web/access.py: security logs are hidden)
        "category LowCardinality(String) DEFAULT '', user_action String DEFAULT '') "
        "ENGINE = MergeTree ORDER BY ts")
    chdb_store.command(
        f"INSERT INTO {name}.logs (ts, service, level, latency, note) "
        "SELECT toDateTime64('2024-05-01 00:00:00', 3, 'UTC') + number, "
        "['web', 'db', 'auth'][number % 3 + 1], if(number % 10 = 0, 'ERROR', 'INFO'), "
        "if(number = 6, nan, number / 10), if(number % 2 = 0, NULL, 'n') FROM numbers(30)")
    yield name
    chdb_store.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("tokens") / "api_tokens.json"
    return path, TokenStore(path).create("analyst", "responder")


def make_app(store: Client, pool: ThreadPoolExecutor, db: str, tokens: tuple[Path, str],
             chdb_dir: Path, **settings: Any) -> web.Application:
    """The API as the worker builds it: SQL on its own chDB clients, a responder token."""
    return create_app(store, database=db, executor_or_lock=pool,
                      health_provider=lambda: {"status": "ok"},
                      metrics_registry=CollectorRegistry(),
                      web_options=WebOptions(settings=WebSettings(**settings),
                                             tokens_path=tokens[0]),
                      query_connect=lambda: connect(ClickHouseSettings(), chdb_dir))


@pytest.fixture
async def client(chdb_store: Client, store_thread: ThreadPoolExecutor, db: str,
                 token_file: tuple[Path, str], chdb_dir: Path
                 ) -> AsyncIterator[TestClient[Any, Any]]:
    app = make_app(chdb_store, store_thread, db, token_file, chdb_dir)
    async with TestClient(TestServer(app),
                          headers={"Authorization": f"Bearer {token_file[1]}"}) as c:
        yield c


def row_count(store: Client, db: str) -> int:
    return int(store.query(f"SELECT count() FROM {db}.logs").result_rows[0][0])


async def post(client: TestClient[Any, Any], **body: Any) -> tuple[int, Any]:
    resp = await client.post("/api/query", json=body)
    raw = await resp.read()
    return resp.status, (orjson.loads(raw) if resp.content_type == "application/json" else raw)


async def test_json_query_with_bound_params(client: TestClient[Any, Any], db: str) -> None:
    status, body = await post(client, sql=(
        f"SELECT service, count() AS n, max(ts) AS last, anyIf(latency, isNaN(latency)) AS bad "
        f"FROM {db}.logs WHERE level = {{level:String}} AND service != {{skip:String}} "
        "GROUP BY service ORDER BY service"), params={"level": "INFO", "skip": "auth"})
    assert status == 200, body
    assert body["columns"] == ["service", "n", "last", "bad"]
    assert body["rows"][0][:3] == ["db", 9, "2024-05-01T00:00:28"]  # naive: the column's UTC
    assert body["rows"][1][0] == "web"
    assert body["rows"][1][3] is None  # the NaN latency of row 6 (service web)
    assert body["row_count"] == 2


async def test_csv_format_and_show_describe(client: TestClient[Any, Any], db: str) -> None:
    status, text = await post(client, sql=f"SELECT level, note FROM {db}.logs ORDER BY ts "
                                          "LIMIT 3", format="csv")
    assert status == 200
    assert text.decode() == "level,note\nERROR,\nINFO,n\nINFO,\n"
    status, body = await post(client, sql=f"SHOW TABLES FROM {db}")
    assert body["rows"] == [["logs"]]
    status, body = await post(client, sql=f"DESCRIBE TABLE {db}.logs")
    assert [r[0] for r in body["rows"]] == ["ts", "service", "level", "latency", "note",
                                            "category", "user_action"]


async def test_syntax_error_is_a_400_with_clickhouse_message(
        client: TestClient[Any, Any]) -> None:
    status, body = await post(client, sql="SELECT count( FROM nowhere")
    assert status == 400
    assert body["error"]["code"] == "clickhouse_error"
    assert "Syntax error" in body["error"]["message"]


@pytest.mark.parametrize("sql", [
    "INSERT INTO {db}.logs (level) VALUES ('x')",
    "DROP TABLE {db}.logs",
    "SELECT 1; DROP TABLE {db}.logs",
    "TRUNCATE TABLE {db}.logs",
    "ALTER TABLE {db}.logs DELETE WHERE 1",
    "WITH 1 AS a INSERT INTO {db}.logs (level) SELECT 'x'",
])
async def test_writes_are_rejected_and_the_table_survives(
        client: TestClient[Any, Any], chdb_store: Client, db: str, sql: str) -> None:
    status, body = await post(client, sql=sql.format(db=db))
    assert status == 400
    assert body["error"]["code"] in ("not_read_only", "multiple_statements")
    assert row_count(chdb_store, db) == 30


async def test_clickhouse_readonly_backs_up_the_guard(
        client: TestClient[Any, Any], chdb_store: Client, db: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Without our own check, readonly=1 alone must still stop a smuggled second statement
    # and table functions that read files. (Never send an INSERT this way: the chDB client
    # applies insert settings with SET, and a failed "SET readonly = DEFAULT" restore would
    # leave the shared session read-only.)
    monkeypatch.setattr(api, "check_read_only", lambda sql: sql)
    monkeypatch.setattr(api, "check_filtered_sql", lambda code, who: None)
    for sql in ("SELECT * FROM file('/etc/hostname', 'LineAsString')",
                f"SELECT 1; DROP TABLE {db}.logs"):
        status, body = await post(client, sql=sql)
        assert status == 400
        assert "readonly" in body["error"]["message"].lower()
    # chDB bug: a failed multi-statement leaves the first statement's output on the handle
    # and the NEXT query on it reads that garbage. One more reason the guard refuses ";".
    with contextlib.suppress(StreamFailureError):
        chdb_store.query("SELECT 1")
    assert row_count(chdb_store, db) == 30
    chdb_store.command(f"INSERT INTO {db}.logs (ts, service, level, latency) "
                       "VALUES (now64(3), 'web', 'INFO', 1)")  # the session can still write
    assert row_count(chdb_store, db) == 31


async def test_limits_cut_rows(client: TestClient[Any, Any]) -> None:
    status, body = await post(client, sql="SELECT number FROM numbers(25000)")
    assert (status, body["row_count"], body["truncated"]) == (200, 10_000, True)
    assert body["rows"][-1] == [9999]
    status, body = await post(client, sql="SELECT number FROM system.numbers",
                              limit=10 * MAX_LIMIT)
    assert (status, body["row_count"], body["truncated"]) == (200, MAX_LIMIT, True)


@contextlib.contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """``app`` served from its own thread and loop, as the worker does, on a free port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(serve(app, "127.0.0.1", 0), loop).result(10)
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def served_api(chdb_store: Client, store_thread: ThreadPoolExecutor, db: str,
               token_file: tuple[Path, str], chdb_dir: Path) -> Iterator[str]:
    with serving(make_app(chdb_store, store_thread, db, token_file, chdb_dir)) as url:
        yield url


def test_query_cli_through_the_worker_api(served_api: str, db: str,
                                          token_file: tuple[Path, str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cli = typer.Typer()
    query_cmd.register(cli)
    cli.command("noop")(lambda: None)
    runner = CliRunner()
    sql = (f"SELECT service, count() AS n FROM {db}.logs WHERE level = {{lvl:String}} "
           "GROUP BY service ORDER BY service")
    monkeypatch.setenv("LOGWARDEN_TOKEN_FILE", str(tmp_path / "none"))
    settings.cache_clear()
    result = runner.invoke(cli, ["query", sql, "-p", "lvl=ERROR", "--api", served_api])
    assert result.exit_code == 1
    assert "needs a responder token" in result.stderr  # no token: a clear refusal
    # --token, then LOGWARDEN_TOKEN, then the token file
    result = runner.invoke(cli, ["query", sql, "-p", "lvl=ERROR", "-f", "csv", "--api",
                                 served_api, "--token", token_file[1]])
    assert result.exit_code == 0, result.output
    assert result.stdout == "service,n\nauth,1\ndb,1\nweb,1\n"
    (tmp_path / "token").write_text(token_file[1] + "\n")
    monkeypatch.setenv("LOGWARDEN_TOKEN_FILE", str(tmp_path / "token"))
    settings.cache_clear()
    result = runner.invoke(cli, ["query", f"DROP TABLE {db}.logs", "--api", served_api])
    assert result.exit_code == 1
    assert "not allowed" in result.stderr  # authenticated: the guard answers, not auth
    monkeypatch.setenv("LOGWARDEN_TOKEN", token_file[1])
    monkeypatch.setenv("LOGWARDEN_TOKEN_FILE", str(tmp_path / "none"))
    settings.cache_clear()
    result = runner.invoke(cli, ["query", "SELECT 1 AS one", "-f", "csv", "--api", served_api])
    assert (result.exit_code, result.stdout) == (0, "one\n1\n")
    settings.cache_clear()


async def test_query_limits_hold_in_chdb(chdb_store: Client, store_thread: ThreadPoolExecutor,
                                         db: str, token_file: tuple[Path, str],
                                         chdb_dir: Path) -> None:
    app = make_app(chdb_store, store_thread, db, token_file, chdb_dir, query_timeout_s=1,
                   query_max_memory_mb=32)
    async with TestClient(TestServer(app),
                          headers={"Authorization": f"Bearer {token_file[1]}"}) as c:
        status, body = await post(c, sql="SELECT count() FROM system.numbers "
                                         "WHERE sipHash64(number) % 7 = 1")
        assert (status, body["error"]["code"]) == (408, "query_timeout")
        status, body = await post(c, sql="SELECT number % 3000000 AS k, groupArray(number) "
                                         "FROM numbers(6000000) GROUP BY k")
        assert (status, body["error"]["code"]) == (400, "query_memory_limit"), body
        status, body = await post(c, sql="SELECT getSetting('max_threads') AS t, "
                                         "getSetting('readonly') AS r")
        assert status == 200 and body["rows"] == [[2, 1]]


async def test_writer_inserts_while_an_api_query_runs(
        chdb_store: Client, store_thread: ThreadPoolExecutor, db: str,
        token_file: tuple[Path, str], chdb_dir: Path) -> None:
    app = make_app(chdb_store, store_thread, db, token_file, chdb_dir, query_timeout_s=3)
    async with TestClient(TestServer(app),
                          headers={"Authorization": f"Bearer {token_file[1]}"}) as c:
        slow = asyncio.create_task(post(c, sql="SELECT count() FROM system.numbers "
                                               "WHERE sipHash64(number) % 7 = 1"))
        await asyncio.sleep(0.5)

        def insert() -> float:  # on the writers' thread and client, as streams.runtime does
            t0 = time.perf_counter()
            chdb_store.command(f"INSERT INTO {db}.logs (ts, service, level, latency) "
                               "VALUES (now64(3), 'web', 'INFO', 1)")
            return time.perf_counter() - t0

        took = await asyncio.get_running_loop().run_in_executor(store_thread, insert)
        assert not slow.done()  # the insert did not wait for the query
        assert took < 1.0
        assert (await slow)[0] == 408
    assert row_count(chdb_store, db) == 31


def test_eval_scenario_scores_what_a_worker_raised(
        chdb_store: Client, store_thread: ThreadPoolExecutor, token_file: tuple[Path, str],
        chdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``logwarden eval scenario LABELS`` against a worker: its anomaly events and its alert
    episodes (the stored tables, as the worker writes them) scored against the labels."""
    ch = ClickHouseSettings(database=f"lw_eval_{uuid.uuid4().hex[:10]}")
    migrate(chdb_store, ch)
    t0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in [
        {"id": "i1", "kind": "error_burst", "severity": "critical", "service": "cart",
         "services": ["cart", "web"], "start_ms": ms(t0, 180), "end_ms": ms(t0, 260)},
        {"id": "i2", "kind": "disk_full", "severity": "critical", "service": "db",
         "services": ["db"], "start_ms": ms(t0, 360), "end_ms": ms(t0, 440)}]))
    chdb_store.insert("anomalies", [
        ["a1", t0 + timedelta(seconds=190), "cart", "cart", "series", "champion", "critical"],
        ["a2", t0 + timedelta(seconds=600), "web", "web", "series", "champion", "warning"],
        ["a3", t0 + timedelta(seconds=370), "db", "db", "series", "champion", "warning"]],
        database=ch.database, column_names=["event_id", "ts", "series", "service", "detector",
                                            "variant", "severity"])
    alert = ["fingerprint", "rule", "service", "severity", "trigger_ts", "ts", "state",
             "version"]

    def fired(fp: str, rule: str, svc: str, at_s: float, state: str = "firing",
              version: int = 1) -> list[Any]:
        return [fp, rule, svc, "critical", t0 + timedelta(seconds=at_s), t0, state, version]

    chdb_store.insert("alerts", [  # i1 paged after 20 s (stored twice: one episode); i2 only
        # after 90 s; one false page
        fired("f1", "ErrorRateAnomaly", "cart", 200), fired("f1", "ErrorRateAnomaly", "cart",
                                                            200, "resolved", 2),
        fired("f2", "DiskFull", "db", 450), fired("f3", "ServiceDown", "search", 900)],
        database=ch.database, column_names=alert)
    monkeypatch.setenv("LOGWARDEN_CLICKHOUSE_DATABASE", ch.database)
    monkeypatch.setenv("LOGWARDEN_TOKEN", token_file[1])
    settings.cache_clear()
    app = make_app(chdb_store, store_thread, ch.database, token_file, chdb_dir)
    try:
        with serving(app) as url:
            result = CliRunner().invoke(main_cli, ["eval", "scenario", str(labels), "--api", url])
    finally:
        settings.cache_clear()
        chdb_store.command(f"DROP DATABASE IF EXISTS {ch.database}")
    assert result.exit_code == 0, result.output
    got = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert (got["champion"]["anomalies"], got["champion"]["false_alarms"]) == (3, 1)
    assert got["alerts"]["alerts"] == 3 and got["alerts"]["false_alerts"] == 1
    assert got["alerts"]["critical_alerted_within_60s"] == 1  # i1; i2's came after 90 s
    assert got["alerts"]["first_critical_alert_s"] == {"i1": 20.0, "i2": 90.0}
    assert "critical incidents with a critical alert within 60 s: 1/2" in result.stderr


def ms(t0: datetime, seconds: float) -> int:
    return int((t0 + timedelta(seconds=seconds)).timestamp() * 1000)
