"""The evaluation tick survives a tick topic the producer does not fully know yet."""

from __future__ import annotations

import asyncio

from alerting.agents.service import send_ticks


class Topic:
    """Records sends; like aiokafka, refuses a partition beyond the ones it knows."""

    def __init__(self, known: int) -> None:
        self.known = known
        self.sent: list[tuple[bytes, int]] = []

    async def send(self, *, key: bytes, value: bytes, partition: int) -> None:
        assert partition < self.known, "Unrecognized partition"
        self.sent.append((key, partition))


def ticks(known: int) -> tuple[bool, Topic, Topic, dict[str, int]]:
    rules, manager, counts = Topic(known), Topic(1), {"ticks_skipped": 0}
    sent = asyncio.run(send_ticks(rules, manager, 4, counts))  # type: ignore[arg-type]
    return sent, rules, manager, counts


def test_a_tick_goes_to_every_rule_partition_then_the_manager() -> None:
    sent, rules, manager, counts = ticks(known=4)
    assert sent and [p for _, p in rules.sent] == [0, 1, 2, 3]
    assert manager.sent == [(b"tick", 0)] and counts["ticks_skipped"] == 0


def test_a_partition_not_yet_in_the_metadata_skips_the_round_instead_of_crashing() -> None:
    sent, rules, manager, counts = ticks(known=1)  # a topic the broker has just created
    assert not sent and counts["ticks_skipped"] == 1
    assert [p for _, p in rules.sent] == [0] and manager.sent == []
    sent, _, _, counts = ticks(known=4)  # the next interval, once the metadata caught up
    assert sent and counts["ticks_skipped"] == 0
