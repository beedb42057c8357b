"""The alert manager against the real local SMTP server and Slack / Twilio peers when
delivery goes wrong: nothing undeliverable is dropped (notifications and resolves are
retried, a page that keeps failing hands over to the next step), a header-breaking route
neither raises nor stops other groups, log text cannot ping a Slack channel, and SMS reply
codes are random, one-time and valid only from the phone they were sent to."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import SecretStr

from alerting.agents.manage_alerts import AlertManager, ManagerTables
from alerting.config import AlertingSettings, SlackSettings, SmtpSettings, TwilioSettings
from alerting.inputs import SignalInput, SmsReply, Tick
from alerting.lifecycle import AlertState, Signal
from alerting.notifiers.base import Deliverer, Message, RetryPolicy
from alerting.notifiers.slack import SlackChannel
from alerting.outbox import OutboxItem, OutboxPolicy
from alerting.reload import ConfigHolder
from devstack.peers import Peer, free_port

pytestmark = pytest.mark.integration

LABELS = {"alertname": "Errors", "service": "pay", "severity": "critical"}
ALICE, BOB = "+15550100001", "+15550100002"


async def no_sleep(_s: float) -> None:
    return None


class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add_many(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows += rows


def build(tmp_path: Path, config: str, peer: Peer | None = None, smtp_port: int = 0,
          **settings: Any) -> AlertManager:
    """A manager on dict tables, its channels pointed at the local peers."""
    f = tmp_path / "alerting.yaml"
    f.write_text(config)
    s = AlertingSettings(
        config_file=f, smtp=SmtpSettings(port=smtp_port or free_port(), timeout_s=1.0),
        slack=SlackSettings(token=SecretStr("xoxb-t"),
                            base_url=peer.slack_url if peer else "http://127.0.0.1:9/api/",
                            timeout_s=2.0),
        twilio=TwilioSettings(account_sid="AC" + "1" * 32, auth_token=SecretStr("tw"),
                              from_number="+15550000000",
                              base_url=peer.twilio_url if peer else "http://127.0.0.1:9",
                              timeout_s=2.0),
        retry=RetryPolicy(attempts=1, base_s=0.0, max_s=0.0, timeout_s=2.0, open_after=100),
        outbox=OutboxPolicy(base_s=10.0, max_s=60.0, handoff_after=2), **settings)
    holder = ConfigHolder(s)
    assert holder.check(force=True)
    tables = ManagerTables(alerts={}, groups={}, escalations={}, silences={}, meta={})
    sinks = {"alerts": Rows(), "notifications": Rows(), "silences": Rows()}
    return AlertManager(holder, s, tables, sinks,
                        Deliverer(policy=s.retry, sleep=no_sleep, rng=random.Random(1)),
                        rng=random.Random(2))


def fire(status: Literal["firing", "resolved"] = "firing", **labels: str) -> SignalInput:
    lab = {**LABELS, **labels}
    return SignalInput(signal=Signal(status=status, rule=lab["alertname"], labels=lab,
                                     ts=1000.0, annotations={"summary": lab.get("summary", "")}))


def outbox(m: AlertManager) -> list[OutboxItem]:
    return [OutboxItem.model_validate_json(v) for v in m.t.outbox.values()]


def slack_texts(peer: Peer, to: str | None = None) -> list[str]:
    return [r["text"] for r in peer.received
            if r["channel"] == "slack" and (to is None or r["to"] == to)]


OPS = """
rules:
  - {name: Errors, kind: threshold, field: error_rate, value: 0.5, severity: critical}
route: {receiver: ops, group_by: [alertname, service], group_wait: 0s, group_interval: 5s,
        repeat_interval: 4h}
receivers:
  - {name: ops, channels: [{type: slack, to: C0OPS}]}
"""


async def test_notification_whose_channels_all_fail_is_retried_until_delivered(
        tmp_path: Path, peer: Peer) -> None:
    m = build(tmp_path, OPS, peer)
    peer.mode = "500"
    await m.handle(fire(), 1000.0)
    await m.handle(Tick(), 1001.0)
    assert slack_texts(peer) == [] and len(outbox(m)) == 1  # kept, not dropped for 4 h
    item = outbox(m)[0]
    assert 1001.0 + 5 <= item.next_at <= 1001.0 + 10
    await m.handle(Tick(), 1002.0)  # backing off: not retried yet
    assert len(peer.requests) == 1
    await m.handle(Tick(), 1020.0)  # still failing: the next wait is longer
    again = outbox(m)[0]
    assert again.failures == 2 and again.next_at >= 1020.0 + 10
    peer.mode = "ok"
    await m.handle(Tick(), 1100.0)
    assert slack_texts(peer) == ["[firing] Errors on pay"] and outbox(m) == []
    outcomes = [r[7] for r in m.writers["notifications"].rows]  # type: ignore[attr-defined]
    assert outcomes == ["failed", "failed", "sent"]


ESC = """
rules:
  - {name: Errors, kind: threshold, field: error_rate, value: 0.5, severity: critical}
route: {receiver: pager, group_wait: 0s}
receivers:
  - {name: pager, escalation: esc}
users:
  - {name: u0, email: u0@example.test, channels: [email]}
  - {name: u1, slack: C1, channels: [slack]}
escalation_policies:
  - name: esc
    steps:
      - {notify: [{kind: user, name: u0}], wait: 600s}
      - {notify: [{kind: user, name: u1}], wait: 600s}
"""


async def test_failed_resolve_is_retried_until_delivered(tmp_path: Path, peer: Peer) -> None:
    m = build(tmp_path, ESC.replace("u0, email: u0@example.test, channels: [email]",
                                    "u0, slack: C0, channels: [slack]"), peer)
    await m.handle(fire(), 1000.0)
    await m.handle(Tick(), 1001.0)
    assert slack_texts(peer, "C0") == ["[firing] Errors on pay"]
    peer.mode = "500"
    await m.handle(fire("resolved"), 1010.0)  # the resolve page fails ...
    assert [i.kind for i in outbox(m)] == ["resolved"]
    peer.mode = "ok"
    await m.handle(Tick(), 1100.0)  # ... and is retried: u0 hears it is over
    assert slack_texts(peer, "C0")[-1] == "[resolved] Errors on pay" and outbox(m) == []


async def test_page_that_keeps_failing_is_handed_to_the_next_escalation_step(
        tmp_path: Path, peer: Peer) -> None:
    m = build(tmp_path, ESC, peer)  # u0's mail server is down (nobody on its port)
    await m.handle(fire(), 1000.0)
    await m.handle(Tick(), 1001.0)
    for now in (1020.0, 1060.0, 1120.0):  # failures 2, 3 (> handoff_after 2): hand off
        await m.handle(Tick(), now)
    assert outbox(m)[0].handed_off
    await m.handle(Tick(), 1121.0)  # the next step is due now, not at 1600
    assert slack_texts(peer, "C1") == ["[firing] Errors on pay"]


async def test_newline_in_route_does_not_stop_the_tick_for_other_groups(
        tmp_path: Path, smtp_server: Any) -> None:
    port, handler = smtp_server
    config = """
rules:
  - {name: Slow, kind: threshold, field: p95, value: 1, severity: warning}
route: {receiver: ops, group_by: [alertname, route], group_wait: 0s}
receivers:
  - {name: ops, channels: [{type: email, to: ops@example.test}]}
"""
    m = build(tmp_path, config, smtp_port=port)
    evil = "GET /a\r\nBcc: evil@example.test"
    await m.handle(fire(alertname="Slow", route=evil, summary=f"slow {evil}"), 1000.0)
    await m.handle(fire(alertname="Slow", route="/b", summary="slow /b"), 1000.0)
    await m.handle(Tick(), 1001.0)
    subjects = sorted(str(mail["Subject"]) for mail in handler.mails)
    assert subjects == ["[FIRING][critical] slow /b",
                        "[FIRING][critical] slow GET /a Bcc: evil@example.test"]
    assert all(rcpt == ["ops@example.test"] for _, rcpt in handler.envelopes)
    assert m.errors == 0 and outbox(m) == []


async def test_log_text_cannot_mention_a_slack_channel_or_inject_links(peer: Peer) -> None:
    ch = SlackChannel("slack", SlackSettings(token=SecretStr("xoxb-t"),
                                             base_url=peer.slack_url), "C0")
    msg = Message(id="n1", title="<!channel> checkout down", fingerprint="0" * 16,
                  text="error: <!here> see <http://evil.test|the runbook> & retry",
                  fields={"route": "<@U0BOSS>"}, evidence=["GET /x <!channel>"])
    await ch.send(msg)
    _, body, _ = peer.requests[-1]
    blocks = body["blocks"] if isinstance(body["blocks"], list) else json.loads(body["blocks"])
    assert body["text"] == "[firing] &lt;!channel&gt; checkout down"
    # the header is plain_text: Slack shows it as typed, it mentions nobody
    flat = json.dumps([b for b in blocks if b["type"] != "header"])
    assert "<!channel>" not in flat and "<!here>" not in flat and "<http" not in flat
    assert "<@U0BOSS>" not in flat
    assert "&lt;http://evil.test|the runbook&gt; &amp; retry" in flat


SMS = """
rules:
  - {name: Errors, kind: threshold, field: error_rate, value: 0.5, severity: critical}
route: {receiver: pager, group_wait: 0s}
receivers:
  - {name: pager, escalation: esc}
users:
  - {name: alice, phone: "+15550100001", channels: [sms]}
  - {name: bob, phone: "+15550100002", channels: [sms]}
escalation_policies:
  - name: esc
    steps:
      - {notify: [{kind: user, name: alice}], wait: 600s}
"""


async def paged_code(m: AlertManager, peer: Peer) -> str:
    await m.handle(fire(), 1000.0)
    await m.handle(Tick(), 1001.0)
    (sms,) = [r for r in peer.received if r["channel"] == "sms"]
    assert sms["to"] == ALICE and "Reply ACK " in sms["text"]
    return str(sms["text"].rsplit(" ", 1)[1])


async def test_sms_ack_code_is_random_one_time_and_only_from_the_paged_phone(
        tmp_path: Path, peer: Peer) -> None:
    m = build(tmp_path, SMS, peer)
    code = await paged_code(m, peer)
    (alert,) = m.alerts()
    assert code != alert.code  # not derived from the labels
    await m.handle(SmsReply(kind="ack", code=code, phone=BOB, by="bob"), 1010.0)
    assert m.alerts()[0].state is AlertState.FIRING  # bob was not sent this code
    await m.handle(SmsReply(kind="ack", code=code, phone=ALICE, by="alice"), 1011.0)
    assert (m.alerts()[0].state, m.alerts()[0].acked_by) == (AlertState.ACKNOWLEDGED, "alice")
    await m.handle(SmsReply(kind="resolve", code=code, phone=ALICE, by="alice"), 1012.0)
    assert m.alerts()[0].state is AlertState.ACKNOWLEDGED  # spent: it works once


async def test_sms_ack_code_expires(tmp_path: Path, peer: Peer) -> None:
    m = build(tmp_path, SMS, peer, sms_code_ttl_s=300.0)
    code = await paged_code(m, peer)
    await m.handle(SmsReply(kind="ack", code=code, phone=ALICE, by="alice"), 1302.0)
    assert m.alerts()[0].state is AlertState.FIRING
