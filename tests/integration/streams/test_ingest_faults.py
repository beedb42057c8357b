"""Fault tests of ingest against the real broker and chDB, with figures (#11):

- a real ``logwarden worker`` killed with SIGKILL in the middle of a load and restarted
  stores every event exactly once (rows counted by event id);
- rows ClickHouse refuses reach the dead_letters table, and the rows around them land.

(A ClickHouse outage is in ``test_ingest_service.py``.)
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from schemas import topics
from sinks.clickhouse.client import Client
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration.streams.test_ingest_service import (
    OutageStore,
    count,
    end_offsets,
    run_service,
    wait_until,
)
from tests.integration.streams.test_ingest_service import settings as settings  # fixture

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
EVENTS = 200_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def committed_reader(bootstrap: str, group: str, ends: list[TopicPartition]
                     ) -> Iterator[Callable[[], int]]:
    """A quick ``committed`` for a tight loop: one consumer kept open."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    parts = [TopicPartition(tp.topic, tp.partition) for tp in ends]

    def read() -> int:
        while True:
            try:
                return sum(max(0, tp.offset) for tp in c.committed(parts, timeout=10))
            except KafkaException:  # the group's coordinator is still loading
                time.sleep(0.05)

    try:
        yield read
    finally:
        c.close()


def rows_written(port: int) -> int:
    """Rows the worker wrote to ``logs`` (its /metrics), 0 until it serves."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0
    m = re.search(r'^logwarden_rows_written_total\{table="logs"\} (\S+)$', text, re.M)
    return int(float(m.group(1))) if m else 0


def committed(bootstrap: str, group: str, ends: list[TopicPartition]) -> int:
    """Messages of ``ends``' partitions the group has committed past (0 when none)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        for _ in range(100):
            try:
                got = c.committed([TopicPartition(tp.topic, tp.partition) for tp in ends],
                                  timeout=10)
                return sum(max(0, tp.offset) for tp in got)
            except KafkaException:  # the group's coordinator is still loading
                time.sleep(0.1)
        raise AssertionError("no group coordinator")
    finally:
        c.close()


@pytest.fixture
def worker_env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": str(ROOT), "LOGWARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LOGWARDEN_DATA_DIR": str(tmp_path / "data"),
        "LOGWARDEN_STREAM_APP_ID": f"k9-{uuid.uuid4().hex[:8]}",
        "LOGWARDEN_STREAM_WEB_PORT": str(free_port()),
        "LOGWARDEN_CATEGORISE_ENABLED": "false", "LOGWARDEN_DETECT_ENABLED": "false",
        "LOGWARDEN_ALERTING_ENABLED": "false",
        # small blocks: many inserts land between two commits, as under a real load
        "LOGWARDEN_CLICKHOUSE_BATCH_ROWS": "5000", "LOGWARDEN_CLICKHOUSE_BATCH_SECONDS": "0.5",
    })
    yield env


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from cli.main import main; main()", "worker",
             "--loglevel", "INFO"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stored(env: dict[str, str], service_prefix: str) -> tuple[int, int]:
    """(rows, distinct event ids) in the worker's chDB, read by a separate process (chDB
    opens one data directory per process)."""
    code = (
        "import sys; from pathlib import Path; "
        "from sinks.clickhouse.client import connect; "
        "from sinks.clickhouse.settings import ClickHouseSettings; "
        "c = connect(ClickHouseSettings(), Path(sys.argv[1])); "
        "r = c.query(\"SELECT count(), uniqExact(event_id) FROM logwarden.logs "
        "WHERE startsWith(service, {p:String})\", parameters={'p': sys.argv[2]}); "
        "print(*r.result_rows[0])")
    out = subprocess.run([sys.executable, "-c", code, env["LOGWARDEN_DATA_DIR"],
                          service_prefix], cwd=ROOT, env=env, capture_output=True,
                         check=True, timeout=60)
    rows, ids = out.stdout.split()[-2:]
    return int(rows), int(ids)


def test_kill_9_during_ingest_loses_and_duplicates_nothing(
        kafka_bootstrap: str, worker_env: dict[str, str], tmp_path: Path) -> None:
    prefix = f"k9{uuid.uuid4().hex[:6]}"
    group = f"{worker_env['LOGWARDEN_STREAM_APP_ID']}-ingest"
    log = tmp_path / "worker.log"
    ensure_topics(kafka_bootstrap, dict.fromkeys(topics.INGEST_TOPICS, 4))  # small messages
    # the group starts past what other tests produced: the worker's counts are this test's
    start_at = end_offsets(kafka_bootstrap, topics.LOGS)
    before = sum(tp.offset for tp in start_at)
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    c.commit(offsets=start_at, asynchronous=False)
    c.close()
    started = time.monotonic()
    p = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True,
                  "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    now_ms = int(time.time() * 1000)
    for i in range(EVENTS):
        service = f"{prefix}-{i % 8}"
        p.produce(topics.LOGS, orjson.dumps({
            "ts": now_ms - 60_000 + i // 10, "service": service, "level": "INFO",
            "message": f"request {i}", "event_id": f"{prefix}-{i}"}), key=service)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    ends = end_offsets(kafka_bootstrap, topics.LOGS)
    total = sum(tp.offset for tp in ends)
    produced_s = time.monotonic() - started
    worker = start(worker_env, log)
    try:
        # kill -9 past a quarter of the load, at a moment when rows have landed past the
        # committed offsets (the worker's /metrics counts the rows it wrote)
        deadline = time.monotonic() + 60
        port = int(worker_env["LOGWARDEN_STREAM_WEB_PORT"])
        with committed_reader(kafka_bootstrap, group, ends) as offsets:
            while True:
                written = rows_written(port)  # first: the loop may answer it late
                done = offsets() - before
                if done >= EVENTS // 4 and written > done:
                    # freeze it and look again: the rows written so far landed past the
                    # offsets it had committed when it froze (a commit already sent has
                    # reached the broker by then), so the kill has rows in flight
                    worker.send_signal(signal.SIGSTOP)
                    time.sleep(0.5)
                    if written > offsets() - before:
                        break
                    worker.send_signal(signal.SIGCONT)
                assert worker.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no moment with rows in flight"
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            at_kill = offsets()
        assert at_kill < total, "the load was over before the kill"
        # the same data directory and group; blocks cut elsewhere (as time-based cuts or a
        # config change do), so the replay's insert blocks and their tokens differ
        worker = start({**worker_env, "LOGWARDEN_CLICKHOUSE_BATCH_ROWS": "3000"}, log)
        deadline = time.monotonic() + 75
        while committed(kafka_bootstrap, group, ends) < total:
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the restarted worker did not catch up"
            time.sleep(0.2)
        rewritten = rows_written(port)  # by the restarted worker: all landed (committed)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    rows, ids = stored(worker_env, prefix)
    # ReplacingMergeTree folds duplicate rows when it merges parts, which hides them from a
    # count taken later: so the rows each run inserted count too (``written`` is read just
    # before the kill: a block landing in that instant would make the sum smaller, not larger)
    twice = written + rewritten - EVENTS
    print(f"\nproduced {EVENTS} in {produced_s:.1f} s; kill -9 with {at_kill - before} "
          f"committed and {written} written; stored {rows} rows, {ids} distinct ids: "
          f"lost {EVENTS - ids}, duplicate rows {rows - ids}, rows inserted twice {twice}; "
          f"{time.monotonic() - started:.1f} s in all")
    assert (rows, ids) == (EVENTS, EVENTS)
    assert twice <= 0
    assert "replay_skips_landed_rows" in log.read_text()  # the restart had rows to skip


class RefusingStore(OutageStore):
    """The real store, but an insert holding a poison row is refused as ClickHouse would."""

    def _refuse(self, body: Any) -> None:
        if b"poison" in (body if isinstance(body, bytes) else repr(body).encode()):
            raise DatabaseError("Code: 27. DB::Exception: Cannot parse input: poison row")

    def raw_insert(self, *a: Any, **k: Any) -> Any:
        self._refuse(k.get("insert_block", b""))
        return self.inner.raw_insert(*a, **k)


async def test_rows_clickhouse_refuses_are_dead_lettered_and_the_rest_land(
        settings: Settings, chdb_store: Client, kafka_bootstrap: str) -> None:
    service = f"ref-{uuid.uuid4().hex[:8]}"
    db = settings.clickhouse.database
    svc, rt = await run_service(settings, RefusingStore(chdb_store))
    try:
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        now_ms = int(time.time() * 1000)
        for i in range(300):
            p.produce(topics.LOGS, orjson.dumps({
                "ts": now_ms - 10_000, "service": service, "level": "INFO",
                "message": "poison" if i in (7, 200) else "fine", "event_id": f"{service}-{i}"}),
                key=service)
        assert p.flush(30) == 0
        await wait_until(lambda: count(chdb_store, db, service)[0] >= 298)

        def dead() -> list[tuple[Any, ...]]:
            return [tuple(r) for r in chdb_store.query(
                f"SELECT stage, topic, offset, error FROM {db}.dead_letters "
                "WHERE position(raw, {s:String}) > 0", parameters={"s": service}).result_rows]

        await wait_until(lambda: len(dead()) == 2)
    finally:
        await svc.stop()
        rt.close()
    assert count(chdb_store, db, service) == (298, 298)
    assert {(d[0], d[1]) for d in dead()} == {("sink.logs", topics.LOGS)}
    assert all("Cannot parse" in d[3] for d in dead())


def skip_backlog(bootstrap: str, group: str) -> None:
    """Commit ``group``'s offsets at the end of every ingest topic."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        c.commit(offsets=[tp for t in topics.INGEST_TOPICS for tp in end_offsets(bootstrap, t)],
                 asynchronous=False)
    finally:
        c.close()


# The suite's outage is short; LOGWARDEN_TEST_OUTAGE_S=300 runs the five-minute one.
OUTAGE_S = float(os.environ.get("LOGWARDEN_TEST_OUTAGE_S", "8"))


async def test_clickhouse_outage_bounds_memory_loses_nothing_and_catches_up(
        settings: Settings, chdb_store: Client, kafka_bootstrap: str) -> None:
    """ClickHouse refuses every insert for a while under a steady load: the writers hold
    at most ``max_pending_rows``, the stage stops consuming (the backlog stays in Kafka),
    no offset is committed past an unwritten row, and everything lands once it is back."""
    service = f"down-{uuid.uuid4().hex[:8]}"
    store = OutageStore(chdb_store)
    db = settings.clickhouse.database
    n = 20_000
    # The session's earlier tests left hundreds of thousands of events on the shared topics:
    # this group starts at their end, so the catch-up measured is this test's own events.
    skip_backlog(kafka_bootstrap, f"{settings.stream.app_id}-ingest")
    svc, rt = await run_service(settings, store)
    logs = rt.writers["logs"]
    try:
        store.down = True
        p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
        now_ms = int(time.time() * 1000)
        for i in range(n):
            p.produce(topics.LOGS, orjson.dumps({
                "ts": now_ms - 20_000 + i, "service": service, "level": "INFO",
                "message": "m", "event_id": f"{service}-{i}"}), key=service)
            if i % 1000 == 0:
                p.poll(0)
        assert p.flush(30) == 0
        worst_pending = worst_in_flight = 0
        outage_until = time.monotonic() + OUTAGE_S
        while time.monotonic() < outage_until:  # the outage: watch memory
            st = logs.stats
            worst_pending = max(worst_pending, st.pending)
            worst_in_flight = max(worst_in_flight, svc.processor.counts[f"in.{topics.LOGS}"])
            await asyncio.sleep(0.1)
        assert count(chdb_store, db, service)[0] == 0 and store.refused >= 3
        store.down = False
        back = time.monotonic()
        await wait_until(lambda: count(chdb_store, db, service)[0] >= n,
                         timeout=max(180.0, OUTAGE_S))  # retry back-off, a loaded machine
        caught_up_s = time.monotonic() - back
    finally:
        await svc.stop()
        rt.close()
    print(f"\noutage {OUTAGE_S:.0f} s under {n} events: {store.refused} refused inserts, at most "
          f"{worst_pending} rows pending (cap {logs.max_pending_rows}), {worst_in_flight} "
          f"consumed during the outage; caught up {caught_up_s:.1f} s after; "
          f"stored {count(chdb_store, db, service)}")
    assert worst_pending <= logs.max_pending_rows
    # the stage stopped consuming: what it read and holds is bounded by the writer's cap
    # plus the batches in hand (one processed, one fetched), not by the backlog
    assert worst_in_flight <= logs.max_pending_rows + 3 * settings.stream.batch_size < n
    assert count(chdb_store, db, service) == (n, n)


async def test_metric_points_land_with_their_source_offsets(
        settings: Settings, chdb_store: Client, kafka_bootstrap: str) -> None:
    """The crash read-back finds metric points by (kafka_partition, kafka_offset)."""
    service = f"mp-{uuid.uuid4().hex[:8]}"
    db = settings.clickhouse.database
    svc, rt = await run_service(settings, chdb_store)
    try:
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        now_ms = int(time.time() * 1000)
        for i in range(100):
            p.produce(topics.METRICS, orjson.dumps({
                "ts": now_ms - 10_000 + i, "service": service, "name": "cpu", "value": i}),
                key=service)
        assert p.flush(30) == 0

        def landed() -> tuple[int, int]:
            r = chdb_store.query(f"SELECT count(), uniqExact(kafka_partition, kafka_offset) "
                                 f"FROM {db}.metric_points WHERE service = {{s:String}}",
                                 parameters={"s": service}).result_rows[0]
            return int(r[0]), int(r[1])

        await wait_until(lambda: landed()[0] >= 100)
    finally:
        await svc.stop()
        rt.close()
    assert landed() == (100, 100)
