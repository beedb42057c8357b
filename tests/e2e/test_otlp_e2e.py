"""End to end: the official OpenTelemetry SDK exports logs and metrics over OTLP/HTTP to a
`logwarden worker` serving the receiver (LOGWARDEN_OTLP_ENABLED=true); they are queryable
in ClickHouse (chDB) through the worker's API. Prints the export → queryable latency."""

from __future__ import annotations

import json
import logging
import socket
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Worker, start_worker  # type: ignore[import-not-found]
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

pytestmark = [pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")]
TOKEN = f"e2e-{uuid.uuid4().hex}"
LATENCY_RECORDS = 10


def otlp_port() -> int:
    for port in range(17040, 17060):  # this feature's test ports (17000-17099)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 17040-17059")


@pytest.fixture(scope="module")
def otlp_worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[Worker, str]]:
    port = otlp_port()
    # the store's default batch interval, so the latency printed is the shipped one
    w = start_worker(kafka_bootstrap, tmp_path_factory.mktemp("otlp-worker"),
                     f"e2e-otlp-{uuid.uuid4().hex[:8]}", LOGWARDEN_OTLP_ENABLED="true",
                     LOGWARDEN_OTLP_PORT=str(port), LOGWARDEN_OTLP_TOKEN=TOKEN,
                     LOGWARDEN_CLICKHOUSE_BATCH_SECONDS="2.0")
    try:
        w.wait_for(lambda: bool(w.get("/api/health")), what="api")
        yield w, f"http://127.0.0.1:{port}"
    finally:
        w.stop()


def test_sdk_logs_and_metrics_are_queryable(otlp_worker: tuple[Worker, str],
                                            tmp_path: Path) -> None:
    worker, url = otlp_worker
    service = f"otel-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    resource = Resource.create({"service.name": service, "deployment.environment.name": "e2e",
                                "host.name": "pod-1"})
    provider = LoggerProvider(resource=resource)
    # one export per record: the latency measured is the SDK's export call to queryable
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=headers, timeout=30)))
    log = logging.getLogger(f"shop.{service}")
    log.propagate = False
    log.addHandler(LoggingHandler(logger_provider=provider))
    log.setLevel(logging.INFO)
    tracer = TracerProvider().get_tracer("e2e")

    # the first record also waits for the worker's topics and writers to warm up
    with tracer.start_as_current_span("checkout") as span:
        log.error("payment declined for order 1", extra={
            "http.request.method": "POST", "http.route": "/pay",
            "http.response.status_code": 502, "enduser.id": "u-1"})
        trace_id = f"{span.get_span_context().trace_id:032x}"
    worker.wait_for(lambda: bool(worker.query(
        "SELECT 1 FROM logwarden.logs WHERE service = {s:String}", s=service)),
        timeout=120, what="the first OTLP record")
    [row] = worker.query(
        "SELECT level, message, env, host, logger, trace_id, http_method, http_route, "
        "http_status, user_id FROM logwarden.logs WHERE service = {s:String}", s=service)
    assert row == ["ERROR", "payment declined for order 1", "e2e", "pod-1", log.name,
                   trace_id, "POST", "/pay", 502, worker.hashed("u-1")]  # user ids: hashed

    latencies = []
    for i in range(LATENCY_RECORDS):
        marker = f"latency probe {i} {uuid.uuid4().hex[:6]}"
        sent = time.monotonic()
        log.info(marker)  # exported synchronously to the receiver
        worker.wait_for(lambda m=marker: bool(worker.query(
            "SELECT 1 FROM logwarden.logs WHERE service = {s:String} AND message = {m:String}",
            s=service, m=m)), timeout=60, what=f"record {i}")
        latencies.append(time.monotonic() - sent)
    provider.shutdown()
    figures = {"records": LATENCY_RECORDS, "median_s": round(statistics.median(latencies), 2),
               "max_s": round(max(latencies), 2),
               "clickhouse_batch_seconds": 2.0}
    print("otlp_export_to_queryable", json.dumps(figures))
    (tmp_path / "latency.json").write_text(json.dumps(figures))

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers=headers),
        export_interval_millis=3_600_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meters.get_meter("e2e")
    meter.create_counter("orders").add(7, {"route": "/pay"})
    meter.create_histogram("latency", unit="ms").record(12.5)
    meters.shutdown()  # exports once
    worker.wait_for(lambda: len(worker.query(
        "SELECT name FROM logwarden.metric_points WHERE service = {s:String}", s=service)) >= 3,
        timeout=60, what="the metric points")
    points = worker.query("SELECT name, value, kind, labels FROM logwarden.metric_points "
                          "WHERE service = {s:String} ORDER BY name", s=service)
    assert points == [["latency_count", 1.0, "counter", {}],
                      ["latency_sum", 12.5, "counter", {}],
                      ["orders", 7.0, "counter", {"route": "/pay"}]]
    # the receiver's counters are on the worker's own /metrics (what Prometheus scrapes)
    text = worker.get("/metrics").decode()
    accepted = f'logwarden_otlp_records_total{{outcome="accepted",signal="logs"}} ' \
        f'{LATENCY_RECORDS + 1}.0'
    assert accepted in text
