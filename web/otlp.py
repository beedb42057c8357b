"""The OTLP/HTTP receiver: ``POST /v1/logs`` and ``/v1/metrics`` (protobuf or JSON, gzip).

Records are mapped onto the ingest contract (``otlp/``) and handed to a sink that writes
them to the Kafka ingest topics (``streams/otlp_sink.py``); a request is answered 200 only
once Kafka has acknowledged every record it accepted, so a 200 is never lost.

| answer | when |
|---|---|
| 200, ``partial_success`` set | some records did not validate: how many, and the first reasons |
| 400 | the body is not OTLP (protobuf, JSON or gzip) |
| 401 | no or wrong ``Authorization: Bearer`` token |
| 413 | the body, or the body once gunzipped, is over its limit |
| 415 | a Content-Type other than protobuf or JSON, or an unknown Content-Encoding |
| 429 + Retry-After | ``max_inflight`` requests in hand, or the producer queue past ``high_water`` |
| 503 + Retry-After | Kafka did not acknowledge within ``ack_timeout_s``, or refused the records |

Memory stays bounded: at most ``max_inflight`` bodies of ``max_decompressed_bytes`` are held,
and the producer's queue has its own cap. Error bodies are ``google.rpc.Status`` in the
request's format, as the OTLP specification asks.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from otlp.attributes import Mapped
from otlp.decode import (
    Format,
    content_format,
    logs_response,
    metrics_response,
    parse_logs,
    parse_metrics,
    status_body,
)
from otlp.logs import map_logs
from otlp.metrics import map_metrics
from otlp.settings import OtlpSettings
from schemas import topics
from schemas.errors import OtlpRequestError
from web.health import metrics_handler
from web.http import dumps

log = structlog.get_logger(__name__)

# google.rpc.Code of each HTTP status we answer with
_RPC_CODE = {400: 3, 401: 16, 413: 8, 415: 3, 429: 8, 503: 14}
_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})  # what aiohttp inflates itself


class SinkBusy(Exception):
    """The sink's local queue is full: the sender should come back later (429)."""


class SinkFailed(Exception):
    """Kafka did not acknowledge the records in time, or refused them (503)."""


class OtlpSink(Protocol):
    """Where accepted records go: the Kafka ingest topics in production."""

    def backlog(self) -> float:
        """How full the local queue is, 0..1."""
        ...

    async def send(self, topic: str, records: Sequence[tuple[str, bytes]],
                   timeout: float) -> None:
        """Produce ``records`` (key, value) and wait until Kafka acknowledged all of them."""
        ...


class _Refused(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


class Receiver:
    """The request handling, with its counters (``logwarden_otlp_*``)."""

    def __init__(self, settings: OtlpSettings, sink: OtlpSink,
                 registry: CollectorRegistry) -> None:
        self.s, self.sink = settings, sink
        self.inflight = 0
        self.requests = Counter("logwarden_otlp_requests", "OTLP requests by answer",
                                ["signal", "status"], registry=registry)
        self.records = Counter("logwarden_otlp_records", "OTLP records by outcome",
                               ["signal", "outcome"], registry=registry)
        self._token = settings.token.get_secret_value().encode()

    def _authorise(self, request: web.Request) -> None:
        if not self._token:
            return  # allow_anonymous (checked at start)
        header = request.headers.get("Authorization", "")
        given = header[7:].strip().encode() if header.startswith("Bearer ") else b""
        if not given or not hmac.compare_digest(given, self._token):
            raise _Refused(401, "send Authorization: Bearer <the LOGWARDEN_OTLP_TOKEN token>")

    async def _body(self, request: web.Request) -> bytes:
        """The body, gunzipped by aiohttp as it reads (its ``client_max_size`` bounds the
        inflated size, so a gzip bomb stops at the limit: 413)."""
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in _ENCODINGS:
            raise _Refused(415, f"Content-Encoding {encoding!r} is not supported: use gzip "
                           "or none")
        if (request.content_length or 0) > self.s.max_body_bytes:
            raise _Refused(413, f"the body is over {self.s.max_body_bytes} bytes")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(413, f"the body inflates to more than "
                           f"{self.s.max_decompressed_bytes} bytes") from None

    async def export(self, request: web.Request, signal: str,
                     decode_and_map: Callable[[bytes, Format], Mapped],
                     respond: Callable[[int, str, Format], bytes]) -> web.Response:
        """One export request, answered as the table in the module docstring says."""
        fmt: Format = content_format(request.content_type) or "json"
        try:
            self._authorise(request)
            if content_format(request.content_type) is None:
                raise _Refused(415, f"Content-Type {request.content_type!r} is not supported: "
                               "use application/x-protobuf or application/json")
            if self.inflight >= self.s.max_inflight:
                raise _Refused(429, f"{self.inflight} requests in hand: retry later",
                               self.s.retry_after_s)
            if self.sink.backlog() >= self.s.high_water:
                raise _Refused(429, "Kafka is behind (the producer queue is full): retry "
                               "later", self.s.retry_after_s)
            self.inflight += 1
            try:
                mapped = await self._handle(request, fmt, decode_and_map, signal)
            finally:
                self.inflight -= 1
        except OtlpRequestError as exc:
            return self._refuse(signal, fmt, _Refused(exc.status, exc.message))
        except _Refused as exc:
            return self._refuse(signal, fmt, exc)
        self.requests.labels(signal, "200").inc()
        self.records.labels(signal, "accepted").inc(len(mapped.records))
        if mapped.rejected:
            self.records.labels(signal, "rejected").inc(mapped.rejected)
            log.info("otlp_records_rejected", signal=signal, rejected=mapped.rejected,
                     accepted=len(mapped.records), first=mapped.errors[0])
        return web.Response(body=respond(mapped.rejected, mapped.error_message, fmt),
                            content_type=_content_type(fmt))

    async def _handle(self, request: web.Request, fmt: Format,
                      decode_and_map: Callable[[bytes, Format], Mapped],
                      signal: str) -> Mapped:
        body = await self._body(request)
        # Decoding and mapping a few MB takes a while: off the event loop (the worker's
        # API and stages share it).
        mapped = await asyncio.get_running_loop().run_in_executor(
            None, decode_and_map, body, fmt)
        del body
        if mapped.records:
            topic = topics.LOGS if signal == "logs" else topics.METRICS
            try:
                await self.sink.send(topic, mapped.records, self.s.ack_timeout_s)
            except SinkBusy:
                raise _Refused(429, "Kafka is behind (the producer queue is full): retry "
                               "later", self.s.retry_after_s) from None
            except SinkFailed as exc:
                raise _Refused(503, f"Kafka did not take the records: {exc}",
                               self.s.retry_after_s) from None
        return mapped

    def _refuse(self, signal: str, fmt: Format, exc: _Refused) -> web.Response:
        self.requests.labels(signal, str(exc.status)).inc()
        if exc.status >= 500:
            log.warning("otlp_request_failed", signal=signal, status=exc.status,
                        reason=exc.message)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return web.Response(status=exc.status, headers=headers,
                            body=status_body(_RPC_CODE.get(exc.status, 2), exc.message, fmt),
                            content_type=_content_type(fmt))


def _content_type(fmt: Format) -> str:
    return "application/x-protobuf" if fmt == "protobuf" else "application/json"


def _decode_logs(body: bytes, fmt: Format) -> Mapped:
    return map_logs(parse_logs(body, fmt), int(time.time() * 1000))


def _decode_metrics(body: bytes, fmt: Format) -> Mapped:
    return map_metrics(parse_metrics(body, fmt), int(time.time() * 1000))


RECEIVER_KEY: web.AppKey[Receiver] = web.AppKey("otlp_receiver", Receiver)


def create_otlp_app(settings: OtlpSettings, sink: OtlpSink,
                    registry: CollectorRegistry | None = None,
                    health: Callable[[], Awaitable[dict[str, object]]] | None = None
                    ) -> web.Application:
    """The receiver's application: the two export paths, ``/api/health`` and ``/metrics``."""
    settings.check()
    registry = registry or CollectorRegistry()
    receiver = Receiver(settings, sink, registry)
    # aiohttp inflates gzip as it reads and refuses more than this (after inflating): 413.
    app = web.Application(client_max_size=settings.max_decompressed_bytes)
    app[RECEIVER_KEY] = receiver

    async def logs(request: web.Request) -> web.Response:
        return await receiver.export(request, "logs", _decode_logs, logs_response)

    async def metrics(request: web.Request) -> web.Response:
        return await receiver.export(request, "metrics", _decode_metrics, metrics_response)

    async def health_handler(_: web.Request) -> web.Response:
        doc = await health() if health else {}
        doc = {"status": "ok", "inflight": receiver.inflight,
               "queue_used": round(sink.backlog(), 3), **doc}
        return web.Response(body=dumps(doc), content_type="application/json")

    async def prometheus(_: web.Request) -> web.Response:
        return metrics_handler(registry)

    app.router.add_post("/v1/logs", logs)
    app.router.add_post("/v1/metrics", metrics)
    app.router.add_get("/api/health", health_handler)
    app.router.add_get("/metrics", prometheus)
    return app

