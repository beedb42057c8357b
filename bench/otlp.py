"""OpenTelemetry ingest: from the official SDK's OTLP/HTTP export call to the record being
queryable in ClickHouse, through a real worker process serving the receiver
(``LOGWARDEN_OTLP_ENABLED``), the real broker and chDB, with the shipped batch interval
(2 s). ``python -m bench.otlp`` prints one JSON line: latency p50 / p99 / max over
``PROBES`` single-record exports, then a burst of ``BURST`` records in the SDK's batches
(accepted records/s at the receiver, and until the last one is queryable)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from devstack.kafka import throwaway_kafka
from devstack.peers import free_port
from streams.settings import Settings
from streams.topics import wait_for_kafka

PROBES = 20
BURST = 20_000
BIN = Path(sys.executable).parent / "logwarden"
warnings.filterwarnings("ignore", ".*LoggingHandler.*", DeprecationWarning)


class Worker:
    """A `logwarden worker` with the OTLP receiver, and SQL through its API."""

    def __init__(self, bootstrap: str, data: Path) -> None:
        self.port, self.otlp_port, self.otlp_token = free_port(), free_port(), uuid.uuid4().hex
        self.env = {**os.environ, "LOGWARDEN_KAFKA_BOOTSTRAP": bootstrap,
                    "LOGWARDEN_DATA_DIR": str(data), "LOGWARDEN_STREAM_WEB_PORT": str(self.port),
                    "LOGWARDEN_STREAM_APP_ID": f"bench-otlp-{uuid.uuid4().hex[:8]}",
                    "LOGWARDEN_OTLP_ENABLED": "true", "LOGWARDEN_OTLP_PORT": str(self.otlp_port),
                    "LOGWARDEN_OTLP_TOKEN": self.otlp_token}
        self.token = subprocess.run([str(BIN), "token", "create", "--role", "responder"],
                                    env=self.env, capture_output=True, text=True,
                                    check=True).stdout.split()[-1]
        self.log = data / "worker.log"
        self.proc = subprocess.Popen([str(BIN), "worker", "--loglevel", "WARNING"],
                                     env=self.env, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT)
        self.wait(lambda: bool(self._get("/api/health")), 180, "the worker's API")

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return bytes(r.read())

    def count(self, service: str, message: str | None = None) -> int:
        sql = "SELECT count() FROM logwarden.logs WHERE service = {s:String}"
        params: dict[str, str] = {"s": service}
        if message is not None:
            sql += " AND message = {m:String}"
            params["m"] = message
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/query", method="POST",
            data=json.dumps({"sql": sql, "params": params}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(json.loads(r.read())["rows"][0][0])

    def wait(self, check: Any, timeout: float, what: str, every: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(every)
        raise TimeoutError(f"{what} within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _logger(w: Worker, service: str, processor: Any) -> tuple[logging.Logger, LoggerProvider]:
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(processor)
    log = logging.getLogger(f"bench.{service}")
    log.propagate = False
    log.addHandler(LoggingHandler(logger_provider=provider))
    log.setLevel(logging.INFO)
    return log, provider


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def run(probes: int = PROBES, burst: int = BURST) -> dict[str, Any]:
    """Latency of single records, then the rate of a burst; one dict of figures."""
    s = Settings()
    with tempfile.TemporaryDirectory() as tmp, \
            throwaway_kafka(s.kafka.bootstrap, Path(tmp)) as bootstrap:
        wait_for_kafka(bootstrap, timeout=60)
        w = Worker(bootstrap, Path(tmp) / "worker")
        url = f"http://127.0.0.1:{w.otlp_port}/v1/logs"
        headers = {"Authorization": f"Bearer {w.otlp_token}"}
        try:
            service = f"bench-otlp-{uuid.uuid4().hex[:6]}"
            log, provider = _logger(w, service, SimpleLogRecordProcessor(
                OTLPLogExporter(endpoint=url, headers=headers, timeout=30)))
            log.info("warm up")  # topics, assignment and writers get going
            w.wait(lambda: w.count(service) >= 1, 180, "the first record")
            latencies = []
            for i in range(probes):
                marker = f"probe {i}"
                sent = time.monotonic()
                log.info(marker)
                w.wait(lambda m=marker: w.count(service, m) >= 1, 60, marker)
                latencies.append(time.monotonic() - sent)
            provider.shutdown()

            service = f"bench-burst-{uuid.uuid4().hex[:6]}"
            log, provider = _logger(w, service, BatchLogRecordProcessor(
                OTLPLogExporter(endpoint=url, headers=headers, timeout=30),
                max_queue_size=burst, max_export_batch_size=512, schedule_delay_millis=200))
            started = time.monotonic()
            for i in range(burst):
                log.info("GET /cart/%d took %d ms", i % 97, i % 500)
            provider.force_flush(300_000)
            exported = time.monotonic() - started
            w.wait(lambda: w.count(service) >= burst, 300, "the burst", every=0.2)
            stored = time.monotonic() - started
            provider.shutdown()
        finally:
            w.stop()
    return {"bench": "otlp_export_to_queryable", "probes": probes,
            "p50_s": round(_quantile(latencies, 0.5), 2),
            "p99_s": round(_quantile(latencies, 0.99), 2), "max_s": round(max(latencies), 2),
            "burst_records": burst, "burst_exported_per_s": round(burst / exported),
            "burst_queryable_per_s": round(burst / stored), "clickhouse_batch_seconds": 2.0}


if __name__ == "__main__":
    print(json.dumps(run()))
