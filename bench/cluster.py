"""``make bench``: one and two ``logwarden worker`` processes on one three-node Kafka
cluster, and what the consumer lag does when a worker is added. Prints one JSON line.

It starts a local three-broker KRaft cluster and the store (``logwarden store serve``:
chDB behind ClickHouse's HTTP interface, since the workers are separate processes), and
produces one backlog of log events. Each pass is a fresh consumer group writing to its own
database, so every pass reads the same events:

- ``workers_1`` / ``workers_2``: events/s from the first stored row to the last, and CPU
  per event of the workers, the store and the brokers (from /proc). This machine has
  2 cores shared by the brokers, the store and the workers, so a second worker cannot double
  the rate: the figure to read is ``ratio_to_cpu_ceiling``, the rate over the most the
  machine's cores could give at the CPU the whole pipeline spent per event in that pass.
- ``lag_when_added``: one worker drains the backlog; once it is a third through, a second
  joins. Lag (events not yet committed by the ingest group) sampled every second: the
  drain rate before and after the join, and how long commits stood still while the
  partitions moved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.ingest import cpu_seconds, events, free_port, produce
from devstack.kafka_cluster import local_kafka_cluster
from schemas import topics
from sinks.clickhouse.client import connect
from sinks.clickhouse.settings import ClickHouseSettings
from streams.topics import ensure_topics

N_EVENTS = int(os.environ.get("LOGWARDEN_BENCH_CLUSTER_EVENTS", "200000"))
PARTITIONS = 4
CORES = os.cpu_count() or 1
BIN = Path(sys.executable).parent / "logwarden"


@contextmanager
def store_server(tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen([str(BIN), "store", "serve", "--port", str(port), "--path",
                             str(tmp / "clickhouse")], stdout=(tmp / "store.log").open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                connect(ClickHouseSettings(url=url), ".").command("SELECT 1")
                break
            except Exception as e:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the store did not start; see {tmp / 'store.log'}") from e
                time.sleep(0.5)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


_PORTS: set[int] = set()


def worker_port() -> int:
    """A free port no other worker of this run was given."""
    while (port := free_port()) in _PORTS:
        pass
    _PORTS.add(port)
    return port


def exited(tmp: Path, app: str) -> RuntimeError:
    logs = "\n".join(p.read_text(errors="replace")[-1500:]
                     for p in sorted(tmp.glob(f"{app}-*/worker.log")))
    return RuntimeError(f"a worker exited; the end of the logs:\n{logs}")


def start_worker(bootstrap: str, store: str, tmp: Path, app_id: str, db: str,
                 name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LOGWARDEN_KAFKA_BOOTSTRAP": bootstrap,
           "LOGWARDEN_CLICKHOUSE_URL": store, "LOGWARDEN_CLICKHOUSE_DATABASE": db,
           "LOGWARDEN_DATA_DIR": str(tmp / name), "LOGWARDEN_STREAM_WEB_PORT": str(worker_port()),
           "LOGWARDEN_STREAM_APP_ID": app_id, "LOGWARDEN_STREAM_WINDOW_GRACE_S": "5",
           "LOGWARDEN_KAFKA_PARTITIONS": str(PARTITIONS),
           "LOGWARDEN_ALERTING_CANARY_INTERVAL_S": "0"}
    (tmp / name).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(BIN), "worker", "--loglevel", "WARNING"], env=env,
                            stdout=(tmp / name / "worker.log").open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stored(store: str, db: str) -> int:
    try:
        got = connect(ClickHouseSettings(url=store), ".").query(f"SELECT count() FROM {db}.logs")
        return int(got.result_rows[0][0])
    except Exception:  # the database is not migrated yet
        return 0


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with suppress(OSError):  # a process that is gone
            total += cpu_seconds(pid)
    return total


def group_lag(bootstrap: str, group: str) -> int:
    """Events of the logs topic the group has not committed yet."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topics.LOGS, p) for p in range(PARTITIONS)]
        committed = c.committed(tps, timeout=10)
        lag = 0
        for tp in committed:
            _, high = c.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        c.close()


def throughput_pass(bootstrap: str, store: str, tmp: Path, store_pid: int,
                    brokers: list[int], workers: int) -> dict[str, Any]:
    """``workers`` processes drain the backlog into a fresh database."""
    app, db = f"bench-{uuid.uuid4().hex[:6]}", f"bench_{uuid.uuid4().hex[:6]}"
    procs = [start_worker(bootstrap, store, tmp, app, db, f"{app}-{i}") for i in range(workers)]
    try:
        count, first = 0, None
        deadline = time.monotonic() + 1800
        while count < N_EVENTS and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise exited(tmp, app)
            count = stored(store, db)
            if count and first is None:
                pids = [p.pid for p in procs]
                first = (time.perf_counter(), count, cpu(pids), cpu([store_pid]), cpu(brokers))
            time.sleep(0.5)
        if first is None or count < N_EVENTS:
            raise RuntimeError(f"only {count} of {N_EVENTS} rows landed")
        t1, w1 = time.perf_counter(), cpu([p.pid for p in procs])
        s1, b1 = cpu([store_pid]), cpu(brokers)
    finally:
        stop(procs)
    t0, c0, w0, s0, b0 = first
    n = N_EVENTS - c0
    rate = n / (t1 - t0)
    worker_us, store_us, brokers_us = ((b - a) / n * 1e6 for a, b in
                                       ((w0, w1), (s0, s1), (b0, b1)))
    # every core busy at the CPU the whole pipeline spent per event
    ceiling = CORES * 1e6 / (worker_us + store_us + brokers_us)
    return {"events_per_s": round(rate), "worker_cpu_us_per_event": round(worker_us, 1),
            "store_cpu_us_per_event": round(store_us, 1),
            "brokers_cpu_us_per_event": round(brokers_us, 1),
            "cpu_ceiling_events_per_s": round(ceiling),
            "ratio_to_cpu_ceiling": round(rate / ceiling, 3)}


def lag_pass(bootstrap: str, store: str, tmp: Path) -> dict[str, Any]:
    """One worker drains the backlog, a second joins a third of the way through."""
    app, db = f"bench-{uuid.uuid4().hex[:6]}", f"bench_{uuid.uuid4().hex[:6]}"
    group = f"{app}-ingest"
    procs = [start_worker(bootstrap, store, tmp, app, db, f"{app}-0")]
    samples: list[tuple[float, int]] = []
    added = None
    try:
        t0 = time.monotonic()
        deadline = t0 + 1800
        while time.monotonic() < deadline:
            lag = group_lag(bootstrap, group)
            now = time.monotonic() - t0
            samples.append((now, lag))
            if added is None and lag <= N_EVENTS * 2 // 3 and stored(store, db):
                procs.append(start_worker(bootstrap, store, tmp, app, db, f"{app}-1"))
                added = now
            if lag == 0 and added is not None:
                break
            time.sleep(1.0)
    finally:
        stop(procs)
    if added is None:
        raise RuntimeError("the first worker never got a third through the backlog")

    def rate(a: float, b: float) -> float:
        pts = [(t, lag) for t, lag in samples if a <= t <= b]
        if len(pts) < 2 or pts[-1][0] == pts[0][0]:
            return float("nan")
        return (pts[0][1] - pts[-1][1]) / (pts[-1][0] - pts[0][0])

    after = [(t, lag) for t, lag in samples if t >= added]
    lag_at_add = after[0][1]
    # commits stand still while the partitions move: the longest stretch without progress
    still, longest, prev = added, 0.0, lag_at_add
    for t, lag in after[1:]:
        if lag < prev:
            longest, still = max(longest, t - still), t
        prev = lag
    moving = [t for t, lag in after if lag < lag_at_add]
    resumed = (moving[0] - added) if moving else float("nan")
    end = samples[-1][0]
    return {"lag_at_add": lag_at_add,
            "drain_per_s_before": round(rate(max(0.0, added - 30), added)),
            "drain_per_s_after": round(rate(added + resumed, end)) if moving else None,
            "commits_resumed_after_s": round(resumed, 1),
            "longest_commit_pause_after_add_s": round(longest, 1),
            "drained_after_add_s": round(end - added, 1)}


def main() -> None:
    """Run the cluster benchmark and print its JSON line."""
    with tempfile.TemporaryDirectory(prefix="logwarden-bench-cluster-") as d:
        tmp = Path(d)
        print("starting a local 3-broker Kafka cluster and the store…", file=sys.stderr)
        with local_kafka_cluster(tmp / "kafka", 3) as cluster, \
                store_server(tmp) as (store, store_proc):
            bootstrap = cluster.bootstrap
            ensure_topics(bootstrap, dict.fromkeys(topics.INGEST_TOPICS, PARTITIONS),
                          {"min.insync.replicas": "2"}, replication=3)
            print(f"producing {N_EVENTS:,} log events…", file=sys.stderr)
            produce(bootstrap, events(N_EVENTS))
            brokers = [p for n in cluster.nodes if (p := n.pid())]
            print("1 worker…", file=sys.stderr)
            one = throughput_pass(bootstrap, store, tmp, store_proc.pid, brokers, 1)
            print("2 workers…", file=sys.stderr)
            two = throughput_pass(bootstrap, store, tmp, store_proc.pid, brokers, 2)
            print("lag when a worker is added…", file=sys.stderr)
            lag = lag_pass(bootstrap, store, tmp)
    figures = {"bench": "cluster", "events": N_EVENTS, "brokers": 3, "partitions": PARTITIONS,
               "cores": CORES, "load_average_1m": round(os.getloadavg()[0], 1),
               "workers_1": one, "workers_2": two,
               "speedup_2_over_1": round(two["events_per_s"] / one["events_per_s"], 2),
               "lag_when_added": lag}
    print(f"1 worker {one['events_per_s']:,}/s ({one['ratio_to_cpu_ceiling']} of the CPU "
          f"ceiling), 2 workers {two['events_per_s']:,}/s "
          f"({two['ratio_to_cpu_ceiling']} of the CPU ceiling)", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
