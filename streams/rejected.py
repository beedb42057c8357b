"""Rows ClickHouse refuses become dead letters, like input that does not validate.

The writer finds the refused rows of a batch by bisection and hands them to the callback
built here, on its own thread. The original Kafka bytes are gone by then (a row is what
the ingest stage made of them), so the dead letter carries the row as JSON, the server's
error, the stage ``sink.<table>`` and, for the tables that store it, the source partition
and offset (-1 when the table does not keep it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog

from schemas import topics
from schemas.dead_letters import dead_letter_message
from sinks.clickhouse import rows
from sinks.clickhouse.writer import BatchWriter, RejectedCallback

log = structlog.get_logger(__name__)

SOURCE_TOPIC = {"logs": topics.LOGS, "metric_points": topics.METRICS,
                "changes": topics.CHANGES, "feedback": topics.FEEDBACK}
Send = Callable[[bytes, str], None]  # (dead-letter message, key) to the dead-letter topic


def rejected_dead_letters(table: str, row_list: list[tuple[Any, ...]], exc: BaseException,
                          now_ms: int) -> list[tuple[Any, ...]]:
    """``dead_letters`` rows for rows of ``table`` that ClickHouse refused."""
    columns = rows.TABLE_COLUMNS.get(table, ())
    part = columns.index("kafka_partition") if "kafka_partition" in columns else -1
    off = columns.index("kafka_offset") if "kafka_offset" in columns else -1
    topic = SOURCE_TOPIC.get(table, f"clickhouse.{table}")
    error = f"ClickHouse refused the row: {str(exc)[:1000]}"
    out = []
    for row in row_list:
        raw = orjson.dumps(row, default=repr)
        out.append(rows.dead_letter_row(
            now_ms, topic, int(row[part]) if part >= 0 else 0,
            int(row[off]) if off >= 0 else -1, f"sink.{table}", error, raw, None))
    return out


def dead_letter_refused(table: str, writers: Mapping[str, BatchWriter],
                        send: Send) -> RejectedCallback:
    """The ``on_rejected`` of ``table``'s writer: refused rows to the dead-letter table and
    topic (``writers`` is read at call time: it may be filled after this is built)."""

    def on_rejected(row_list: list[tuple[Any, ...]], exc: BaseException) -> None:
        letters = rejected_dead_letters(table, row_list, exc, int(time.time() * 1000))
        writers["dead_letters"].add_many(letters)
        for d in letters:
            send(dead_letter_message(d), d[1])
        log.warning("rows_dead_lettered", stage=f"sink.{table}", rows=len(letters))

    return on_rejected
