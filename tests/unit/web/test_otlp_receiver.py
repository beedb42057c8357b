"""The OTLP/HTTP receiver's answers: auth, content types, sizes, malformed bodies, partial
success and backpressure, with an in-memory sink (the Kafka sink: tests/integration)."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from pydantic import SecretStr

from otlp.settings import OtlpSettings
from schemas import topics
from web.otlp import SinkBusy, SinkFailed, create_otlp_app

TOKEN = "otlp-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROTO = {**AUTH, "Content-Type": "application/x-protobuf"}


class MemorySink:
    """Keeps what it is sent; ``hold`` makes sends wait, ``fail`` makes them raise."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []
        self.used = 0.0
        self.hold: asyncio.Event | None = None
        self.fail: Exception | None = None

    def backlog(self) -> float:
        return self.used

    async def send(self, topic: str, records: Sequence[tuple[str, bytes]],
                   timeout: float) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        self.sent.extend((topic, v, k) for k, v in records)


def settings(**kw: Any) -> OtlpSettings:
    return OtlpSettings(token=SecretStr(TOKEN), **kw)


def logs_request(n: int = 2, bad: int = 0) -> bytes:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "checkout"
    sl = rl.scope_logs.add()
    now_ns = time.time_ns()
    for i in range(n):
        sl.log_records.add(time_unix_nano=now_ns, severity_number=9).body.string_value = f"m{i}"
    for _ in range(bad):
        sl.log_records.add(time_unix_nano=1).body.string_value = "1970"
    return req.SerializeToString()


async def test_accepted_logs_reach_the_sink_and_the_answer_is_empty() -> None:
    sink = MemorySink()
    async with TestClient(TestServer(create_otlp_app(settings(), sink))) as c:
        r = await c.post("/v1/logs", data=logs_request(3), headers=PROTO)
        assert r.status == 200 and r.content_type == "application/x-protobuf"
        resp = ExportLogsServiceResponse.FromString(await r.read())
        assert not resp.HasField("partial_success")
        text = await (await c.get("/metrics")).text()
    assert [(t, orjson.loads(v)["message"], k) for t, v, k in sink.sent] == [
        (topics.LOGS, f"m{i}", "checkout") for i in range(3)]
    assert 'logwarden_otlp_records_total{outcome="accepted",signal="logs"} 3.0' in text


async def test_partial_success_names_the_rejected_records() -> None:
    sink = MemorySink()
    async with TestClient(TestServer(create_otlp_app(settings(), sink))) as c:
        r = await c.post("/v1/logs", data=gzip.compress(logs_request(2, bad=1)),
                         headers={**PROTO, "Content-Encoding": "gzip"})
        resp = ExportLogsServiceResponse.FromString(await r.read())
    assert r.status == 200 and len(sink.sent) == 2
    assert resp.partial_success.rejected_log_records == 1
    assert "log record 3: ts: " in resp.partial_success.error_message


async def test_json_metrics_are_answered_in_json() -> None:
    sink = MemorySink()
    body = {"resourceMetrics": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "pay"}}]},
        "scopeMetrics": [{"metrics": [{"name": "queue.depth", "gauge": {"dataPoints": [
            {"timeUnixNano": str(time.time_ns()), "asInt": "7"},
            {"timeUnixNano": str(time.time_ns()), "asDouble": "NaN"}]}}]}]}]}
    async with TestClient(TestServer(create_otlp_app(settings(), sink))) as c:
        r = await c.post("/v1/metrics", data=orjson.dumps(body),
                         headers={**AUTH, "Content-Type": "application/json"})
        answer = await r.json()
    assert r.status == 200
    assert answer["partialSuccess"]["rejectedDataPoints"] == "1"
    [(topic, value, key)] = sink.sent
    assert topic == topics.METRICS and key == "pay"
    assert orjson.loads(value)["value"] == 7.0
    assert ExportMetricsServiceResponse  # the protobuf form is tested with logs


async def test_refusals() -> None:
    sink = MemorySink()
    app = create_otlp_app(settings(max_body_bytes=4096, max_decompressed_bytes=8192), sink)
    async with TestClient(TestServer(app)) as c:
        async def post(data: bytes, **headers: str) -> tuple[int, Any, str]:
            r = await c.post("/v1/logs", data=data, headers=headers)
            body = await r.read()
            return r.status, r.headers, body.decode(errors="replace")

        status, headers, body = await post(logs_request(), **{
            "Content-Type": "application/x-protobuf"})
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert "LOGWARDEN_OTLP_TOKEN" in body
        status, _, _ = await post(logs_request(), Authorization="Bearer wrong",
                                  **{"Content-Type": "application/x-protobuf"})
        assert status == 401
        status, _, body = await post(b"x", **AUTH, **{"Content-Type": "text/plain"})
        assert status == 415 and "application/x-protobuf" in body
        status, _, body = await post(b"x" * 5000, **PROTO)
        assert status == 413
        status, _, body = await post(gzip.compress(b"\0" * 50_000), **PROTO,
                                     **{"Content-Encoding": "gzip"})
        assert status == 413 and "inflates" in body
        status, _, body = await post(b"x", **PROTO, **{"Content-Encoding": "br"})
        assert status == 415
        status, _, body = await post(b"\xff\xff\xff", **PROTO)
        assert status == 400 and "not a valid ExportLogsServiceRequest" in body
        status, _, body = await post(b"{", **AUTH, **{"Content-Type": "application/json"})
        assert status == 400 and orjson.loads(body)["code"] == 3  # google.rpc INVALID_ARGUMENT
    assert sink.sent == []


async def test_backpressure_answers_429_with_retry_after_and_holds_nothing_more() -> None:
    sink = MemorySink()
    sink.hold = asyncio.Event()  # Kafka is not acknowledging
    app = create_otlp_app(settings(max_inflight=2, retry_after_s=3), sink)
    async with TestClient(TestServer(app)) as c:
        waiting = [asyncio.create_task(c.post("/v1/logs", data=logs_request(), headers=PROTO))
                   for _ in range(2)]
        for _ in range(100):
            if (await (await c.get("/api/health")).json())["inflight"] == 2:
                break
            await asyncio.sleep(0.02)
        r = await c.post("/v1/logs", data=logs_request(), headers=PROTO)
        assert r.status == 429 and r.headers["Retry-After"] == "3"
        sink.hold.set()
        assert [(await t).status for t in waiting] == [200, 200]

        sink.used = 0.95  # the producer queue is past its high-water mark
        r = await c.post("/v1/logs", data=logs_request(), headers=PROTO)
        assert r.status == 429 and "Kafka is behind" in await r.text()
        sink.used = 0.0
        sink.fail = SinkBusy("Local: Queue full")
        r = await c.post("/v1/logs", data=logs_request(), headers=PROTO)
        assert r.status == 429
        sink.fail = SinkFailed("no acknowledgement within 10 s")
        r = await c.post("/v1/logs", data=logs_request(), headers=PROTO)
        assert r.status == 503 and r.headers["Retry-After"] == "3"
        text = await (await c.get("/metrics")).text()
    assert 'logwarden_otlp_requests_total{signal="logs",status="429"} 3.0' in text
    assert len(sink.sent) == 4  # the two held requests, once each


def test_an_open_receiver_must_be_asked_for() -> None:
    import pytest

    with pytest.raises(ValueError, match="LOGWARDEN_OTLP_TOKEN"):
        create_otlp_app(OtlpSettings(), MemorySink())
    create_otlp_app(OtlpSettings(allow_anonymous=True), MemorySink())
