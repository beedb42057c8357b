"""``make bench``: ingest throughput end to end (Kafka → ClickHouse) next to the raw consumer
rate on the same topic in the same run, and the worker's peak RSS. Prints one JSON line.

It starts its own Kafka broker (a temporary directory, a free port) so the topics hold only
the benchmark's events, and a real ``logwarden worker`` process on a temporary chDB.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer
from rich.progress import Progress

from devstack.kafka import throwaway_kafka
from schemas import topics
from streams.topics import ensure_topics

# Enough that the last insert's wait (up to LOGWARDEN_CLICKHOUSE_BATCH_SECONDS, counted in
# the end-to-end time) is a small part of the run.
N_EVENTS = int(os.environ.get("LOGWARDEN_BENCH_EVENTS", "1000000"))
# Event time the events span: 300 s replays five minutes at ~30x (many windows per second);
# a span near N_EVENTS / rate is live traffic.
SPAN_MS = int(float(os.environ.get("LOGWARDEN_BENCH_SPAN_S", "300")) * 1000)
SERVICES = [f"svc-{i:02d}" for i in range(20)]
ROUTES = ["/cart", "/pay", "/search", "/users/{id}", "/items/{id}", "/login"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return port


def events(n: int, seed: int = 1) -> list[bytes]:
    """``n`` realistic log events over the last ``SPAN_MS``, in time order per service."""
    rng = random.Random(seed)
    start = int(time.time() * 1000) - SPAN_MS
    out = []
    for i in range(n):
        svc = SERVICES[i % len(SERVICES)]
        route = ROUTES[rng.randrange(len(ROUTES))]
        status = 500 if rng.random() < 0.01 else 200
        out.append(orjson.dumps({
            "ts": start + i * SPAN_MS // n, "service": svc,
            "level": "ERROR" if status == 500 else "INFO",
            "message": f"GET {route} user={rng.randrange(10_000)} status={status} "
                       f"took {rng.randrange(1, 900)}ms",
            "host": f"{svc}-{rng.randrange(4)}", "event_id": uuid.uuid4().hex,
            "http": {"method": "GET", "route": route, "status": status,
                     "duration_ms": round(rng.lognormvariate(3, 0.7), 2)},
        }))
    return out


def produce(bootstrap: str, payloads: list[bytes]) -> float:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4",
                  "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000,
                  "partitioner": "murmur2_random"})
    t0 = time.perf_counter()
    for i, raw in enumerate(payloads):
        while True:
            try:
                p.produce(topics.LOGS, raw, key=SERVICES[i % len(SERVICES)].encode())
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    return len(payloads) / (time.perf_counter() - t0)


async def raw_consume(bootstrap: str, n: int) -> float:
    """Events/s of a bare aiokafka consumer reading the same topic (the ceiling)."""
    c = AIOKafkaConsumer(topics.LOGS, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4()}",
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    got, t0 = 0, None
    try:
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=5000)
            if t0 is None and batch:
                t0 = time.perf_counter()
            for msgs in batch.values():
                for m in msgs:
                    orjson.loads(m.value)  # the decode any consumer must do
                got += len(msgs)
    finally:
        await c.stop()
    return n / (time.perf_counter() - (t0 or time.perf_counter()))


def query(port: int, sql: str, token: str) -> list[list[Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/query",
                                 data=json.dumps({"sql": sql}).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return list(json.loads(resp.read())["rows"])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU time (user + system) of a process, or of one of its threads."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker_bench(bootstrap: str, tmp: Path, n: int, extra_env: dict[str, str] | None = None
                     ) -> dict[str, Any]:
    """A real worker (its own consumer group and chDB under ``tmp``) ingests the ``n`` events
    of the topic: its rate once the first rows landed, CPU per event, peak RSS."""
    port = free_port()
    env = {**os.environ, **(extra_env or {}), "LOGWARDEN_KAFKA_BOOTSTRAP": bootstrap,
           "LOGWARDEN_DATA_DIR": str(tmp / "worker"), "LOGWARDEN_STREAM_WEB_PORT": str(port),
           "LOGWARDEN_STREAM_APP_ID": f"bench-{uuid.uuid4().hex[:6]}",
           "LOGWARDEN_STREAM_WINDOW_GRACE_S": "5"}
    log = (tmp / "worker.log").open("wb")
    cli = str(Path(sys.executable).parent / "logwarden")
    token = subprocess.run([cli, "token", "create", "--role", "admin"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()[-1]
    proc = subprocess.Popen([cli, "worker",
                             "--loglevel", "WARNING"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        count, t_first, c_first = 0, None, 0
        cpu_first = (0.0, 0.0)
        deadline = time.monotonic() + 900
        with Progress(transient=True) as bar:
            task = bar.add_task("worker ingest", total=n)
            while count < n and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited; see {tmp / 'worker.log'}")
                try:
                    count = int(query(port, "SELECT count() FROM logwarden.logs", token)[0][0])
                except OSError:
                    count = 0
                if count and t_first is None:
                    t_first, c_first = time.perf_counter(), count
                    cpu_first = (cpu_seconds(proc.pid, proc.pid), cpu_seconds(proc.pid))
                bar.update(task, completed=count)
                time.sleep(0.25)
        t_done = time.perf_counter()
        cpu_done = (cpu_seconds(proc.pid, proc.pid), cpu_seconds(proc.pid))
        if count < n:
            raise RuntimeError(f"only {count} of {n} rows landed in 15 min")
        windows = int(query(port, "SELECT count() FROM logwarden.windows", token)[0][0])
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    rate = (n - c_first) / (t_done - (t_first or t_done)) if t_first else float("nan")
    # CPU per event: the main thread (the ingest loop) and the whole worker (with chDB's
    # threads); 1e6 / main = the rate the loop would reach with a core and the GIL to itself.
    main_us, all_us = ((done - first) / (n - c_first) * 1e6
                       for done, first in zip(cpu_done, cpu_first, strict=True))
    return {"events_per_s": round(rate), "worker_peak_rss_mb": round(rss),
            "worker_main_thread_cpu_us_per_event": round(main_us, 2),
            "worker_cpu_us_per_event": round(all_us, 2), "windows_rows": windows}


def processor_rate(payloads: list[bytes], categorised: bool = False) -> float:
    """The ingest stage alone, in this process: decode, validate, window, build rows.

    ``categorised`` adds template mining and triage per line, with the `Categoriser` built
    as the worker builds it (``streams.app.create_app``) from the default settings.
    """
    from categorisation.settings import load_categorisation
    from streams.categorise import Categoriser
    from streams.ingest import IngestProcessor, Record
    from streams.settings import Settings

    cat = None
    if categorised:
        s = Settings().categorise
        cat = Categoriser(load_categorisation(s), s)
    proc = IngestProcessor(categorise=cat)
    recs = [Record(topics.LOGS, 0, i, None, p) for i, p in enumerate(payloads)]
    t0 = time.perf_counter()
    for i in range(0, len(recs), 5000):
        proc.process(recs[i:i + 5000])
    return len(recs) / (time.perf_counter() - t0)


def main() -> None:
    """Run the ingest benchmark and print its JSON line."""
    given = os.environ.get("LOGWARDEN_KAFKA_BOOTSTRAP")
    with tempfile.TemporaryDirectory(prefix="logwarden-bench-") as d:
        tmp = Path(d)
        if not given:
            print("starting a local Kafka for the benchmark…", file=sys.stderr)
        with throwaway_kafka(given, tmp) as bootstrap:
            ensure_topics(bootstrap, dict.fromkeys(topics.INGEST_TOPICS, 4))
            payloads = events(N_EVENTS)
            print(f"producing {N_EVENTS:,} log events…", file=sys.stderr)
            produce_rate = produce(bootstrap, payloads)
            print("raw consumer pass…", file=sys.stderr)
            raw = asyncio.run(raw_consume(bootstrap, N_EVENTS))
            proc_rate = processor_rate(payloads[:200_000])
            cat_rate = processor_rate(payloads[:200_000], categorised=True)
            print("worker pass (Kafka → ClickHouse)…", file=sys.stderr)
            result = run_worker_bench(bootstrap, tmp, N_EVENTS)
    figures = {"bench": "ingest", "events": N_EVENTS, "span_s": SPAN_MS / 1000, **result,
               "raw_consumer_per_s": round(raw),
               "ratio_to_raw_consumer": round(result["events_per_s"] / raw, 3),
               "ingest_stage_only_per_s": round(proc_rate),
               "ingest_stage_categorised_per_s": round(cat_rate),
               "produce_per_s": round(produce_rate)}
    print(f"end to end: {figures['events_per_s']:,} events/s per worker "
          f"(raw consumer {figures['raw_consumer_per_s']:,}/s, "
          f"ratio {figures['ratio_to_raw_consumer']}); peak RSS "
          f"{figures['worker_peak_rss_mb']} MB", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
