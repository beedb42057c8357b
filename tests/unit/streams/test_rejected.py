"""Rows ClickHouse refuses become dead letters: where they came from and why."""

from __future__ import annotations

from typing import Any

from schemas import topics
from sinks.clickhouse.rows import DEAD_LETTER_COLUMNS, log_row
from streams.rejected import dead_letter_refused, rejected_dead_letters


def test_a_refused_log_row_keeps_its_source_partition_and_offset() -> None:
    e = {"ts": 1_780_000_000_000, "service": "api", "level": "INFO", "message": "m",
         "attrs": {}}
    row = log_row(e, "ev1", 3, 1234, 1_780_000_000_000)
    [d] = rejected_dead_letters("logs", [row], ValueError("Code: 27. Cannot parse"), 5)
    dead = dict(zip(DEAD_LETTER_COLUMNS, d, strict=True))
    assert (dead["topic"], dead["partition"], dead["offset"]) == (topics.LOGS, 3, 1234)
    assert dead["stage"] == "sink.logs" and "Cannot parse" in dead["error"]
    assert b'"ev1"' in dead["raw"] and dead["raw_size"] == len(dead["raw"])


def test_a_refused_row_of_a_table_without_offsets_is_named_by_its_table() -> None:
    [d] = rejected_dead_letters("windows", [("s", b"\x00", float("nan"))], ValueError("x"), 5)
    assert (d[1], d[2], d[3], d[4]) == ("clickhouse.windows", 0, -1, "sink.windows")


class Sink:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add_many(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows.extend(rows)


def test_the_callback_writes_the_table_and_the_topic() -> None:
    sink = Sink()
    sent: list[tuple[bytes, str]] = []
    callback = dead_letter_refused("changes", {"dead_letters": sink},  # type: ignore[dict-item]
                                   lambda v, k: sent.append((v, k)))
    callback([(1, "api", "deploy", "d", "", "ev")], ValueError("bad"))
    assert len(sink.rows) == 1 and sink.rows[0][1] == topics.CHANGES
    assert len(sent) == 1 and sent[0][1] == topics.CHANGES and b"sink.changes" in sent[0][0]
