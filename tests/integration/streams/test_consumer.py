"""`BatchConsumer` against the real broker: insert then commit, hand-over, progress, stop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Message, Producer

from streams.consumer import Barrier, BatchConsumer, Partition
from streams.settings import KafkaSettings
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration


class Recorder:
    """A stage that records what it is asked to do; ``durable`` says whether results land."""

    name = "test"

    def __init__(self, durable: bool = True, hang_on_revoke: bool = False) -> None:
        self.durable, self.hang_on_revoke = durable, hang_on_revoke
        self.seen: list[bytes] = []
        self.calls: list[str] = []
        self.revoked_partitions: list[Partition] = []

    async def process(self, batch: list[Message]) -> Barrier:
        self.calls.append("process")
        self.seen += [m.value() or b"" for m in batch]
        return lambda: self.durable

    async def assigned(self, partitions: list[Partition]) -> None:
        self.calls.append("assigned")

    async def revoked(self, partitions: list[Partition]) -> None:
        self.calls.append("revoked")
        self.revoked_partitions += partitions
        if self.hang_on_revoke:
            await asyncio.sleep(3600)

    async def idle(self) -> None:
        return None


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    name = f"it-consumer-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, {name: 2})
    return name


def produce(bootstrap: str, topic: str, n: int, prefix: str = "m") -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        p.produce(topic, f"{prefix}{i}".encode(), key=str(i))
    p.flush(30)


async def wait_until(check: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def consumer(bootstrap: str, topic: str, stage: Recorder, group: str,
             **kw: Any) -> BatchConsumer:
    return BatchConsumer(stage, [topic], KafkaSettings(bootstrap=bootstrap), group=group,
                         batch_size=50, **kw)


async def test_offsets_are_committed_only_once_results_are_durable(
        kafka_bootstrap: str, topic: str) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, 200)
    lost = Recorder(durable=False)  # e.g. ClickHouse never took the rows
    c = consumer(kafka_bootstrap, topic, lost, group, stop_timeout_s=2)
    await c.start()
    await wait_until(lambda: len(lost.seen) == 200)
    assert lost.calls[0] == "assigned"  # state restored before the first batch
    await c.stop()
    again = Recorder()  # the next worker gets everything again, and it lands this time
    c = consumer(kafka_bootstrap, topic, again, group)
    await c.start()
    await wait_until(lambda: len(again.seen) == 200)
    await c.stop()
    assert sorted(again.seen) == sorted(lost.seen)
    after = Recorder()  # committed: nothing is read twice
    produce(kafka_bootstrap, topic, 10, prefix="late")
    c = consumer(kafka_bootstrap, topic, after, group)
    await c.start()
    await wait_until(lambda: len(after.seen) == 10)
    await asyncio.sleep(1.0)
    await c.stop()
    assert sorted(after.seen) == sorted(f"late{i}".encode() for i in range(10))


async def test_a_second_consumer_takes_over_after_a_hand_over(
        kafka_bootstrap: str, topic: str) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, 300)
    first, second = Recorder(), Recorder()
    a = consumer(kafka_bootstrap, topic, first, group)
    await a.start()
    await wait_until(lambda: len(first.seen) == 300)
    b = consumer(kafka_bootstrap, topic, second, group)
    await b.start()
    try:
        await wait_until(lambda: bool(a.assigned) and bool(b.assigned))
        assert "revoked" in first.calls  # the first handed its partitions over
        assert not a.assigned & b.assigned
        produce(kafka_bootstrap, topic, 100, prefix="n")
        await wait_until(lambda: len(first.seen) + len(second.seen) == 400)
        await asyncio.sleep(1.0)
    finally:
        await b.stop()
        await a.stop()
    both = first.seen + second.seen
    assert len(both) == len(set(both)) == 400  # nothing lost, nothing twice


async def test_progress_reports_results_that_do_not_become_durable(
        kafka_bootstrap: str, topic: str) -> None:
    stuck = Recorder(durable=False)
    c = consumer(kafka_bootstrap, topic, stuck, f"g-{uuid.uuid4().hex[:8]}",
                 stall_after_s=1.0, stop_timeout_s=2)
    await c.start()
    try:
        assert c.progress().ok
        produce(kafka_bootstrap, topic, 20)
        await wait_until(lambda: len(stuck.seen) == 20)
        await wait_until(lambda: not c.progress().ok, timeout=10)
        assert "not durable" in c.progress().reason
        stuck.durable = True  # the store came back: the batches land and commit
        await wait_until(lambda: c.progress().ok and not c.pending, timeout=10)
    finally:
        await c.stop()


async def test_a_stop_ends_within_its_deadline_when_the_hand_over_hangs(
        kafka_bootstrap: str, topic: str) -> None:
    stage = Recorder(hang_on_revoke=True)
    c = consumer(kafka_bootstrap, topic, stage, f"g-{uuid.uuid4().hex[:8]}",
                 stop_timeout_s=2)
    await c.start()
    produce(kafka_bootstrap, topic, 5)
    await wait_until(lambda: len(stage.seen) == 5)
    started = time.monotonic()
    await c.stop()
    assert "revoked" in stage.calls
    assert time.monotonic() - started < 15
