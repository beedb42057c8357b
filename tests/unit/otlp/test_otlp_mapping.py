"""OTLP logs and metrics, as the official SDK encodes them, mapped onto the ingest contract."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otlp.attributes import service_name
from otlp.decode import parse_logs, parse_metrics
from otlp.logs import level, map_logs
from otlp.metrics import map_metrics, metric_name
from schemas.errors import OtlpRequestError
from schemas.logs import LogEvent
from schemas.metrics import MetricPoint

# The SDK's stdlib bridge is deprecated for a separate package; it still emits the same records.
pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
NOW_MS = int(time.time() * 1000)  # records built by hand; the SDK's carry the clock
RESOURCE = {"service.name": "checkout", "deployment.environment.name": "prod",
            "host.name": "web-1", "k8s.namespace.name": "shop"}


@pytest.fixture
def sdk_logs() -> Iterator[tuple[logging.Logger, InMemoryLogRecordExporter]]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    log = logging.getLogger(f"shop.cart.{id(exporter)}")
    log.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield log, exporter
    log.removeHandler(handler)


def mapped_logs(req: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    m = map_logs(req, int(time.time() * 1000))  # the SDK stamps records with the clock
    assert m.rejected == 0, m.error_message
    return [orjson.loads(v) for _, v in m.records]


def test_sdk_log_record_maps_every_contract_field(sdk_logs: Any) -> None:
    log, exporter = sdk_logs
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        log.error("GET /cart/{id} failed", extra={
            "http.request.method": "GET", "http.route": "/cart/{id}",
            "http.response.status_code": 503, "http.server.request.duration": 0.25,
            "peer.service": "payments", "enduser.id": "u-7", "order": 7})
        ctx = span.get_span_context()
    log.debug("cache warm")
    req = encode_logs(exporter.get_finished_logs())
    first, second = mapped_logs(req)

    assert first["service"] == "checkout" and first["env"] == "prod"
    assert first["host"] == "web-1" and first["logger"] == log.name
    assert first["level"] == "ERROR" and first["message"] == "GET /cart/{id} failed"
    assert first["trace_id"] == f"{ctx.trace_id:032x}"
    assert first["span_id"] == f"{ctx.span_id:016x}"
    assert first["http"] == {"method": "GET", "route": "/cart/{id}", "status": 503,
                             "duration_ms": 250.0}
    assert first["peer"] == {"service": "payments"} and first["user"] == {"id": "u-7"}
    assert first["attrs"]["order"] == 7  # unknown attributes are kept, not dropped
    assert first["attrs"]["resource"]["k8s.namespace.name"] == "shop"
    assert abs(first["ts"] - time.time() * 1000) < 60_000
    assert second["level"] == "DEBUG" and "trace_id" not in second and "http" not in second
    for e in (first, second):  # what the ingest stage will accept
        LogEvent.model_validate(e)


def test_event_ids_repeat_for_a_resent_request_and_differ_between_records(
        sdk_logs: Any) -> None:
    log, exporter = sdk_logs
    log.info("same")
    log.info("same")
    req = encode_logs(exporter.get_finished_logs())
    once, again = mapped_logs(req), mapped_logs(req)
    assert [e["event_id"] for e in once] == [e["event_id"] for e in again]
    assert once[0]["event_id"] != once[1]["event_id"]


def test_json_body_with_hex_ids_maps_like_protobuf(sdk_logs: Any) -> None:
    log, exporter = sdk_logs
    with TracerProvider().get_tracer("t").start_as_current_span("s"):
        log.warning("json form", extra={"k": "v"})
    req = encode_logs(exporter.get_finished_logs())
    from google.protobuf.json_format import MessageToDict

    tree = MessageToDict(req)  # protobuf's JSON has base64 ids; OTLP/JSON has hex
    rec = tree["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    for k in ("traceId", "spanId"):
        rec[k] = base64.b64decode(rec[k]).hex()
    rec["someFutureField"] = 1  # unknown fields are ignored, as the spec asks
    from_json = mapped_logs(parse_logs(orjson.dumps(tree), "json"))
    from_proto = mapped_logs(parse_logs(req.SerializeToString(), "protobuf"))
    assert from_json == from_proto


def test_invalid_records_are_rejected_with_reasons_and_the_rest_kept() -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "unknown_service:java"
    sl = rl.scope_logs.add()
    ok = sl.log_records.add(time_unix_nano=NOW_MS * 1_000_000, severity_text="warning")
    ok.body.string_value = "kept"
    sl.log_records.add(time_unix_nano=1_000_000_000).body.string_value = "from 1970"
    huge = sl.log_records.add(time_unix_nano=NOW_MS * 1_000_000)
    huge.body.string_value = "x" * 70_000
    structured = sl.log_records.add()  # no time at all: arrival time
    structured.body.kvlist_value.values.add(key="a").value.int_value = 1
    m = map_logs(req, NOW_MS)
    assert m.rejected == 2
    assert "log record 2: ts:" in m.error_message and "log record 3" in m.error_message
    events = [orjson.loads(v) for _, v in m.records]
    assert [e["message"] for e in events] == ["kept", '{"a":1}']
    assert {k for k, _ in m.records} == {"unknown_service_java"}
    assert events[0]["level"] == "WARN" and events[1]["ts"] == NOW_MS


@pytest.mark.parametrize(("number", "text", "want"), [
    (1, "", "DEBUG"), (5, "", "DEBUG"), (9, "", "INFO"), (13, "x", "WARN"), (17, "", "ERROR"),
    (21, "", "FATAL"), (24, "", "FATAL"), (0, "Error", "ERROR"), (0, "bogus", "INFO"),
    (99, "critical", "CRITICAL")])
def test_severity(number: int, text: str, want: str) -> None:
    assert level(number, text) == want


def test_names() -> None:
    assert service_name("café") == "caf_"
    assert service_name("--") == "unknown_service"
    assert metric_name("") == "_"
    assert metric_name("process.cpu/time") == "process.cpu_time"


def test_sdk_metrics_map_to_points() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[reader])
    meter = provider.get_meter("shop")
    meter.create_counter("orders", unit="1").add(3, {"route": "/pay"})
    meter.create_up_down_counter("queue.depth").add(-2)
    meter.create_histogram("http.server.request.duration", unit="s").record(
        0.5, {"http.route": "/pay"})
    meter.create_gauge("temperature").set(21.5, {"room": "a"})
    req = encode_metrics(reader.get_metrics_data())
    m = map_metrics(parse_metrics(req.SerializeToString(), "protobuf"), NOW_MS)
    assert m.rejected == 0, m.error_message
    points = {(p["name"], tuple(sorted(p["labels"].items()))): p
              for p in (orjson.loads(v) for _, v in m.records)}
    orders = points["orders", (("route", "/pay"),)]
    assert orders["value"] == 3 and orders["kind"] == "counter" and orders["unit"] == "1"
    assert orders["attrs"]["temporality"] == "cumulative"
    assert points["queue.depth", ()]["kind"] == "gauge"
    assert points["queue.depth", ()]["value"] == -2
    assert points["http.server.request.duration_count", (("http.route", "/pay"),)][
        "value"] == 1
    assert points["http.server.request.duration_sum", (("http.route", "/pay"),)][
        "value"] == 0.5
    assert points["temperature", (("room", "a"),)]["value"] == 21.5
    for p in points.values():
        assert p["service"] == "checkout"
        MetricPoint.model_validate(p)


def test_bad_points_are_rejected_alone() -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    req = ExportMetricsServiceRequest()
    sm = req.resource_metrics.add().scope_metrics.add()
    g = sm.metrics.add(name="g").gauge
    g.data_points.add(time_unix_nano=NOW_MS * 1_000_000, as_double=float("nan"))
    g.data_points.add(time_unix_nano=NOW_MS * 1_000_000, as_int=4)
    many = g.data_points.add(time_unix_nano=NOW_MS * 1_000_000, as_int=5)
    for i in range(40):
        many.attributes.add(key=f"k{i}").value.string_value = "v"
    sm.metrics.add(name="empty")
    m = map_metrics(req, NOW_MS)
    assert m.rejected == 3 and len(m.records) == 1
    assert "'g': value: Value error, value must be a finite number" in m.error_message
    assert orjson.loads(m.records[0][1])["value"] == 4.0


@pytest.mark.parametrize(("body", "fmt", "needle"), [
    (b"\xff\x00garbage", "protobuf", "not a valid ExportLogsServiceRequest"),
    (b"{not json", "json", "not JSON"),
    (b"[1]", "json", "expected a JSON object"),
    (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}', "json",
     "is not hex"),
    (b'{"resourceLogs": 5}', "json", "not a valid OTLP/JSON"),
])
def test_malformed_bodies_are_refused(body: bytes, fmt: Any, needle: str) -> None:
    with pytest.raises(OtlpRequestError) as err:
        parse_logs(body, fmt)
    assert err.value.status == 400 and needle in err.value.message
