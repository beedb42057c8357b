"""The OTLP receiver's Kafka side, and the receiver as a service of the worker or on its own.

``KafkaOtlpSink`` produces accepted records to the ingest topics (key = service) with
``acks=all`` and idempotence, and resolves a request only when every record is
acknowledged. Its queue is bounded (``queue_kbytes``); ``backlog()`` tells the receiver how
full it is so that it answers 429 before memory grows. A daemon thread polls the producer;
delivery callbacks hop back onto the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from functools import partial
from typing import Any

import structlog
from aiohttp import web
from confluent_kafka import KafkaException, Producer
from mode import Service
from prometheus_client import CollectorRegistry

from otlp.settings import OtlpSettings
from streams.settings import KafkaSettings, Settings
from web.api import serve
from web.otlp import SinkBusy, SinkFailed, create_otlp_app

log = structlog.get_logger(__name__)
MAX_QUEUED_MESSAGES = 500_000  # librdkafka's own count cap, above what queue_kbytes allows


class _Batch:
    """The records of one request waiting for their acknowledgements (event-loop side)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        self.loop, self.left, self.error = loop, n, ""
        self.done: asyncio.Future[None] = loop.create_future()

    def settle(self, err: str) -> None:
        self.left -= 1
        self.error = self.error or err
        if self.left <= 0 and not self.done.done():
            self.done.set_result(None)


class KafkaOtlpSink:
    """Accepted OTLP records into Kafka, with a bounded local queue."""

    def __init__(self, kafka: KafkaSettings, settings: OtlpSettings) -> None:
        self.max_bytes = settings.queue_kbytes * 1024
        self.producer = Producer({
            **kafka.client_config(),
            "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "compression.type": "lz4",
            "queue.buffering.max.kbytes": settings.queue_kbytes,
            "queue.buffering.max.messages": MAX_QUEUED_MESSAGES,
        })
        self._lock = threading.Lock()
        self._queued_bytes = 0
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="otlp-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def backlog(self) -> float:
        """How full the producer queue is (bytes we track, messages librdkafka counts)."""
        with self._lock:
            used = self._queued_bytes / self.max_bytes
        return max(used, len(self.producer) / MAX_QUEUED_MESSAGES)

    def _delivered(self, batch: _Batch, size: int, err: Any, _msg: Any) -> None:
        with self._lock:
            self._queued_bytes -= size
        batch.loop.call_soon_threadsafe(batch.settle, str(err) if err is not None else "")

    async def send(self, topic: str, records: Sequence[tuple[str, bytes]],
                   timeout: float) -> None:
        """Produce every record and wait for Kafka's acknowledgements (SinkBusy when the
        queue is full, SinkFailed on a delivery error or after ``timeout``)."""
        batch = _Batch(asyncio.get_running_loop(), len(records))
        for i, (key, value) in enumerate(records):
            try:
                with self._lock:
                    self._queued_bytes += len(value)
                self.producer.produce(topic, value, key=key.encode(),
                                      on_delivery=partial(self._delivered, batch, len(value)))
            except (BufferError, KafkaException) as exc:
                with self._lock:
                    self._queued_bytes -= len(value)
                for _ in range(len(records) - i):  # the ones never queued
                    batch.left -= 1
                if isinstance(exc, BufferError):
                    raise SinkBusy(str(exc)) from None
                raise SinkFailed(str(exc)) from None
        try:
            await asyncio.wait_for(asyncio.shield(batch.done), timeout)
        except TimeoutError:
            raise SinkFailed(f"no acknowledgement within {timeout:g} s") from None
        if batch.error:
            raise SinkFailed(batch.error)

    def close(self, timeout: float = 30.0) -> int:
        """Flush what is queued (up to ``timeout``), stop polling; the messages left."""
        left = int(self.producer.flush(timeout))
        self._stop.set()
        self._poller.join(5)
        return left


async def start_receiver(s: Settings, registry: CollectorRegistry | None = None
                         ) -> tuple[web.AppRunner, KafkaOtlpSink]:
    """The sink and the receiver listening on ``LOGWARDEN_OTLP_HOST``:``_PORT``; its
    counters go to ``registry`` (served on its own ``/metrics`` too)."""
    sink = KafkaOtlpSink(s.kafka, s.otlp)
    try:
        app = create_otlp_app(s.otlp, sink, registry)
        runner = await serve(app, s.otlp.host, s.otlp.port)
    except BaseException:
        sink.close(1)
        raise
    log.info("otlp_listening", url=f"http://{s.otlp.host}:{s.otlp.port}",
             kafka=s.kafka.bootstrap_servers())
    return runner, sink


async def stop_receiver(runner: web.AppRunner, sink: KafkaOtlpSink, timeout: float) -> None:
    """Stop taking requests, then flush what Kafka has not yet acknowledged."""
    await runner.cleanup()
    left = await asyncio.get_running_loop().run_in_executor(None, sink.close, timeout)
    log.info("otlp_stopped", unflushed=left)


async def run_collector(s: Settings, stop: asyncio.Event) -> None:
    """``logwarden collector``: the receiver alone until ``stop`` is set."""
    runner, sink = await start_receiver(s)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await stop_receiver(runner, sink, s.stream.stop_timeout_s)


class OtlpService(Service):
    """The receiver inside the worker (``LOGWARDEN_OTLP_ENABLED=true``)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.registry = CollectorRegistry()  # also served on the worker's /metrics
        self.runner: web.AppRunner | None = None
        self.sink: KafkaOtlpSink | None = None

    async def on_start(self) -> None:
        self.runner, self.sink = await start_receiver(self.settings, self.registry)

    async def on_stop(self) -> None:
        if self.runner is not None and self.sink is not None:
            await stop_receiver(self.runner, self.sink, self.settings.stream.stop_timeout_s)
