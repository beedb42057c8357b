from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ch_fakes import FakeStore
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from sinks.clickhouse.writer import (
    Aborted,
    BatchWriter,
    RetryPolicy,
    TableInserter,
    as_tuple,
    batch_due,
    dedup_token,
    is_bad_data,
    is_transient,
    truncate_raw,
)

COLUMNS = ["event_id", "value"]


def rows(n: int, start: int = 0) -> list[tuple[Any, ...]]:
    return [(f"ev{i}", i) for i in range(start, start + n)]


def outage(failures: int) -> Any:
    calls = {"n": 0}

    def fail(_: list[tuple[Any, ...]]) -> None:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise OperationalError("connection refused")

    return fail


def refuse_bad(batch: list[tuple[Any, ...]]) -> None:
    if any(r[1] == "BAD" for r in batch):
        raise DatabaseError("Code: 27. DB::Exception: Cannot parse input (CANNOT_PARSE_INPUT)")


def test_retry_delay_grows_to_the_cap_within_jitter() -> None:
    policy = RetryPolicy(initial_s=1, max_s=8, multiplier=2, jitter=0.25)
    assert [policy.delay(a, lambda: 0.5) for a in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 8, 8, 8]
    assert policy.delay(3, lambda: 0.0) == 3.0 and policy.delay(3, lambda: 1.0) == 5.0


def test_batch_due_by_size_age_or_request() -> None:
    assert not batch_due(0, None, 10, 1.0, flush_requested=True)
    assert batch_due(10, 0.0, 10, 1.0)
    assert batch_due(1, 1.0, 10, 1.0)
    assert not batch_due(9, 0.5, 10, 1.0)
    assert batch_due(1, 0.0, 10, 1.0, flush_requested=True)


def test_dedup_token_is_deterministic_and_content_sensitive() -> None:
    assert dedup_token("t", ["a", "b"]) == dedup_token("t", ["a", "b"])
    assert dedup_token("t", ["a", "b"]) != dedup_token("t", ["a", "c"])
    assert dedup_token("t", ["a"]) != dedup_token("u", ["a"])


def test_errors_are_classified_outage_versus_bad_data() -> None:
    assert is_transient(OperationalError("connection reset"))
    assert is_transient(DatabaseError("Code: 252. Too many parts (TOO_MANY_PARTS)"))
    # the same code for a block spanning > 100 table partitions: the rows' shape, not load
    too_wide = DatabaseError("Code: 252. DB::Exception: Too many partitions for single INSERT "
                             "block (more than 100). The limit is controlled by 'max_…")
    assert not is_transient(too_wide) and is_bad_data(too_wide)
    assert is_transient(DatabaseError("Code: 60. Table lw.logs does not exist (UNKNOWN_TABLE)"))
    assert not is_transient(DatabaseError("Code: 27. Cannot parse input"))
    assert not is_transient(ValueError("invalid literal for int()"))


def test_outage_is_retried_with_the_same_token_and_no_loss() -> None:
    store = FakeStore(fail_insert=outage(3))
    slept: list[float] = []

    def sleep(seconds: float) -> bool:
        slept.append(seconds)
        return False

    ins = TableInserter(store, "lw", "t", COLUMNS, sleep=sleep,
                        retry=RetryPolicy(initial_s=1, jitter=0))
    batch = rows(5)
    assert ins.write(batch) == 5
    assert store.rows == batch
    assert slept == [1, 2, 4] and ins.stats.retries == 3
    assert store.inserts[0]["settings"]["insert_deduplication_token"] == ins.token(batch)


def test_stop_during_outage_aborts_without_writing() -> None:
    store = FakeStore(fail_insert=outage(100))
    ins = TableInserter(store, "lw", "t", COLUMNS, sleep=lambda s: True)
    with pytest.raises(Aborted):
        ins.write(rows(3))
    assert store.rows == []


def test_bad_rows_are_bisected_out_to_on_rejected() -> None:
    store = FakeStore(fail_insert=refuse_bad)
    rejected: list[tuple[Any, ...]] = []
    ins = TableInserter(store, "lw", "t", COLUMNS,
                        on_rejected=lambda rs, exc: rejected.extend(rs))
    batch = rows(10)
    batch[3] = ("ev3", "BAD")
    batch[8] = ("ev8", "BAD")
    assert ins.write(batch) == 8
    assert rejected == [("ev3", "BAD"), ("ev8", "BAD")]
    assert sorted(store.rows) == sorted(r for r in batch if r[1] != "BAD")
    assert ins.stats.rejected == 2


def test_token_falls_back_to_whole_row_when_keys_are_empty() -> None:
    ins = TableInserter(FakeStore(), "lw", "t", COLUMNS)
    assert ins.token([("", 1)]) != ins.token([("", 2)])
    assert ins.token([("a", 1)]) == ins.token([("a", 2)])  # same event id: same event


def test_dict_rows_take_defaults_and_refuse_missing_required() -> None:
    assert as_tuple({"value": 3}, COLUMNS, {"event_id": ""}) == ("", 3)
    with pytest.raises(KeyError, match="event_id"):
        as_tuple({"value": 3}, COLUMNS, {})
    with pytest.raises(ValueError, match="3 values"):
        as_tuple(("a", 1, 2), COLUMNS, {})


def test_truncate_raw_keeps_full_size() -> None:
    assert truncate_raw(b"x" * 10, limit=4) == (b"xxxx", 10)


def test_writer_splits_by_batch_rows_and_flush_reports_rows() -> None:
    store = FakeStore()
    with BatchWriter(store, "lw", "t", COLUMNS, batch_rows=4, batch_seconds=3600) as w:
        w.add_many(rows(10))
        w.add({"event_id": "evx", "value": 99})
        assert w.flush(timeout=10) == 11
        assert w.stats.pending == 0
    assert [len(i["rows"]) for i in store.inserts] == [4, 4, 3]
    assert store.rows == [*rows(10), ("evx", 99)]
    assert w.stats.batches == 3 and w.stats.rows_written == 11


def test_writer_flushes_by_age_without_explicit_flush() -> None:
    store = FakeStore()
    with BatchWriter(store, "lw", "t", COLUMNS, batch_rows=1000, batch_seconds=0.05) as w:
        w.add_many(rows(3))
        assert w.wait_flushed(timeout=10)
        assert store.rows == rows(3)


def test_close_gives_up_during_outage_and_counts_unwritten() -> None:
    store = FakeStore(fail_insert=outage(10**6))
    w = BatchWriter(store, "lw", "t", COLUMNS, batch_rows=2, batch_seconds=3600,
                    retry=RetryPolicy(initial_s=0.01, max_s=0.01))
    w.add_many(rows(5))
    w.close(timeout=0.2)
    assert w.stats.unwritten == 5 and store.rows == []
    assert w.wait_flushed(timeout=1)  # waiters are released, not hung


async def test_async_side_waits_for_rows_to_land_without_blocking_the_loop() -> None:
    store = FakeStore(fail_insert=outage(2))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    with BatchWriter(store, "lw", "t", COLUMNS, batch_rows=100, batch_seconds=3600,
                     max_pending_rows=3, retry=RetryPolicy(initial_s=0.05, jitter=0)) as w:
        await w.add_many_async(rows(3))
        assert w.full
        flushing = asyncio.ensure_future(w.flush_async(timeout=10))
        running = asyncio.ensure_future(ticker())
        await w.add_many_async(rows(2, start=3))  # room only after two failed attempts
        running.cancel()
        assert ticks >= 5  # the loop kept running during the ~150 ms of back-off
        assert await flushing == 3
        assert await w.flush_async(timeout=10) == 2
        assert await w.wait_flushed_async(timeout=0.01)
        assert store.rows == rows(5)
    assert w.stats.retries == 2


def test_a_block_over_too_many_table_partitions_is_split_not_retried_forever() -> None:
    """Code 252 "too many partitions for single INSERT block" (rows of 150 days in one
    block) is the rows' shape: the block is halved until each half fits, nothing retried."""

    def at_most_40_days(batch: list[tuple[Any, ...]]) -> None:
        if len({r[1] // 86_400 for r in batch}) > 40:
            raise DatabaseError("Code: 252. DB::Exception: Too many partitions for single "
                                "INSERT block (more than 40).")

    store = FakeStore(fail_insert=at_most_40_days)
    ins = TableInserter(store, "lw", "t", COLUMNS, sleep=lambda s: pytest.fail("retried"))
    batch = [(f"ev{i}", 1_700_000_000 - i * 86_400) for i in range(150)]
    assert ins.write(batch) == 150
    assert sorted(store.rows) == sorted(batch) and ins.stats.retries == 0
    assert len(store.inserts) == 4  # 150 -> 75 -> 38 days each
