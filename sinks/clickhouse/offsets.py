"""Which source offsets already have their rows in ClickHouse: exactly-once across crashes.

The ingest stage commits a partition's offset only after its rows landed (insert, then
commit), so a crash replays the rows that landed after the last commit. Insert dedup tokens
cannot catch those: a token names one insert block, and the writer forms blocks from the
rows that happened to be buffered together, which a replay after a restart forms
differently (that is how 7 % of the logs were stored twice after a ``kill -9``). The
``logs`` rows carry their Kafka partition and offset, so on assignment the stage asks which
offsets at or past the committed one are stored, and the replay skips writing them.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas import topics
from sinks.clickhouse.client import Store

# Source topic -> table whose rows carry (kafka_partition, kafka_offset) of their message.
OFFSET_TABLES = {topics.LOGS: "logs"}
MAX_LANDED = 2_000_000  # offsets read back per partition: more than a writer ever buffers


def landed_offsets(store: Store, database: str,
                   committed: Iterable[tuple[str, int, int]],
                   limit: int = MAX_LANDED) -> dict[tuple[str, int], list[int]]:
    """By (topic, partition): stored offsets at or past each committed offset given."""
    out: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in committed:
        table = OFFSET_TABLES.get(topic)
        if table is None or offset < 0:
            continue
        result = store.query(
            f"SELECT DISTINCT kafka_offset FROM {database}.{table} "
            "WHERE kafka_partition = {p:UInt32} AND kafka_offset >= {o:UInt64} "
            "ORDER BY kafka_offset LIMIT {n:UInt64}",
            parameters={"p": partition, "o": offset, "n": limit})
        out[topic, partition] = [int(r[0]) for r in result.result_rows]
    return out
