"""Email, Slack and SMS against real protocol peers on loopback, with outages and failover."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from peers_fixtures import Peer, free_port
from pydantic import SecretStr

from alerting.config import SlackSettings, SmtpSettings, TwilioSettings
from alerting.notifiers.base import Channel, Deliverer, Message, RetryPolicy
from alerting.notifiers.email import EmailChannel
from alerting.notifiers.slack import SlackChannel
from alerting.notifiers.sms import SmsChannel

pytestmark = pytest.mark.integration

SECRET = "xoxb-secret-token-123"
MSG = Message(id="n1", fingerprint="0123456789abcdef", code="AERUMV", reply_code="QZ7K3F",
              severity="high",
              title="checkout: error rate 12.0%", text="errors above 5% for 3 min",
              fields={"service": "checkout"}, evidence=["GET /cart 500 timeout"],
              trigger_ts=1.0)


def slack_settings(peer: Peer, timeout: float = 2.0) -> SlackSettings:
    return SlackSettings(token=SecretStr(SECRET), base_url=peer.slack_url, timeout_s=timeout)


def twilio_settings(peer: Peer) -> TwilioSettings:
    return TwilioSettings(account_sid="AC" + "1" * 32, auth_token=SecretStr("tw-token"),
                          from_number="+15550000000", base_url=peer.twilio_url, timeout_s=2.0)


async def no_sleep(_s: float) -> None:
    return None


def deliverer(**kw: Any) -> Deliverer:
    return Deliverer(policy=RetryPolicy(**{"attempts": 3, "timeout_s": 1.5, **kw}),
                     sleep=no_sleep, rng=random.Random(1))


async def test_email_html_and_text_reach_smtp_server(smtp_server: Any) -> None:
    port, handler = smtp_server
    ch = EmailChannel("mail", SmtpSettings(port=port, sender="lw@test"), ["ops@example.test"])
    res = await deliverer().deliver(MSG, [ch])
    assert res.delivered_via == "mail"
    mail = handler.mails[0]
    assert handler.envelopes[0] == ("lw@test", ["ops@example.test"])
    assert mail["Subject"] == "[FIRING][high] checkout: error rate 12.0%"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk()
             if not p.is_multipart()}
    assert "AERUMV" in parts["text/plain"] and "GET /cart 500 timeout" in parts["text/plain"]
    assert "<h2" in parts["text/html"] and "checkout: error rate 12.0%" in parts["text/html"]
    assert res.records[0].outcome == "sent" and res.records[0].delay_s is not None


async def test_slack_post_then_update(peer: Peer) -> None:
    ch = SlackChannel("slack", slack_settings(peer), "C0OPS")
    pid = await ch.send(MSG)
    assert pid == "C0OPS:1700000000.000001"
    method, body, headers = peer.requests[0]
    assert method == "chat.postMessage" and headers["Authorization"] == f"Bearer {SECRET}"
    blocks = body["blocks"] if isinstance(body["blocks"], list) else json.loads(body["blocks"])
    actions = next(b for b in blocks if b["type"] == "actions")["elements"]
    assert [a["action_id"] for a in actions] == ["ack", "resolve", "silence"]
    assert all(a["value"] == MSG.fingerprint for a in actions)
    await ch.update(pid, MSG.model_copy(update={"status": "acknowledged"}), "acked by alice")
    method, body, _ = peer.requests[1]
    blocks = body["blocks"] if isinstance(body["blocks"], list) else json.loads(body["blocks"])
    assert method == "chat.update" and body["ts"] == "1700000000.000001"
    # ack / resolve / silence gone once acknowledged; the verdict buttons stay
    assert [b.get("block_id") for b in blocks if b["type"] == "actions"] == ["verdict_actions"]
    assert "acked by alice" in str(blocks)


async def test_sms_via_twilio_messages_endpoint(peer: Peer) -> None:
    ch = SmsChannel("sms", twilio_settings(peer), "+15550100001")
    res = await deliverer().deliver(MSG, [ch])
    assert res.delivered_via == "sms" and res.records[0].provider_id.startswith("SM")
    _, form, headers = peer.requests[0]
    assert form["To"] == "+15550100001" and form["From"] == "+15550000000"
    assert form["Body"].endswith("Reply ACK QZ7K3F") and len(form["Body"]) <= 160
    assert headers["Authorization"].startswith("Basic ")


async def test_slack_500s_are_retried_then_succeed(peer: Peer) -> None:
    peer.fail_first = 2
    res = await deliverer().deliver(MSG, [SlackChannel("slack", slack_settings(peer), "C0")])
    assert [r.outcome for r in res.records] == ["retry", "retry", "sent"]
    assert res.delivered_via == "slack"


async def test_slack_down_fails_over_to_email(smtp_server: Any) -> None:
    port, handler = smtp_server
    dead = SlackSettings(token=SecretStr(SECRET),
                         base_url=f"http://127.0.0.1:{free_port()}/api/", timeout_s=1)
    chain: list[Channel] = [SlackChannel("slack", dead, "C0"),
             EmailChannel("mail", SmtpSettings(port=port), ["ops@example.test"])]
    res = await deliverer().deliver(MSG, chain)
    assert [(r.channel, r.outcome) for r in res.records] == [
        ("slack", "retry"), ("slack", "retry"), ("slack", "failed"), ("mail", "sent")]
    assert res.delivered_via == "mail" and len(handler.mails) == 1
    assert all(SECRET not in r.error for r in res.records)


async def test_slow_peer_times_out_then_fails_over_to_sms(peer: Peer) -> None:
    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # accept the request, never answer
        await asyncio.sleep(10)

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    slow = SlackSettings(token=SecretStr(SECRET), base_url=f"http://127.0.0.1:{port}/api/",
                         timeout_s=10)
    chain: list[Channel] = [SlackChannel("slack", slow, "C0"),
             SmsChannel("sms", twilio_settings(peer), "+15550100001")]
    async with server:
        res = await deliverer(attempts=2, timeout_s=0.5).deliver(MSG, chain)
    assert [(r.channel, r.outcome) for r in res.records] == [
        ("slack", "retry"), ("slack", "failed"), ("sms", "sent")]
    assert "TimeoutError" in res.records[0].error and res.records[0].latency_ms >= 450


async def test_client_errors_are_not_retried(peer: Peer) -> None:
    peer.mode = "400"
    res = await deliverer().deliver(MSG, [SmsChannel("sms", twilio_settings(peer), "+1")])
    assert [r.outcome for r in res.records] == ["failed"] and "400" in res.records[0].error
    res = await deliverer().deliver(MSG, [SlackChannel("s", slack_settings(peer), "C0")])
    assert [r.outcome for r in res.records] == ["failed"]
    assert "channel_not_found" in res.records[0].error


async def test_channel_that_keeps_failing_is_skipped(peer: Peer, smtp_server: Any) -> None:
    port, _ = smtp_server
    peer.mode = "500"
    d = deliverer(attempts=1, open_after=2)
    chain: list[Channel] = [SlackChannel("slack", slack_settings(peer), "C0"),
             EmailChannel("mail", SmtpSettings(port=port), ["ops@example.test"])]
    for _ in range(2):
        await d.deliver(MSG, chain)
    n = len(peer.requests)
    res = await d.deliver(MSG, chain)
    assert len(peer.requests) == n  # Slack not even tried
    assert [(r.channel, r.outcome) for r in res.records] == [("slack", "skipped"),
                                                             ("mail", "sent")]
