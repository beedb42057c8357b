"""The dead-man's canary and heartbeat in the alert manager, with time as a parameter: a
canary that comes back pages nobody; one that does not pages the dead-man receiver exactly
once; the heartbeat goes out once per interval even when no channel can deliver it."""

from __future__ import annotations

from pathlib import Path

import orjson
from manager_kit import Recorder, Rows, build_manager

from alerting.agents.manage_alerts import AlertManager, ManagerTables
from alerting.config import AlertingSettings, SmtpSettings
from alerting.inputs import CanarySeen, CanarySent, Tick
from alerting.notifiers.base import Deliverer, RetryPolicy

CONFIG = """
rules:
  - {name: Errors, kind: threshold, field: error_rate, value: 0.5, severity: critical}
route: {receiver: ops}
receivers:
  - {name: ops, channels: [{type: slack, to: C0OPS}]}
  - {name: dead, channels: [{type: email, to: dead@example.test}]}
deadman: {receiver: dead, interval: 1h}
"""


def manager(tmp_path: Path, deliverer: Deliverer | None = None,
            settings: AlertingSettings | None = None) -> tuple[AlertManager, ManagerTables,
                                                               dict[str, Rows]]:
    s = (settings or AlertingSettings()).model_copy(update={"canary_grace_s": 120.0})
    return build_manager(tmp_path, CONFIG, s, deliverer)


def canary_pages(rec: Recorder) -> list[tuple[str, str]]:
    return [s for s in rec.sent("id") if s[1].startswith("canary@")]


def seen(start: float, end: float) -> CanarySeen:
    """The manager message for a canary-service window ``[start, end)``."""
    return CanarySeen(start=start, end=end)


async def test_canary_that_arrives_pages_nobody(tmp_path: Path) -> None:
    rec = Recorder()
    m, tables, _ = manager(tmp_path, rec)
    await m.handle(CanarySent(ts=1000.0), 1000.0)
    await m.handle(seen(1000.0, 1010.0), 1013.0)  # its closed 10 s window
    assert orjson.loads(tables.meta["canary"])["seen"] == 1010.0
    for now in (1100.0, 1200.0, 1500.0, 3000.0):
        await m.handle(Tick(), now)
    assert canary_pages(rec) == []


async def test_missing_canary_pages_deadman_receiver_once(tmp_path: Path) -> None:
    rec = Recorder()
    m, tables, _ = manager(tmp_path, rec)
    await m.handle(CanarySent(ts=1000.0), 1000.0)
    await m.handle(Tick(), 1119.0)  # within grace: not yet
    assert canary_pages(rec) == []
    for now in (1121.0, 1131.0, 1500.0):
        await m.handle(Tick(), now)
    assert canary_pages(rec) == [("dead/email:0", "canary@1000")]
    assert orjson.loads(tables.meta["canary"])["alarmed"] is True
    # the next canary re-arms the alarm: it comes back, so no second page
    await m.handle(CanarySent(ts=1600.0), 1600.0)
    await m.handle(seen(1600.0, 1610.0), 1612.0)
    await m.handle(Tick(), 1900.0)
    assert len(canary_pages(rec)) == 1
    # and a third that is lost pages again, once
    await m.handle(CanarySent(ts=2000.0), 2000.0)
    for now in (2121.0, 2200.0):
        await m.handle(Tick(), now)
    assert canary_pages(rec)[1:] == [("dead/email:0", "canary@2000")]


async def test_windows_that_cannot_prove_the_canary_do_not_count(tmp_path: Path) -> None:
    """An earlier canary's window, or a rollup flushed before its end (an idle partition),
    must not hide that the latest canary never came back."""
    rec = Recorder()
    m, _, _ = manager(tmp_path, rec)
    await m.handle(CanarySent(ts=1005.0), 1005.0)
    await m.handle(seen(990.0, 1000.0), 1006.0)  # the previous canary's window
    await m.handle(seen(960.0, 1020.0), 1007.0)  # a 60 s rollup flushed while still open
    await m.handle(Tick(), 1126.0)
    assert canary_pages(rec) == [("dead/email:0", "canary@1005")]


async def test_heartbeat_once_per_interval_with_recorder(tmp_path: Path) -> None:
    rec = Recorder()
    m, _, _ = manager(tmp_path, rec)
    for now in range(1000, 1000 + 3600, 10):
        await m.handle(Tick(), float(now))
    beats = [s for s in rec.sent("id") if s[1].startswith("deadman@")]
    assert beats == [("dead/email:0", "deadman@1000")]
    await m.handle(Tick(), 4600.0)
    assert [s for s in rec.sent("id") if s[1].startswith("deadman@")][-1][1] == "deadman@4600"


async def test_undeliverable_heartbeat_is_not_resent_each_tick(tmp_path: Path) -> None:
    """A real email channel to a port nobody listens on: every attempt fails, yet the
    heartbeat counts as sent for this interval (the failure is in notifications)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    s = AlertingSettings(smtp=SmtpSettings(port=closed, timeout_s=1.0),
                         retry=RetryPolicy(attempts=2, base_s=0.0, max_s=0.0, timeout_s=2.0))
    m, tables, sinks = manager(tmp_path, Deliverer(policy=s.retry), s)
    for now in (1000.0, 1010.0, 1020.0, 1030.0):
        await m.handle(Tick(), now)
    rows = sinks["notifications"].rows
    assert {r[1] for r in rows} == {"deadman@1000"}
    assert [r[7] for r in rows] == ["retry", "failed"]
    assert orjson.loads(tables.meta["deadman"]) == {"last": 1000.0}


async def test_a_canary_sent_before_the_previous_window_closed_still_counts(
        tmp_path: Path) -> None:
    """Canaries every few seconds: the next is sent before the previous one's window closes.
    Each closed window proves the canaries inside it; none of them pages."""
    rec = Recorder()
    m, tables, _ = manager(tmp_path, rec)
    await m.handle(CanarySent(ts=1000.0), 1000.0)
    await m.handle(CanarySent(ts=1012.0), 1012.0)
    await m.handle(seen(1000.0, 1010.0), 1013.0)  # proves 1000, not 1012
    await m.handle(CanarySent(ts=1024.0), 1024.0)
    await m.handle(seen(1010.0, 1020.0), 1025.0)  # proves 1012
    doc = orjson.loads(tables.meta["canary"])
    assert (doc["seen"], doc["seen_sent"]) == (1020.0, 1012.0)
    await m.handle(Tick(), 1140.0)  # 1024 is still within grace
    assert canary_pages(rec) == []
    await m.handle(Tick(), 1150.0)  # 1024 never came back
    assert canary_pages(rec) == [("dead/email:0", "canary@1024")]
