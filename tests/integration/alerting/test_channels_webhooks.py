"""Signed Slack interactions and Twilio inbound SMS over real HTTP on loopback, valid, forged
and replayed; a verified Slack click updates the posted message through chat.update."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from peers_fixtures import Peer, free_port
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator

from alerting.config import SlackSettings
from alerting.inputs import Ack
from alerting.notifiers.base import Message
from alerting.notifiers.slack import SlackChannel
from alerting.webhooks import (
    SLACK_TOLERANCE_S,
    ReplayGuard,
    SmsCommand,
    parse_slack_action,
    parse_sms_reply,
    sign_slack,
    verify_slack,
    verify_twilio,
)

pytestmark = pytest.mark.integration

SIGNING = "slack-signing-secret"
TW_TOKEN = "twilio-auth-token"


@pytest.fixture
async def hooks(peer: Peer) -> AsyncIterator[tuple[str, list[Ack | SmsCommand]]]:
    """A tiny endpoint doing what web/alerts.py does: verify, refuse replays, parse, act
    (update the message)."""
    actions: list[Ack | SmsCommand] = []
    replays = ReplayGuard()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    slack = SlackChannel("slack", SlackSettings(token=SecretStr("xoxb-t"),
                                                base_url=peer.slack_url), "C0")

    async def slack_hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_slack(body, request.headers.get("X-Slack-Request-Timestamp"),
                            request.headers.get("X-Slack-Signature"), SIGNING, time.time()):
            return web.Response(status=401)
        ts = float(request.headers["X-Slack-Request-Timestamp"])
        if not replays.first_time(request.headers["X-Slack-Signature"],
                                  ts + SLACK_TOLERANCE_S, time.time()):
            return web.Response(status=401)
        act = parse_slack_action(body)
        if not isinstance(act, Ack):
            return web.Response(status=400)
        actions.append(act)
        msg = Message(id="n1", fingerprint=act.ref, status="acknowledged", title="acked")
        await slack.update(f"{act.channel}:{act.message_ts}", msg, f"acknowledged by {act.by}")
        return web.Response(status=200)

    async def sms_hook(request: web.Request) -> web.Response:
        params = {k: str(v) for k, v in (await request.post()).items()}
        if not verify_twilio(f"{base}/hooks/sms", params,
                             request.headers.get("X-Twilio-Signature"), TW_TOKEN):
            return web.Response(status=403)
        if not replays.first_time(params["MessageSid"], time.time() + 86400, time.time()):
            return web.Response(status=409)
        act = parse_sms_reply(params)
        if act is not None:
            actions.append(act)
        return web.Response(text="<Response/>", content_type="text/xml")

    app = web.Application()
    app.router.add_post("/hooks/slack", slack_hook)
    app.router.add_post("/hooks/sms", sms_hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield base, actions
    finally:
        await runner.cleanup()


def slack_body(action_id: str = "ack") -> bytes:
    payload = {"type": "block_actions", "user": {"id": "U1", "username": "alice"},
               "container": {"message_ts": "1700000000.000001", "channel_id": "C0"},
               "channel": {"id": "C0"},
               "actions": [{"action_id": action_id, "value": "0123456789abcdef"}]}
    return urlencode({"payload": json.dumps(payload)}).encode()


async def test_signed_slack_click_acks_and_updates_message(
        hooks: tuple[str, list[Ack | SmsCommand]], peer: Peer) -> None:
    base, actions = hooks
    body, ts = slack_body(), str(int(time.time()))
    sig = sign_slack(body, ts, SIGNING)
    assert SignatureVerifier(SIGNING).is_valid(body, ts, sig)  # same as Slack's own check
    headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig,
               "Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{base}/hooks/slack", data=body, headers=headers)
        assert r.status == 200
        forged = {**headers, "X-Slack-Signature": sign_slack(body, ts, "wrong-secret")}
        assert (await s.post(f"{base}/hooks/slack", data=body, headers=forged)).status == 401
        tampered = slack_body("resolve")
        assert (await s.post(f"{base}/hooks/slack", data=tampered,
                             headers=headers)).status == 401
        old = str(int(time.time()) - 600)
        replay = {**headers, "X-Slack-Request-Timestamp": old,
                  "X-Slack-Signature": sign_slack(body, old, SIGNING)}
        assert (await s.post(f"{base}/hooks/slack", data=body, headers=replay)).status == 401
        # the same signed request again, well within the 5 min tolerance
        assert (await s.post(f"{base}/hooks/slack", data=body, headers=headers)).status == 401
    assert actions == [Ack(ref="0123456789abcdef", by="alice", via="slack",
                           channel="C0", message_ts="1700000000.000001")]
    method, sent, _ = peer.requests[-1]
    assert method == "chat.update" and sent["ts"] == "1700000000.000001"
    assert "acknowledged by alice" in json.dumps(sent)


async def test_twilio_reply_ack_with_valid_and_forged_signature(
        hooks: tuple[str, list[Ack | SmsCommand]]) -> None:
    base, actions = hooks
    params = {"From": "+15550100001", "To": "+15550000000", "Body": "ack aerumv",
              "MessageSid": "SM1", "AccountSid": "AC1"}
    good = RequestValidator(TW_TOKEN).compute_signature(f"{base}/hooks/sms", params)
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{base}/hooks/sms", data=params, headers={"X-Twilio-Signature": good})
        assert r.status == 200
        bad = RequestValidator("other-token").compute_signature(f"{base}/hooks/sms", params)
        r = await s.post(f"{base}/hooks/sms", data=params, headers={"X-Twilio-Signature": bad})
        assert r.status == 403
        r = await s.post(f"{base}/hooks/sms", data={**params, "Body": "ACK ZZZZZZ"},
                         headers={"X-Twilio-Signature": good})
        assert r.status == 403  # body changed after signing
        r = await s.post(f"{base}/hooks/sms", data=params, headers={"X-Twilio-Signature": good})
        assert r.status == 409  # the same MessageSid again: a replay
    assert actions == [SmsCommand(kind="ack", code="AERUMV", phone="+15550100001",
                                  message_sid="SM1")]
