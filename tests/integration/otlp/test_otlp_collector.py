"""`logwarden collector` on the real broker, fed by the official OpenTelemetry SDK and its
OTLP/HTTP exporters; and the Kafka sink's backpressure when no broker acknowledges."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import Consumer, KafkaException, TopicPartition
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from pydantic import SecretStr

from otlp.settings import OtlpSettings
from schemas import topics
from streams.otlp_sink import KafkaOtlpSink
from streams.settings import KafkaSettings
from web.otlp import create_otlp_app

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")]
BIN = Path(sys.executable).parent / "logwarden"
TOKEN = f"it-{uuid.uuid4().hex}"
PORTS = range(17010, 17030)  # this feature's test ports (17000-17099)


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"collector did not answer: {log.read_text()[-3000:]}")


@pytest.fixture
def collector(kafka_bootstrap: str, tmp_path: Path
              ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "LOGWARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "LOGWARDEN_DATA_DIR": str(tmp_path), "LOGWARDEN_OTLP_TOKEN": TOKEN,
           "LOGWARDEN_OTLP_PORT": str(port)}
    log = tmp_path / "collector.log"
    proc = subprocess.Popen([str(BIN), "collector"], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/health", proc, log)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def end_offsets(bootstrap: str, topic: str) -> list[TopicPartition]:
    """Where each partition of ``topic`` ends now (waits out a new topic's leader election)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-{uuid.uuid4().hex}"})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                parts = c.list_topics(topic, timeout=10).topics[topic].partitions
                return [TopicPartition(topic, p, c.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=10)[1]) for p in parts]
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


def read_service(bootstrap: str, start: list[TopicPartition], service: str, want: int,
                 timeout: float = 60) -> list[dict[str, Any]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-{uuid.uuid4().hex}",
                  "enable.auto.commit": False})
    c.assign(start)
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if m.error() is None and m.key() == service.encode():
                    got.append(orjson.loads(m.value()))
    finally:
        c.close()
    return got


def test_sdk_logs_and_metrics_reach_the_kafka_topics(
        kafka_bootstrap: str, collector: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = collector
    service = f"otel-{uuid.uuid4().hex[:8]}"
    logs_from = end_offsets(kafka_bootstrap, topics.LOGS)
    metrics_from = end_offsets(kafka_bootstrap, topics.METRICS)
    resource = Resource.create({"service.name": service, "deployment.environment.name": "it"})
    headers = {"Authorization": f"Bearer {TOKEN}"}

    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=headers)))
    log = logging.getLogger(f"otel.{service}")
    log.propagate = False
    log.addHandler(LoggingHandler(logger_provider=provider))
    log.setLevel(logging.INFO)
    for i in range(50):
        log.warning("order %d slow", i, extra={"http.route": "/pay", "order": i})
    assert provider.force_flush(30_000)
    provider.shutdown()

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers=headers),
        export_interval_millis=3_600_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meters.get_meter("it").create_counter("orders").add(5, {"route": "/pay"})
    meters.shutdown()  # collects and exports once

    logs = read_service(kafka_bootstrap, logs_from, service, 50)
    assert sorted(e["attrs"]["order"] for e in logs) == list(range(50))
    assert {(e["level"], e["env"], e["http"]["route"]) for e in logs} == {("WARN", "it", "/pay")}
    points = read_service(kafka_bootstrap, metrics_from, service, 1)
    assert [(p["name"], p["value"], p["kind"], p["labels"]) for p in points] == [
        ("orders", 5.0, "counter", {"route": "/pay"})]

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'logwarden_otlp_records_total{outcome="accepted",signal="logs"} 50.0' in text
    proc.send_signal(signal.SIGTERM)  # flushes and exits cleanly
    assert proc.wait(60) == 0


def test_wrong_token_is_refused_by_the_sdk_exporter(
        collector: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, _ = collector
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs",
                               headers={"Authorization": "Bearer wrong"}, timeout=5)
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    assert encode_logs  # the exporter encodes with it
    provider = LoggerProvider(resource=Resource.create({"service.name": "x"}))
    records: list[Any] = []

    class Keep(BatchLogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            records.append(log_record)

    provider.add_log_record_processor(Keep(exporter))
    provider.get_logger("t").emit(body="hello")
    assert exporter.export(records) == LogRecordExportResult.FAILURE


async def test_backpressure_when_no_broker_acknowledges() -> None:
    """A broker that never answers: requests wait ``ack_timeout_s`` then 503; once the
    bounded producer queue fills, requests get 429 + Retry-After at once."""
    with socket.socket() as s:  # a port with nothing behind it
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    settings = OtlpSettings(token=SecretStr(TOKEN), ack_timeout_s=1.0, queue_kbytes=64,
                            retry_after_s=4)
    sink = KafkaOtlpSink(KafkaSettings(bootstrap=dead), settings)
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    def request(n: int, size: int) -> bytes:
        req = ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = "bp"
        sl = rl.scope_logs.add()
        for i in range(n):
            sl.log_records.add(time_unix_nano=time.time_ns()).body.string_value = \
                f"{i} " + "x" * size
        return req.SerializeToString()

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"}
    try:
        async with TestClient(TestServer(create_otlp_app(settings, sink))) as c:
            started = time.monotonic()
            r = await c.post("/v1/logs", data=request(2, 100), headers=headers)
            assert r.status == 503 and r.headers["Retry-After"] == "4"
            assert "no acknowledgement within 1 s" in await r.text()
            assert time.monotonic() - started < 10
            r = await c.post("/v1/logs", data=request(100, 1000), headers=headers)
            assert r.status == 429  # the 64 KB queue is full mid-request
            r = await c.post("/v1/logs", data=request(1, 10), headers=headers)
            assert r.status == 429 and r.headers["Retry-After"] == "4"
            assert "Kafka is behind" in await r.text()
            assert sink.backlog() >= 0.8
    finally:
        sink.producer.purge()
        assert sink.close(1) == 0
        del sink  # the producer stops reconnecting to the dead port once it is freed
        gc.collect()
