"""From the alert manager to the runbook topic: a trigger when an alert with an automated
runbook starts a firing episode, none on a refresh, none when silenced, a new one for a new
episode; and the runbook link in the alert's messages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from manager_kit import build_manager

from alerting.actions import RunbookTrigger, decode_runbook_input
from alerting.agents.runbooks import RunbookStage
from alerting.evaluate import on_window
from alerting.inputs import AddSilence, SignalInput
from alerting.lifecycle import Signal, apply_signal
from alerting.messages import alert_message
from alerting.rules import RuleSet
from alerting.silences import Silence
from schemas.windows import WindowStats

CONFIG = """
rules:
  - name: Errors
    kind: threshold
    field: error_rate
    value: 0.5
    runbook:
      url: https://wiki.example/errors
      steps:
        - {name: pause, webhook: {url: "https://deployer.example/pause"}}
  - name: Slow
    kind: threshold
    field: p95
    value: 800
    runbook: {url: https://wiki.example/slow}
route: {receiver: ops, group_wait: 0s}
receivers: [{name: ops, channels: [{type: email, to: ops@example.test}]}]
"""


class Topic:
    """Records what the stage sends (the Faust topic's ``send``)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes, int]] = []

    async def send(self, key: bytes, value: bytes, partition: int) -> None:
        self.sent.append((key, value, partition))


def signal(rule: str, status: str = "firing", service: str = "pay") -> SignalInput:
    return SignalInput(signal=Signal(status=status, rule=rule, ts=1000.0,
                                     labels={"alertname": rule, "service": service},
                                     annotations={"runbook_url": "https://wiki.example/x"}))


async def test_a_trigger_per_firing_episode_of_an_automated_runbook(tmp_path: Path) -> None:
    m, _, _ = build_manager(tmp_path, CONFIG)
    topic = Topic()
    stage = RunbookStage(runner=None, topic=topic, holder=m.holder)  # type: ignore[arg-type]
    m.on_firing = stage.on_firing
    await m.handle(signal("Errors"), 1000)
    await m.handle(signal("Errors"), 1010)  # still firing: a refresh
    await m.handle(signal("Slow"), 1010)  # a runbook with a link only: nothing to run
    await m.handle(signal("Errors", "resolved"), 1100)
    await m.handle(signal("Errors"), 2000)  # a new episode
    msgs: list[Any] = [decode_runbook_input(v) for _, v, _ in topic.sent]
    assert [type(x) for x in msgs] == [RunbookTrigger, RunbookTrigger]
    assert [x.episode for x in msgs] == [1000.0, 2000.0]
    assert msgs[0].labels == {"alertname": "Errors", "service": "pay"}
    assert {p for _, _, p in topic.sent} == {0} and msgs[0].key != msgs[1].key


async def test_alerts_inside_one_incident_share_its_actions(tmp_path: Path) -> None:
    m, _, _ = build_manager(tmp_path, CONFIG)
    topic = Topic()
    stage = RunbookStage(runner=None, topic=topic, holder=m.holder)  # type: ignore[arg-type]
    seen: list[tuple[str, int]] = []

    def incident_of(service: str, ts_ms: int) -> str | None:
        seen.append((service, ts_ms))
        return "inc-1" if service in ("pay", "db") else None

    stage.incident_of = incident_of
    m.on_firing = stage.on_firing
    for service in ("pay", "db", "web"):
        await m.handle(signal("Errors", service=service), 1000)
    msgs: list[Any] = [decode_runbook_input(v) for _, v, _ in topic.sent]
    assert seen == [("pay", 1_000_000), ("db", 1_000_000), ("web", 1_000_000)]  # event ms
    assert [x.incident_id for x in msgs] == ["inc-1", "inc-1", ""]
    # the action ids derive from the key: one set of actions for the incident
    assert msgs[0].key == msgs[1].key == "inc-1" and msgs[2].key != "inc-1"


async def test_a_silenced_alert_starts_no_action(tmp_path: Path) -> None:
    m, _, _ = build_manager(tmp_path, CONFIG)
    topic = Topic()
    m.on_firing = RunbookStage(None, topic, m.holder).on_firing  # type: ignore[arg-type]
    await m.handle(AddSilence(silence=Silence(id="s1", matchers=['service="pay"'],
                                              starts_at=0, ends_at=9999)), 900)
    await m.handle(signal("Errors"), 1000)
    assert topic.sent == []


def test_the_runbook_link_is_in_the_alerts_messages() -> None:
    rs = RuleSet.model_validate({"rules": [{
        "name": "Err", "kind": "threshold", "field": "error_rate", "value": 0.1,
        "runbook": {"url": "https://wiki.example/err", "steps": [{"name": "look"}]}}]})
    t0 = 1_700_000_040.0
    w = WindowStats(series="api", service="api", scope="service", window_s=60,
                    start=datetime.fromtimestamp(t0, tz=UTC),
                    end=datetime.fromtimestamp(t0 + 60, tz=UTC), count=100, error_rate=0.5)
    _, (sig,) = on_window(rs, None, w, t0 + 60)
    assert sig.annotations["runbook_url"] == "https://wiki.example/err"
    a = apply_signal(None, sig, t0 + 60)
    assert a is not None
    assert alert_message(a, "n1").fields["runbook"] == "https://wiki.example/err"
