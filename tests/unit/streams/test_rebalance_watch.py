"""A Faust rebalance that never ends makes the worker's health say so (the alerting and
incident agents stand still while it lasts)."""

from __future__ import annotations

import faust

from streams.metrics import RebalanceWatch


def test_a_rebalance_that_never_ends_is_a_stall_and_one_that_ends_is_not() -> None:
    now = [1000.0]
    watch = RebalanceWatch(stall_after_s=120.0, clock=lambda: now[0])
    app = faust.App("lw-test-rebalance", broker="memory://", store="memory://")
    app.sensors.add(watch)
    assert watch.progress().ok
    app.on_rebalance_start()  # what Faust calls when the group starts rebalancing
    now[0] += 100
    assert watch.progress().ok  # a rebalance takes a while
    app.on_rebalance_start()  # it starts over before it ends: the clock keeps running
    now[0] += 30
    stalled = watch.progress()
    assert not stalled.ok and "rebalance has not finished for 130 s" in stalled.reason
    app.on_rebalance_end()  # recovery done: the agents run again
    assert watch.progress().ok
