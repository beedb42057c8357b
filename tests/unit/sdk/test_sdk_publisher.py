"""The publisher against a dead broker (127.0.0.1:1): never blocks, never raises, counts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest

from sdk.publisher import Publisher, dumps

DEAD = "127.0.0.1:1"  # nothing listens on port 1


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    p = Publisher(DEAD, service="checkout", max_buffer=100)
    yield p
    p.close(0.1)


def wait_for(cond: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return True
        time.sleep(0.02)
    return False


def test_publish_never_blocks_and_counts_buffer_full_drops(publisher: Publisher) -> None:
    start = time.monotonic()
    accepted = [publisher.publish("logwarden.logs.v1", {"n": i}) for i in range(5000)]
    assert time.monotonic() - start < 1.0
    assert accepted.count(True) == 100 and accepted[:100] == [True] * 100
    s = publisher.stats()
    assert (s.sent, s.dropped_buffer_full, s.delivered, s.in_flight) == (100, 4900, 0, 100)


def test_close_returns_within_its_timeout_and_counts_undelivered_as_failed() -> None:
    p = Publisher(DEAD, service="checkout", max_buffer=1000)
    for i in range(500):
        p.publish("logwarden.logs.v1", {"n": i})
    start = time.monotonic()
    s = p.close(0.5)
    assert time.monotonic() - start < 1.5
    assert (s.sent, s.delivery_failed, s.in_flight, s.delivered) == (500, 500, 0, 0)
    assert s.dropped == 500


def test_message_timeout_fails_messages_without_close() -> None:
    with Publisher(DEAD, service="checkout", config={"message.timeout.ms": 200}) as p:
        p.publish("logwarden.logs.v1", {"n": 1})
        assert wait_for(lambda: p.stats().delivery_failed == 1)
        assert p.stats().in_flight == 0


def test_publish_after_close_and_unserialisable_values_are_rejected_not_raised() -> None:
    p = Publisher(DEAD, service="checkout")
    loop: dict[str, object] = {}
    loop["self"] = loop
    assert p.publish("t", loop) is False
    p.close(0.1)
    assert p.publish("t", {"n": 1}) is False
    assert p.stats().rejected == 2


def test_a_message_over_the_size_limit_is_rejected_not_raised(publisher: Publisher) -> None:
    assert publisher.publish("t", {"blob": "x" * 2_000_000}) is False
    assert publisher.stats().rejected == 1


def test_context_manager_closes_within_close_timeout() -> None:
    start = time.monotonic()
    with Publisher(DEAD, service="checkout", close_timeout_s=0.2) as p:
        assert p.publish("t", {"n": 1})
    assert time.monotonic() - start < 1.2
    assert p.publish("t", {"n": 2}) is False
    stats = p.stats()  # counted once, though the dead broker's error events are queued too
    assert (stats.delivery_failed, stats.delivered, stats.in_flight) == (1, 0, 0)


def test_publish_bytes_waits_for_room_only_as_long_as_asked(publisher: Publisher) -> None:
    for _ in range(100):
        publisher.publish_bytes("t", b"{}")
    start = time.monotonic()
    assert publisher.publish_bytes("t", b"{}", wait_s=0.2) is False
    assert 0.15 < time.monotonic() - start < 1.0


def test_dumps_writes_rfc3339_utc_for_aware_and_naive_datetimes() -> None:
    aware = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    out = orjson.loads(dumps({"a": aware, "n": datetime(2026, 1, 2), "s": {1}, "o": object}))
    assert out["a"] == "2026-01-02T03:04:05.006000Z"
    assert out["n"] == "2026-01-02T00:00:00Z"
    assert out["s"] == [1] and out["o"].startswith("<class")
