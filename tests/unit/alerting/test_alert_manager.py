"""The alert manager over plain dict tables: dedup, grouping, escalation send-then-write,
ack stopping escalation, resolve telling everyone paged, rows for every change."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from manager_kit import Recorder, Rows, build_manager
from pydantic import ValidationError

from alerting.agents.manage_alerts import AlertManager
from alerting.inputs import Ack, AddSilence, SignalInput, Tick, decode_input, encode_input
from alerting.lifecycle import AlertState, Signal
from alerting.notifiers.base import Deliverer, Message
from alerting.silences import Silence

CONFIG = """
rules:
  - {name: Errors, kind: threshold, field: error_rate, value: 0.5, severity: critical}
route: {receiver: pager, group_by: [alertname, service], group_wait: 0s, group_interval: 5s}
receivers:
  - {name: pager, escalation: esc}
users:
  - {name: u0, slack: C0, channels: [slack]}
  - {name: u1, slack: C1, channels: [slack]}
escalation_policies:
  - name: esc
    steps:
      - {notify: [{kind: user, name: u0}], wait: 60s}
      - {notify: [{kind: user, name: u1}], wait: 60s}
"""


def manager(tmp_path: Path) -> tuple[AlertManager, Recorder, dict[str, Rows]]:
    rec = Recorder()
    m, _, sinks = build_manager(tmp_path, CONFIG, deliverer=rec)
    return m, rec, sinks


def fire(status: Literal["firing", "resolved"] = "firing") -> SignalInput:
    sig = Signal(status=status, rule="Errors", ts=1000.0,
                 labels={"alertname": "Errors", "service": "pay", "severity": "critical"})
    return SignalInput(signal=sig)


async def test_escalates_in_steps_and_ack_stops_it(tmp_path: Path) -> None:
    m, rec, sinks = manager(tmp_path)
    await m.handle(fire(), 1000)
    await m.handle(fire(), 1010)  # same episode: deduplicated
    assert len(sinks["alerts"].rows) == 1
    await m.handle(Tick(), 1011)
    assert rec.sent() == [("user:u0/slack", "firing")]
    await m.handle(Tick(), 1050)
    assert len(rec.sent()) == 1  # step 1 not due yet
    await m.handle(Tick(), 1072)
    assert rec.sent()[-1] == ("user:u1/slack", "firing")
    fp = next(iter(m.t.alerts))
    await m.handle(Ack(ref=fp, by="bob"), 1080)
    await m.handle(Tick(), 5000)
    assert len(rec.sent()) == 2  # acknowledged: no further pages
    assert m.alerts()[0].acked_by == "bob"


async def test_an_ack_as_the_api_publishes_it_acknowledges(tmp_path: Path) -> None:
    m, _, _ = manager(tmp_path)
    await m.handle(fire(), 1000)
    fp = next(iter(m.t.alerts))
    raw = encode_input(Ack(ref=fp, by="alice", via="api"))  # what AlertsApi.act publishes
    await m.handle(decode_input(raw), 1005)  # as the manager agent reads the actions topic
    assert (m.alerts()[0].state, m.alerts()[0].acked_by) == (AlertState.ACKNOWLEDGED, "alice")


@pytest.mark.parametrize("raw", [
    b"not json", b"[1, 2]", b'{"kind": "ack", "ref": "x", "by": "y"}',  # untyped (old format)
    b'{"type": "nope"}', b'{"type": "ack", "ref": "x"}',  # no principal
    b'{"type": "canary_sent", "ts": "soon"}', b'{"type": "tick", "extra": 1}'])
def test_bad_manager_input_is_refused_at_the_boundary(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        decode_input(raw)


async def test_resolve_tells_everyone_paged_once(tmp_path: Path) -> None:
    m, rec, _ = manager(tmp_path)
    await m.handle(fire(), 1000)
    await m.handle(Tick(), 1001)
    await m.handle(Tick(), 1062)
    await m.handle(fire("resolved"), 1070)
    await m.handle(fire("resolved"), 1080)
    assert sorted(x for x in rec.sent() if x[1] == "resolved") == [
        ("user:u0/slack", "resolved"), ("user:u1/slack", "resolved")]
    assert m.t.escalations == {}


async def test_a_silence_keeps_it_from_paging(tmp_path: Path) -> None:
    m, rec, sinks = manager(tmp_path)
    await m.handle(AddSilence(silence=Silence(id="s1", matchers=['service="pay"'],
                                              starts_at=0, ends_at=9999)), 900)
    await m.handle(fire(), 1000)
    await m.handle(Tick(), 1001)
    assert rec.sent() == []
    assert sinks["alerts"].rows[0][14].startswith("silenced by s1")


async def test_page_is_resent_when_state_write_is_lost(tmp_path: Path) -> None:
    m, rec, _ = manager(tmp_path)
    await m.handle(fire(), 1000)
    await m.handle(Tick(), 1001)
    saved = dict(m.t.escalations)
    await m.handle(Tick(), 1062)  # step 1 sent, state written ...
    m.t.escalations.clear()
    m.t.escalations.update(saved)  # ... then lost in a crash: the restart re-sends once
    await m.handle(Tick(), 1063)
    await m.handle(Tick(), 1064)
    assert [x[0] for x in rec.sent()] == ["user:u0/slack", "user:u1/slack", "user:u1/slack"]


async def test_one_group_failing_does_not_stop_the_tick_for_the_others(tmp_path: Path) -> None:
    config = CONFIG.replace("receivers:\n  - {name: pager, escalation: esc}",
                            "receivers:\n  - {name: pager, channels: [{type: slack, to: C0}]}")
    rec = Recorder()
    m, _, _ = build_manager(tmp_path, config, deliverer=rec)
    m.t.groups["a-broken-group"] = b'{"not": "a group"}'  # sorts first: flushed first
    await m.handle(fire(), 1000)
    await m.handle(Tick(), 1001)
    assert rec.sent() == [("pager/slack:0", "firing")]
    assert m.errors == 1


async def test_a_channel_that_raises_a_bug_fails_over_to_the_next() -> None:
    class Broken:
        name, kind = "broken", "email"

        async def send(self, msg: Message) -> str:
            raise ValueError("Header values may not contain linefeed")

    class Works:
        name, kind = "works", "slack"

        async def send(self, msg: Message) -> str:
            return "ok"

    d = await Deliverer().deliver(Message(id="n", title="t"), [Broken(), Works()])
    assert d.delivered_via == "works"
    assert [(r.channel, r.outcome) for r in d.records] == [("broken", "failed"),
                                                           ("works", "sent")]
