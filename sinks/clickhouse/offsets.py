"""Which source offsets already have their rows in ClickHouse: exactly-once across crashes.

The ingest stage commits a partition's offset only after its rows landed (insert, then
commit), so a crash replays the rows that landed after the last commit. Insert dedup tokens
cannot catch those: a token names one insert block, and the writer forms blocks from the
rows that happened to be buffered together, which a replay after a restart forms
differently (that is how 7 % of the logs were stored twice after a ``kill -9``). The
``logs`` and ``metric_points`` rows carry their Kafka partition and offset, so on assignment
the stage asks which offsets at or past the committed one are stored, and the replay skips
writing them.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas import topics
from sinks.clickhouse.client import Store

# Source topic -> table whose rows carry (kafka_partition, kafka_offset) of their message.
OFFSET_TABLES = {topics.LOGS: "logs", topics.METRICS: "metric_points"}
MAX_LANDED = 2_000_000  # offsets read back per partition: more than a writer ever buffers
# A partition without a committed offset (a crash before its first commit) is read from
# its start: its rows ingested this recently are looked up.
NO_COMMIT_LOOKBACK_S = 3600


def landed_offsets(store: Store, database: str,
                   committed: Iterable[tuple[str, int, int]],
                   limit: int = MAX_LANDED) -> dict[tuple[str, int], dict[int, str]]:
    """By (topic, partition): {offset: event id} of the stored rows at or past each committed
    offset given (a negative one: none committed yet). A replayed message is skipped only
    when its event id matches too, so a topic recreated with its offsets from 0 again is
    never mistaken for what was stored."""
    out: dict[tuple[str, int], dict[int, str]] = {}
    for topic, partition, offset in committed:
        table = OFFSET_TABLES.get(topic)
        if table is None:
            continue
        recent = "" if offset >= 0 else (
            f"AND ingested_at >= now64(3) - INTERVAL {NO_COMMIT_LOOKBACK_S} SECOND ")
        result = store.query(
            f"SELECT kafka_offset, any(event_id) FROM {database}.{table} "
            "WHERE kafka_partition = {p:UInt32} AND kafka_offset >= {o:UInt64} " + recent +
            "GROUP BY kafka_offset ORDER BY kafka_offset LIMIT {n:UInt64}",
            parameters={"p": partition, "o": max(0, offset), "n": limit})
        out[topic, partition] = {int(r[0]): str(r[1]) for r in result.result_rows}
    return out
