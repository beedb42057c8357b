"""State kept on compacted Kafka topics (template miners, detector models): read it back.

A stage writes the latest state of each key to its topic; compaction keeps the latest value
per key, so reading a topic from the start to its high watermarks restores every key.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.consumer import kafka_client_config
from streams.settings import KafkaSettings

log = structlog.get_logger(__name__)


def read_compacted(kafka: KafkaSettings, topic: str, group: str, timeout: float = 60.0,
                   partitions: Collection[int] | None = None, *, stage: str = "state"
                   ) -> dict[str, bytes]:
    """The latest value of every key of ``topic`` (of its ``partitions`` only, if given),
    read from the start to the high watermark."""
    consumer = Consumer({**kafka_client_config(kafka), "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": True})
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        remaining: dict[int, int] = {}
        for p in meta.partitions:
            if partitions is not None and p not in partitions:
                continue
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                       timeout=timeout)
            if high > low:
                remaining[p] = high
        if not remaining:
            return {}
        consumer.assign([TopicPartition(topic, p, 0) for p in remaining])
        latest: dict[str, bytes] = {}
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                _take(msg, latest, remaining)
        if remaining:
            log.warning("state_read_incomplete", stage=stage, topic=topic, partitions=remaining)
        return latest
    finally:
        consumer.close()


def _take(msg: Any, latest: dict[str, bytes], remaining: dict[int, int]) -> None:
    p = msg.partition()
    err = msg.error()
    if err is not None:
        if err.code() == KafkaError._PARTITION_EOF:
            remaining.pop(p, None)
        return
    key = msg.key()
    if key is not None:
        k = key.decode("utf-8", "replace")
        if msg.value() is None:
            latest.pop(k, None)  # a tombstone
        else:
            latest[k] = msg.value()
    if msg.offset() + 1 >= remaining.get(p, 0):
        remaining.pop(p, None)
