"""The alert manager over plain dict tables: dedup, grouping, escalation send-then-write,
ack stopping escalation, resolve telling everyone paged, rows for every change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from manager_kit import Recorder, Rows, build_manager

from alerting.agents.manage_alerts import AlertManager, decode
from alerting.lifecycle import AlertState, Signal

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


def fire(status: str = "firing") -> dict[str, Any]:
    sig = Signal(status=status, rule="Errors", ts=1000.0,  # type: ignore[arg-type]
                 labels={"alertname": "Errors", "service": "pay", "severity": "critical"})
    return {"type": "signal", "signal": sig.model_dump(mode="json")}


async def test_escalates_in_steps_and_ack_stops_it(tmp_path: Path) -> None:
    m, rec, sinks = manager(tmp_path)
    await m.handle(fire(), 1000)
    await m.handle(fire(), 1010)  # same episode: deduplicated
    assert len(sinks["alerts"].rows) == 1
    await m.handle({"type": "tick"}, 1011)
    assert rec.sent() == [("user:u0/slack", "firing")]
    await m.handle({"type": "tick"}, 1050)
    assert len(rec.sent()) == 1  # step 1 not due yet
    await m.handle({"type": "tick"}, 1072)
    assert rec.sent()[-1] == ("user:u1/slack", "firing")
    fp = next(iter(m.t.alerts))
    await m.handle({"type": "action", "kind": "ack", "ref": fp, "by": "bob"}, 1080)
    await m.handle({"type": "tick"}, 5000)
    assert len(rec.sent()) == 2  # acknowledged: no further pages
    assert m.alerts()[0].acked_by == "bob"


async def test_an_ack_as_the_api_publishes_it_acknowledges(tmp_path: Path) -> None:
    m, _, _ = manager(tmp_path)
    await m.handle(fire(), 1000)
    fp = next(iter(m.t.alerts))
    raw = orjson.dumps({"kind": "ack", "ref": fp, "by": "api", "via": "api"})  # AlertsApi.act
    assert decode(raw) is None  # no "type": not a message of the signals topic
    msg = decode(raw, "action")  # how the manager agent reads the alert-actions topic
    assert msg is not None
    await m.handle(msg, 1005)
    assert (m.alerts()[0].state, m.alerts()[0].acked_by) == (AlertState.ACKNOWLEDGED, "api")


async def test_resolve_tells_everyone_paged_once(tmp_path: Path) -> None:
    m, rec, _ = manager(tmp_path)
    await m.handle(fire(), 1000)
    await m.handle({"type": "tick"}, 1001)
    await m.handle({"type": "tick"}, 1062)
    await m.handle(fire("resolved"), 1070)
    await m.handle(fire("resolved"), 1080)
    assert sorted(x for x in rec.sent() if x[1] == "resolved") == [
        ("user:u0/slack", "resolved"), ("user:u1/slack", "resolved")]
    assert m.t.escalations == {}


async def test_a_silence_keeps_it_from_paging(tmp_path: Path) -> None:
    m, rec, sinks = manager(tmp_path)
    await m.handle({"type": "action", "kind": "silence", "silence": {
        "id": "s1", "matchers": ['service="pay"'], "starts_at": 0, "ends_at": 9999}}, 900)
    await m.handle(fire(), 1000)
    await m.handle({"type": "tick"}, 1001)
    assert rec.sent() == []
    assert sinks["alerts"].rows[0][14].startswith("silenced by s1")


async def test_page_is_resent_when_state_write_is_lost(tmp_path: Path) -> None:
    m, rec, _ = manager(tmp_path)
    await m.handle(fire(), 1000)
    await m.handle({"type": "tick"}, 1001)
    saved = dict(m.t.escalations)
    await m.handle({"type": "tick"}, 1062)  # step 1 sent, state written ...
    m.t.escalations.clear()
    m.t.escalations.update(saved)  # ... then lost in a crash: the restart re-sends once
    await m.handle({"type": "tick"}, 1063)
    await m.handle({"type": "tick"}, 1064)
    assert [x[0] for x in rec.sent()] == ["user:u0/slack", "user:u1/slack", "user:u1/slack"]
