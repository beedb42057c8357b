"""Reading back which source offsets already have their rows (exactly once across crashes)."""

from __future__ import annotations

from ch_fakes import FakeResult, FakeStore

from schemas import topics
from sinks.clickhouse.offsets import landed_offsets


def test_landed_offsets_past_the_commit_by_partition_with_event_ids() -> None:
    store = FakeStore(result=FakeResult(["kafka_offset", "event_id"], [(7, "a"), (8, "b")]))
    committed = [(topics.LOGS, 2, 7), (topics.LOGS, 3, -1001), (topics.CHANGES, 0, 5)]
    got = landed_offsets(store, "lw", committed)  # type: ignore[arg-type]
    assert got == {(topics.LOGS, 2): {7: "a", 8: "b"}, (topics.LOGS, 3): {7: "a", 8: "b"}}
    (q1, p1), (q2, p2) = store.queries  # changes keep no offsets: not asked
    assert "lw.logs" in q1 and p1 == {"p": 2, "o": 7, "n": 2_000_000}
    assert "ingested_at" not in q1
    assert "ingested_at" in q2 and p2["o"] == 0  # no commit yet: recent rows from the start
