"""What a worker process owns: the store, one writer per table, the producer, counters."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaException, Producer

from audit.trail import AuditTrail
from detectors.pooling import split_instance
from schemas.topics import Internal, internal
from schemas.windows import WindowStats
from sinks.clickhouse import rows
from sinks.clickhouse.client import SerializedStore, Store, connect
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.writer import TABLE_KEYS, BatchWriter
from streams.rejected import dead_letter_refused
from streams.settings import Settings, client_id

log = structlog.get_logger(__name__)


def window_key(w: WindowStats) -> str:
    """A window's key on the windows topic: its series, or for an instance's metric (a
    pod's gauge) the pooled series of its instances, so every pod of a group reaches the
    worker that scores their pool and holds its state (``detectors.pooling``).

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> w = WindowStats(series="cart/queue_depth{instance=cart-7f9}", service="cart",
    ...                 scope="metric", window_s=10, start=t, end=t)
    >>> window_key(w)
    'cart/queue_depth{instance=*}'
    """
    split = split_instance(w.series) if w.scope == "metric" else None
    return w.series if split is None else split[0]


@dataclass
class Runtime:
    """Shared resources of one worker process; built by ``open_runtime``."""

    settings: Settings
    store: SerializedStore
    writers: dict[str, BatchWriter]
    producer: Producer
    topics: Internal  # this deployment's internal topic names
    audit: AuditTrail | None = None  # the API's writes and queries, config reloads
    started_at: float = field(default_factory=time.time)
    produce_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, topic: str, value: bytes, key: str | bytes | None = None) -> None:
        """Produce to an internal topic without blocking; failures are counted."""
        while True:
            try:
                self.producer.produce(topic, value, key=key, on_delivery=self._delivered)
                break
            except BufferError:
                self.producer.poll(0.1)  # local queue full: let it drain (back-pressure)
            except KafkaException as exc:  # e.g. too large: counted, the stage goes on
                self._delivered(exc.args[0], None)
                break
        self.producer.poll(0)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            with self._lock:
                self.produce_errors += 1
            log.error("produce_failed", error=str(err))

    def publish_windows(self, windows: list[WindowStats]) -> None:
        """Windows go to the windows topic (for the detectors) and the windows table."""
        if not windows:
            return
        now_ms = int(time.time() * 1000)
        for w in windows:
            self.send(self.topics.windows, w.to_json(), key=window_key(w))
        self.writers["windows"].add_many([rows.window_row(w, now_ms) for w in windows])

    def close(self, timeout: float = 30.0) -> None:
        """Flush the producer and every writer, then stop them."""
        self.producer.flush(timeout)
        for w in self.writers.values():
            w.close(timeout)


def open_store(settings: Settings) -> Store:
    """Connect to ClickHouse (chDB by default) and bring its schema up to date."""
    store = connect(settings.clickhouse, settings.data_dir)
    migrate(store, settings.clickhouse)  # logs each migration it applies
    return store


def open_runtime(settings: Settings, store: Store | None = None) -> Runtime:
    """Open the store (migrating it), a writer per core table and an internal producer."""
    shared = SerializedStore(store if store is not None else open_store(settings))
    ch = settings.clickhouse
    producer = Producer({
        **settings.kafka.client_config(),
        # idempotent (acks=all): a broker lost mid-send neither loses nor doubles a message
        "linger.ms": 20, "compression.type": "lz4", "enable.idempotence": True, "acks": "all",
        "client.id": client_id(settings.stream.app_id, "producer"),
        "queue.buffering.max.messages": 200_000,
    })
    names = internal(settings.stream.app_id)
    writers: dict[str, BatchWriter] = {}
    holder: list[Runtime] = []  # the callbacks send through the runtime built below

    def send(value: bytes, key: str) -> None:
        holder[0].send(names.dead_letters, value, key=key)

    for table, columns in rows.TABLE_COLUMNS.items():
        # rows ClickHouse refuses are dead-lettered (not those of dead_letters: no loop)
        refused = None if table == "dead_letters" else dead_letter_refused(table, writers, send)
        writers[table] = BatchWriter(shared, ch.database, table, columns,
                                     batch_rows=ch.batch_rows, batch_seconds=ch.batch_seconds,
                                     key_columns=TABLE_KEYS.get(table, ("event_id",)),
                                     json_rows=table in rows.JSON_TABLES, on_rejected=refused)
    audit = (AuditTrail(shared, ch.database, "worker", settings.audit.key.get_secret_value()
                        .encode(), settings.data_dir) if settings.audit.enabled else None)
    rt = Runtime(settings=settings, store=shared, writers=writers, producer=producer,
                 topics=names, audit=audit)
    holder.append(rt)
    return rt
