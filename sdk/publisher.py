"""The Kafka publisher services use: asynchronous, batched, bounded, and never in the way.

``publish`` hands a message to librdkafka's local queue and returns at once. When that queue
is full the message is dropped and counted, not waited for; when the broker is down,
messages wait at most ``message.timeout.ms`` and are then counted as failed. A background
thread serves delivery reports; ``stats()`` says what happened to everything published.

A secured cluster: pass ``security=KafkaSecurity(security_protocol="SASL_SSL", ...)``
(``schemas.kafka_security``), or the librdkafka properties in ``config``.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import orjson
from confluent_kafka import KafkaError, Message, Producer

# Our own diagnostics. Log handlers of this package ignore loggers named ``sdk.*``, so a
# failing broker cannot make the publisher publish about itself in a loop.
log = logging.getLogger("sdk.publisher")

DEFAULT_CONFIG: dict[str, Any] = {
    "linger.ms": 25,  # batch up to 25 ms of messages per partition
    "batch.size": 1_000_000,  # bytes per batch (after compression)
    "compression.type": "lz4",
    "message.timeout.ms": 30_000,  # a dead broker holds a message at most 30 s
    "delivery.report.only.error": True,  # successes are counted, not reported one by one
    "log.connection.close": False,
}


class Security(Protocol):
    """TLS/SASL settings as librdkafka properties: ``schemas.kafka_security.KafkaSecurity``
    (not imported, so the SDK needs only confluent-kafka and orjson at run time)."""

    def librdkafka(self) -> dict[str, str]: ...


_JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def _json_default(obj: Any) -> Any:
    """Fallback for values orjson does not know: sets become lists, the rest ``str()``."""
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)


def dumps(value: Mapping[str, Any]) -> bytes:
    """Serialise a message: datetimes become RFC 3339 (naive ones read as UTC)."""
    return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS)


@dataclass(frozen=True)
class PublisherStats:
    """What happened to what was published, since the publisher started."""

    sent: int  # accepted into the local queue
    delivered: int  # acknowledged by the broker
    dropped_buffer_full: int  # refused because the local queue was full
    delivery_failed: int  # the broker did not take it in time (or it was purged at close)
    rejected: int  # refused by the client outright (unserialisable, too large, closed)
    in_flight: int  # queued or on the wire, not yet acknowledged
    errors: int  # client-level errors reported by librdkafka (broker down, ...)

    @property
    def dropped(self) -> int:
        """Every message that will never arrive."""
        return self.dropped_buffer_full + self.delivery_failed + self.rejected


class Publisher:
    """Publish JSON messages to Kafka without ever blocking or raising on broker trouble."""

    def __init__(
        self,
        bootstrap: str,
        *,
        service: str,
        client_id: str | None = None,
        max_buffer: int = 100_000,
        config: Mapping[str, Any] | None = None,
        security: Security | None = None,
        poll_interval_s: float = 0.1,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.service = service
        conf: dict[str, Any] = {
            **DEFAULT_CONFIG,
            "bootstrap.servers": bootstrap,
            "client.id": client_id or f"{service}-logwarden-sdk",
            "queue.buffering.max.messages": max_buffer,
            **(security.librdkafka() if security is not None else {}),
            **(config or {}),
            "error_cb": self._on_error,
            "on_delivery": self._on_delivery,
            "logger": logging.getLogger("sdk.kafka"),
        }
        self._producer = Producer(conf)
        self._lock = threading.Lock()
        self._sent = self._failed = self._buffer_full = self._rejected = self._errors = 0
        self._closed = False
        self._stop = threading.Event()
        self._poll_interval_s = poll_interval_s
        self._close_timeout_s = close_timeout_s
        self._poller = threading.Thread(target=self._poll_loop, name="sdk-publisher-poll",
                                        daemon=True)
        self._poller.start()
        # Close at interpreter exit without keeping the publisher alive until then.
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self), close_timeout_s)
        atexit.register(self._atexit)

    def publish(self, topic: str, value: Mapping[str, Any], key: str | None = None) -> bool:
        """Queue one JSON message (key: ``key``, else its ``service``); False if dropped."""
        try:
            raw = dumps(value)
        except (orjson.JSONEncodeError, TypeError) as exc:
            self._reject(f"cannot serialise message: {exc}")
            return False
        if key is None:
            service = value.get("service")
            key = service if isinstance(service, str) else self.service
        return self.publish_bytes(topic, raw, key)

    def publish_bytes(self, topic: str, value: bytes, key: str | bytes | None = None, *,
                      wait_s: float = 0.0) -> bool:
        """Queue raw bytes; if the queue is full wait up to ``wait_s`` for room, else drop."""
        if self._closed:
            self._reject("publish after close")
            return False
        deadline = 0.0
        while True:
            try:
                self._producer.produce(topic, value, key)
            except BufferError:
                deadline = deadline or time.monotonic() + wait_s
                if time.monotonic() < deadline:
                    self._producer.poll(0.01)
                    continue
                with self._lock:
                    self._buffer_full += 1
                return False
            except Exception as exc:  # KafkaException: message too large, bad topic name
                self._reject(f"produce to {topic} refused: {exc}")
                return False
            with self._lock:
                self._sent += 1
            return True

    def stats(self) -> PublisherStats:
        """Counters since start; ``delivered`` is what the broker acknowledged."""
        queued = 0 if self._closed else len(self._producer)
        with self._lock:
            # The producer's queue length also counts error events waiting to be served
            # (broker down, ...), which are not messages.
            in_flight = min(queued, self._sent - self._failed)
            return PublisherStats(
                sent=self._sent,
                delivered=self._sent - self._failed - in_flight,
                dropped_buffer_full=self._buffer_full,
                delivery_failed=self._failed,
                rejected=self._rejected,
                in_flight=in_flight,
                errors=self._errors,
            )

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for queued messages; return how many remain."""
        if self._closed:
            return 0
        return int(self._producer.flush(timeout))

    def close(self, timeout: float | None = None) -> PublisherStats:
        """Flush for at most ``timeout`` s (default ``close_timeout_s``), count the rest failed."""
        if self._closed:
            return self.stats()
        remaining = self.flush(self._close_timeout_s if timeout is None else timeout)
        if remaining:
            # Purged messages get a delivery error each, counted by ``_on_delivery``.
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)
            log.warning("publisher_closed_with_undelivered", extra={"undelivered": remaining})
        self._stop.set()
        self._poller.join()  # polls in short steps; after this only this thread polls
        deadline = time.monotonic() + 1.0
        while len(self._producer) and time.monotonic() < deadline:
            self._producer.poll(0.05)  # serve the purged messages' delivery reports
        with self._lock:
            # A message not reported by now is lost with the producer (what is left in its
            # queue may also be error events: never more than the unreported messages).
            self._failed += min(len(self._producer), self._sent - self._failed)
            self._closed = True
        atexit.unregister(self._atexit)
        return self.stats()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(self._close_timeout_s)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(self._poll_interval_s)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._failed += 1
                first = self._failed == 1
            if first:
                log.warning("delivery_failed", extra={"topic": msg.topic(), "error": str(err)})

    def _on_error(self, err: KafkaError) -> None:
        with self._lock:
            self._errors += 1

    def _reject(self, reason: str) -> None:
        with self._lock:
            self._rejected += 1
            first = self._rejected == 1
        if first:
            log.warning("message_rejected", extra={"reason": reason})


def _close_at_exit(ref: weakref.ref[Publisher], timeout: float) -> None:
    publisher = ref()
    if publisher is not None:
        publisher.close(timeout)

