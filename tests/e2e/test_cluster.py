"""Cluster mode with real processes: a three-node KRaft cluster, two `logwarden worker`
processes and the store served by `logwarden store serve` (chDB behind ClickHouse's HTTP
interface: no current ClickHouse server installs here, and chDB itself is one process).

- kill -9 one worker mid-stream: the other takes its partitions over, every event is stored
  exactly once, and an escalation in progress goes on from the alerting changelog.
- kill -9 the broker that leads the logs partitions mid-stream: nothing lost or doubled, and
  the pipeline resumes without anyone restarting anything.

Waits are conditions with generous bounds: the machine is shared and loaded.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from conftest import Worker, start_worker  # type: ignore[import-not-found]

from devstack.kafka_cluster import LocalKafkaCluster, local_kafka_cluster
from devstack.peers import PeerThread
from schemas import topics
from sinks.clickhouse.client import connect
from sinks.clickhouse.settings import ClickHouseSettings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
BIN = Path(sys.executable).parent / "logwarden"
BASE_PORT = 17100  # this suite's range: brokers 17100-17105, store 17110, workers 17120-3
STORE_PORT = 17110
N = 12_000  # events per test
PARTITIONS = 4

CONFIG = """
rules:
  - name: Errors
    kind: threshold
    select: {{scope: service, service: "{service}", window: 10s}}
    field: error_rate
    op: ">"
    value: 0.5
    min_count: 3
    severity: critical
route:
  receiver: nobody
  group_by: [alertname, service]
  group_wait: 0s
  group_interval: 5s
  routes:
    - {{matchers: ['service="{service}"'], receiver: pager}}
receivers:
  - {{name: nobody, channels: [{{type: email, to: nobody@example.test}}]}}
  - {{name: pager, escalation: esc}}
users:
  - {{name: u0, slack: C0U0, channels: [slack]}}
  - {{name: u1, slack: C0U1, channels: [slack]}}
  - {{name: u2, slack: C0U2, channels: [slack]}}
escalation_policies:
  - name: esc
    steps:
      - {{notify: [{{kind: user, name: u0}}], wait: 30s}}
      - {{notify: [{{kind: user, name: u1}}], wait: 30s}}
      - {{notify: [{{kind: user, name: u2}}], wait: 1h}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    with local_kafka_cluster(tmp_path_factory.mktemp("cluster"), 3, port=BASE_PORT) as c:
        yield c


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("store")
    log = (path / "store.log").open("wb")
    proc = subprocess.Popen([str(BIN), "store", "serve", "--port", str(STORE_PORT),
                             "--path", str(path / "clickhouse")], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{STORE_PORT}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (path / "store.log").read_text()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", STORE_PORT)) == 0:
                    break
            assert time.monotonic() < deadline, "the store did not listen"
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def stored(url: str, service: str) -> tuple[int, int]:
    """(rows, distinct event ids) of ``service`` in the logs table, without FINAL: a
    duplicate shows as rows > ids."""
    got = connect(ClickHouseSettings(url=url), ".").query(
        "SELECT count(), uniqExact(event_id) FROM logwarden.logs WHERE service = {s:String}",
        parameters={"s": service})
    return int(got.result_rows[0][0]), int(got.result_rows[0][1])


def wait(check: Callable[[], bool], timeout: float, what: str,
         workers: Sequence[Worker] = ()) -> float:
    """Wait for ``check()``; seconds it took. Fails early when a live worker exits."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for w in workers:
            if w.proc.poll() is not None:
                raise AssertionError(f"a worker exited: {w.log.read_text()[-3000:]}")
        try:
            if check():
                return time.monotonic() - started
        except Exception:  # a store or API briefly unreachable
            pass
        time.sleep(0.5)
    logs = "\n".join(w.log.read_text()[-2000:] for w in workers)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


class Stream(threading.Thread):
    """A known stream: ``n`` log events of ``service`` (event ids 0..n-1) at ``rate``/s,
    through an idempotent acks=all producer that rides out a broker loss."""

    def __init__(self, bootstrap: str, service: str, n: int, rate: float,
                 errors_of: str | None = None) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.service, self.n, self.rate = bootstrap, service, n, rate
        self.errors_of = errors_of
        self.sent = 0
        self.failed: list[str] = []

    def run(self) -> None:
        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                      "acks": "all", "linger.ms": 10, "message.timeout.ms": 600_000})
        started = time.monotonic()

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                self.failed.append(str(err))

        for i in range(self.n):
            now = int(time.time() * 1000)
            p.produce(topics.LOGS, json.dumps({
                "ts": now, "service": self.service, "level": "INFO",
                "message": f"request {i} served", "event_id": f"{self.service}-{i}"}).encode(),
                key=f"{self.service}-{i % 16}", on_delivery=done)
            if self.errors_of and i % 20 == 0:
                p.produce(topics.LOGS, json.dumps({
                    "ts": now, "service": self.errors_of, "level": "ERROR",
                    "message": "payment failed", "event_id": uuid.uuid4().hex}).encode(),
                    key=self.errors_of)
            self.sent = i + 1
            p.poll(0)
            ahead = started + (i + 1) / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        assert p.flush(600) == 0


def two_workers(cluster: LocalKafkaCluster, store_url: str, tmp: Path, app_id: str,
                first_port: int, **env: str) -> list[Worker]:
    common = {"LOGWARDEN_CLICKHOUSE_URL": store_url, "LOGWARDEN_ALERTING_CANARY_INTERVAL_S": "0",
              "LOGWARDEN_KAFKA_PARTITIONS": str(PARTITIONS), **env}
    return [start_worker(cluster.bootstrap, tmp / f"w{i}", app_id, first_port + i, **common)
            for i in (0, 1)]


def owned(w: Worker, stage: str = "ingest") -> list[str]:
    return list(json.loads(w.get("/api/health"))["partitions"].get(stage, []))


def logs_partitions(w: Worker) -> set[str]:
    return {p for p in owned(w) if p.startswith(topics.LOGS + ":")}


def manager_owner(bootstrap: str, app_id: str, workers: list[Worker]) -> Worker | None:
    """The worker whose Faust consumer holds partition 0 of the alert signals (the alert
    manager and its tables): client ids name the process."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    group = admin.describe_consumer_groups([app_id])[app_id].result(timeout=30)
    signals = topics.internal(app_id).alert_signals
    for m in group.members:
        tps = m.assignment.topic_partitions if m.assignment else []
        if any(tp.topic == signals and tp.partition == 0 for tp in tps):
            return next((w for w in workers if m.client_id.endswith(f"-{w.proc.pid}")), None)
    return None


def healthy(w: Worker) -> bool:
    return bool(json.loads(w.get("/api/health"))["status"] == "ok")


def pages(peers: PeerThread) -> Counter[str]:
    return Counter(r["to"] for r in peers.received()
                   if r["channel"] == "slack" and r["text"].startswith("[firing]"))


def stop_all(workers: list[Worker]) -> None:
    for w in workers:
        w.stop()


def test_kill_9_of_a_worker_moves_its_partitions_and_state(
        cluster: LocalKafkaCluster, store_url: str, tmp_path: Path) -> None:
    app_id, service = f"e2e-cl-{uuid.uuid4().hex[:8]}", f"wk-{uuid.uuid4().hex[:6]}"
    esc = f"esc-{uuid.uuid4().hex[:6]}"
    cfg = tmp_path / "alerting.yaml"
    cfg.write_text(CONFIG.format(service=esc))
    with PeerThread() as peers:
        workers = two_workers(cluster, store_url, tmp_path, app_id, 17120,
                              LOGWARDEN_ALERTING_CONFIG_FILE=str(cfg),
                              LOGWARDEN_ALERTING_EVALUATION_INTERVAL_S="1", **peers.alerting_env())
        try:
            # both share every stage's partitions
            wait(lambda: all(logs_partitions(w) for w in workers)
                 and len(logs_partitions(workers[0]) | logs_partitions(workers[1]))
                 == PARTITIONS, 240, "both workers to own logs partitions", workers)
            stream = Stream(cluster.bootstrap, service, N, rate=100, errors_of=esc)
            stream.start()
            wait(lambda: pages(peers)["C0U0"] >= 1, 300, "escalation step 0", workers)
            first = next(r["at"] for r in peers.received() if r["to"] == "C0U0")
            owner = manager_owner(cluster.bootstrap, app_id, workers)
            print(f"alert manager owner found: {owner is not None}")
            victim = owner or workers[0]
            survivor = workers[1] if victim is workers[0] else workers[0]
            assert stream.sent < N, "the stream ended before the kill: raise N"
            victim.proc.kill()  # kill -9, mid-stream and mid-escalation
            victim.proc.wait(30)
            killed_at = time.monotonic()
            took = wait(lambda: len(logs_partitions(survivor)) == PARTITIONS, 300,
                        "the survivor to own every logs partition", [survivor])
            print(f"takeover after kill -9: {took:.1f} s (session timeout 10 s)")
            stream.join(900)
            assert not stream.failed
            wait(lambda: stored(store_url, service)[1] == N, 600, "every event", [survivor])
            time.sleep(3)  # a late duplicate would land now
            assert stored(store_url, service) == (N, N)  # 0 lost, 0 duplicated
            # the escalation goes on where it was: the state moved with partition 0
            wait(lambda: pages(peers)["C0U1"] >= 1, 420, "escalation step 1", [survivor])
            t1 = next(r["at"] for r in peers.received() if r["to"] == "C0U1")
            assert t1 - first >= 25, "step 1 came early: the escalation started over"
            assert pages(peers)["C0U0"] <= 2, pages(peers)  # not restarted from step 0
            print(f"step 1 paged {t1 - first:.0f} s after step 0; "
                  f"{time.monotonic() - killed_at:.0f} s after the kill")
        finally:
            stop_all(workers)


def test_kill_9_of_the_leading_broker_loses_and_doubles_nothing(
        cluster: LocalKafkaCluster, store_url: str, tmp_path: Path) -> None:
    app_id, service = f"e2e-cl-{uuid.uuid4().hex[:8]}", f"br-{uuid.uuid4().hex[:6]}"
    workers = two_workers(cluster, store_url, tmp_path, app_id, 17122)
    node = 0
    try:
        wait(lambda: len(logs_partitions(workers[0]) | logs_partitions(workers[1]))
             == PARTITIONS, 240, "the workers to own the logs partitions", workers)
        meta = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=30)
        parts = meta.topics[topics.LOGS].partitions
        assert all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in parts.values())
        stream = Stream(cluster.bootstrap, service, N, rate=200)
        stream.start()
        wait(lambda: stored(store_url, service)[0] > 1000, 300, "the first rows", workers)
        node = Counter(p.leader for p in parts.values()).most_common(1)[0][0]
        assert cluster.kill(node)  # kill -9 the broker leading most logs partitions
        assert stream.sent < N, "the stream ended before the kill: raise N"
        stream.join(900)
        assert not stream.failed
        wait(lambda: stored(store_url, service)[1] == N, 600, "every event", workers)
        time.sleep(3)
        assert stored(store_url, service) == (N, N)  # 0 lost, 0 duplicated
        # nobody restarted anything: both still run and report ok
        wait(lambda: all(healthy(w) for w in workers), 300, "health ok", workers)
    finally:
        stop_all(workers)
        if node:
            cluster.start_node(node)  # leave the module's cluster whole
