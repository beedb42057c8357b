"""`logwarden store serve`: the embedded store behind ClickHouse's HTTP interface, used
through the real clickhouse-connect HTTP client by two processes at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from sinks.clickhouse.client import Client, connect
from sinks.clickhouse.migrate import load_migrations, migrate
from sinks.clickhouse.offsets import landed_offsets
from sinks.clickhouse.settings import ClickHouseSettings
from sinks.clickhouse.writer import is_transient, open_writer

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "logwarden"
NOW = datetime.now(UTC).replace(microsecond=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(path: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN), "store", "serve", "--port", str(port), "--path",
                             str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_answering(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            connect(ClickHouseSettings(url=url), ".").command("SELECT 1")
            return
        except Exception:  # not listening yet
            time.sleep(0.5)
    raise AssertionError(f"no answer at {url}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    path, port = tmp_path_factory.mktemp("served") / "clickhouse", free_port()
    proc = serve(path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url, proc)
        yield url, path
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.fixture
def settings(served: tuple[str, Path]) -> ClickHouseSettings:
    s = ClickHouseSettings(url=served[0], database=f"lw_{uuid.uuid4().hex[:10]}",
                           batch_rows=1000)
    migrate(connect(s, "."), s)
    return s


def log_row(i: int, **over: Any) -> dict[str, Any]:
    row = {"ts": NOW + timedelta(milliseconds=i), "service": "svc", "level": "INFO",
           "message": f"line {i}", "event_id": f"ev{i}", "ingested_at": NOW,
           "kafka_partition": 0, "kafka_offset": i}
    return row | over


def count(client: Client, db: str) -> int:
    return int(client.query(f"SELECT count() FROM {db}.logs").result_rows[0][0])


def test_the_schema_migrates_through_the_server_once(settings: ClickHouseSettings) -> None:
    client = connect(settings, ".")
    assert migrate(client, settings) == []
    got = client.query(f"SELECT count() FROM {settings.database}.schema_migrations FINAL")
    assert got.result_rows[0][0] == len(load_migrations())


def test_writers_insert_exactly_once_and_landed_offsets_read_back(
        settings: ClickHouseSettings) -> None:
    client = connect(settings, ".")
    with open_writer(client, settings, "logs") as w:
        w.add_many(log_row(i) for i in range(2500))
        assert w.flush(timeout=60) == 2500
    # the same block again (a retry after a lost answer) carries the same token: dropped
    with open_writer(client, settings, "logs") as w:
        w.add_many(log_row(i) for i in range(1000))
        w.flush(timeout=60)
    assert count(client, settings.database) == 2500
    landed = landed_offsets(client, settings.database, [("logwarden.logs.v1", 0, 2000)])
    assert sorted(landed["logwarden.logs.v1", 0]) == list(range(2000, 2500))


def test_a_second_process_writes_to_the_same_store(settings: ClickHouseSettings) -> None:
    code = ("import sys; from sinks.clickhouse.client import connect; "
            "from sinks.clickhouse.settings import ClickHouseSettings as S; "
            f"s = S(url={settings.url!r}); c = connect(s, '.'); "
            f"c.command(\"INSERT INTO {settings.database}.logs (ts, service, level, message, "
            "event_id) VALUES (now64(3), 'other', 'INFO', 'from another process', 'x1')\")")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    got = connect(settings, ".").query(
        f"SELECT message FROM {settings.database}.logs WHERE service = 'other'")
    assert got.result_rows == [("from another process",)]


def test_server_errors_reach_the_client_with_their_code(settings: ClickHouseSettings) -> None:
    client = connect(settings, ".")
    with pytest.raises(DatabaseError) as bad_sql:
        client.query(f"SELECT no_such_column FROM {settings.database}.logs")
    assert "Code: 47" in str(bad_sql.value)  # the code the writer's retry policy reads
    with pytest.raises(DatabaseError) as missing:
        client.query(f"SELECT 1 FROM {settings.database}.no_such_table")
    assert "Code: 60" in str(missing.value) and is_transient(missing.value)
    with pytest.raises(DatabaseError) as bad_value:  # rows refused: bad data, not retried
        client.command(f"INSERT INTO {settings.database}.logs (ts, service, level, message, "
                       "event_id) VALUES ('not a time', 's', 'INFO', 'm', 'e')")
    assert not is_transient(bad_value.value), str(bad_value.value)


def test_a_second_server_on_the_same_directory_is_refused(served: tuple[str, Path]) -> None:
    proc = serve(served[1], free_port())
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert b"cannot open the store" in out or b"lock" in out.lower(), out.decode()[-2000:]


def test_store_serve_has_help() -> None:
    out = subprocess.run([str(BIN), "store", "serve", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "LOGWARDEN_CLICKHOUSE_URL" in out.stdout
