"""The alerting endpoints: reads from the stage's view, writes only as queued actions by the
token's principal, and the Slack / Twilio webhooks refuse forged or replayed requests; SMS
replies act only from known numbers with a one-time code the manager issued."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from alerting.config import AlertingSettings, SlackSettings, TwilioSettings, load_alerting
from alerting.inputs import Ack, Action, AddSilence, ExpireSilence, Resolve, SmsReply
from alerting.lifecycle import Alert, fingerprint
from alerting.replycodes import ReplyCode
from alerting.silences import Silence
from alerting.webhooks import sign_slack
from web.alerts import AlertsApi
from web.auth import POLICY_KEY, AuthPolicy, TokenStore

SECRET, TOKEN, HOOK = "slack-secret", "twilio-token", "https://example.test/api/twilio/sms"
LABELS = {"alertname": "HighErrorRate", "service": "checkout", "severity": "high"}
FP = fingerprint(LABELS)
ALICE_PHONE = "+15550100001"  # alice's phone in deploy/config/alerting.yaml
CODE = "QZ7K3F"  # a reply code the manager issued to alice's phone


class View:
    def __init__(self) -> None:
        now = time.time()
        self.items = [Alert(fingerprint=FP, rule="HighErrorRate", labels=LABELS,
                            starts_at=now, updated_at=now, trigger_ts=now)]
        self.sil = [Silence(id="s1", matchers=['service="checkout"'], starts_at=now - 10,
                            ends_at=now + 3600)]

    def alerts(self) -> list[Alert]:
        return self.items

    def silences(self) -> list[Silence]:
        return self.sil

    def find(self, ref: str) -> Alert | None:
        return next((a for a in self.items if ref in (a.fingerprint, a.code)), None)

    def reply_code(self, code: str) -> ReplyCode | None:
        now = time.time()
        rc = ReplyCode(code=CODE, fingerprint=FP, phones=[ALICE_PHONE], issued_at=now,
                       expires_at=now + 3600)
        return rc if code == CODE else None


class Client:
    """The test client, sending bob's responder token unless told otherwise."""

    def __init__(self, c: TestClient[Any, Any], token: str) -> None:
        self.c, self.token = c, token

    async def post(self, path: str, auth: bool = True, **kw: Any) -> Any:
        if auth:
            kw["headers"] = {"Authorization": f"Bearer {self.token}", **kw.get("headers", {})}
        return await self.c.post(path, **kw)

    async def delete(self, path: str) -> Any:
        return await self.c.delete(path, headers={"Authorization": f"Bearer {self.token}"})

    async def get(self, path: str) -> Any:
        return await self.c.get(path)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Client, list[Action]]]:
    published: list[Action] = []

    async def publish(doc: Action) -> None:
        published.append(doc)

    settings = AlertingSettings(slack=SlackSettings(signing_secret=SECRET),
                                twilio=TwilioSettings(auth_token=TOKEN, webhook_url=HOOK))
    cfg = load_alerting(settings.config_file)
    api = AlertsApi(view=View(), publish=publish, config=lambda: cfg, settings=settings)
    store = TokenStore(tmp_path / "tokens.json")
    token = store.create("bob", "responder")
    store.create("vic", "viewer")
    app = web.Application()
    app[POLICY_KEY] = AuthPolicy(store)
    api.register(app)
    async with TestClient(TestServer(app)) as c:
        yield Client(c, token), published


def slack_body(action: str, value: str) -> bytes:
    payload = {"type": "block_actions", "user": {"username": "alice"},
               "channel": {"id": "C0OPS"}, "container": {"message_ts": "1700000000.000001"},
               "actions": [{"action_id": action, "value": value}]}
    return urlencode({"payload": orjson.dumps(payload).decode()}).encode()


async def test_ack_is_queued_not_applied(setup: Any) -> None:
    client, published = setup
    r = await client.post(f"/api/alerts/{FP}/ack", json={})
    assert r.status == 202
    assert published == [Ack(ref=FP, by="bob", via="api")]
    assert (await client.post("/api/alerts/nope/resolve")).status == 404


async def test_acker_is_the_token_principal_not_the_body(setup: Any) -> None:
    client, published = setup
    r = await client.post(f"/api/alerts/{FP}/resolve", json={"by": "mallory"})
    assert r.status == 202 and (await r.json())["by"] == "bob"
    assert published == [Resolve(ref=FP, by="bob", via="api")]


async def test_writes_without_a_responder_token_are_refused(setup: Any) -> None:
    client, published = setup
    assert (await client.post(f"/api/alerts/{FP}/ack", auth=False)).status == 401
    r = await client.post(f"/api/alerts/{FP}/ack", auth=False,
                          headers={"Authorization": "Bearer lw_forged"})
    assert r.status == 401
    assert published == []


async def test_silence_creator_and_id_come_from_the_server(setup: Any) -> None:
    client, published = setup
    r = await client.post("/api/silences", json={
        "matchers": ['service="x"'], "duration": "1h", "created_by": "mallory",
        "id": "s-existing"})
    assert r.status == 201
    (add,) = published
    assert isinstance(add, AddSilence)
    assert add.silence.created_by == "bob" and add.silence.id != "s-existing"
    assert (await client.delete("/api/silences/s1")).status == 202
    assert published[-1] == ExpireSilence(id="s1", by="bob", via="api")


async def test_list_alerts_and_silences_with_what_they_suppress(setup: Any) -> None:
    client, _ = setup
    alerts = (await (await client.get("/api/alerts")).json())["alerts"]
    assert [a["fingerprint"] for a in alerts] == [FP]
    sil = (await (await client.get("/api/silences")).json())["silences"]
    assert sil[0]["suppressing"] == [FP]


async def test_new_silence_needs_an_end_and_valid_matchers(setup: Any) -> None:
    client, published = setup
    ok = await client.post("/api/silences", json={"matchers": ['service="x"'],
                                                   "duration": "2h"})
    assert ok.status == 201
    add = published[-1]
    assert isinstance(add, AddSilence)
    assert add.silence.ends_at is not None
    assert add.silence.ends_at - add.silence.starts_at == 7200
    assert (await client.post("/api/silences", json={"matchers": ['service="x"']})).status == 400
    assert (await client.post("/api/silences", json={"matchers": ["bad matcher"],
                                                      "duration": "1h"})).status == 400


async def test_oncall_at_a_time(setup: Any) -> None:
    client, _ = setup
    doc = await (await client.get("/api/oncall?at=2026-01-10T22:00:00Z")).json()
    assert doc["schedules"]["primary"] == ["carol"]  # weekend night layer
    assert (await client.get("/api/oncall?at=yesterday")).status == 400


async def test_slack_signed_action_is_queued(setup: Any) -> None:
    client, published = setup
    body, ts = slack_body("ack", FP), str(int(time.time()))
    r = await client.post("/api/slack/interactions", auth=False, data=body, headers={
        "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign_slack(body, ts, SECRET),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200
    assert published == [Ack(ref=FP, by="alice", via="slack", channel="C0OPS",
                             message_ts="1700000000.000001")]


async def test_slack_request_replayed_within_tolerance_is_refused(setup: Any) -> None:
    client, published = setup
    body, ts = slack_body("ack", FP), str(int(time.time()))
    headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign_slack(body, ts, SECRET)}
    first = await client.post("/api/slack/interactions", auth=False, data=body, headers=headers)
    again = await client.post("/api/slack/interactions", auth=False, data=body, headers=headers)
    assert (first.status, again.status) == (200, 401)
    assert (await again.json())["error"]["code"] == "replayed"
    assert len(published) == 1


@pytest.mark.parametrize("forge", ["wrong_secret", "replayed", "tampered", "unsigned"])
async def test_slack_forged_requests_are_refused(setup: Any, forge: str) -> None:
    client, published = setup
    body = slack_body("resolve", FP)
    ts = str(int(time.time()) - (600 if forge == "replayed" else 0))
    sig = sign_slack(body, ts, "other" if forge == "wrong_secret" else SECRET)
    if forge == "tampered":
        body = slack_body("resolve", "0" * 16)
    headers = {} if forge == "unsigned" else {"X-Slack-Request-Timestamp": ts,
                                              "X-Slack-Signature": sig}
    r = await client.post("/api/slack/interactions", auth=False, data=body, headers=headers)
    assert r.status == 401
    assert published == []


def sms(body: str, sid: str = "SM1", phone: str = ALICE_PHONE
        ) -> tuple[dict[str, str], dict[str, str]]:
    """An inbound SMS form and Twilio's signature headers for it."""
    form = {"From": phone, "Body": body, "To": "+15550000000", "MessageSid": sid}
    return form, {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(HOOK, form)}


async def test_twilio_signed_reply_acks_by_code_and_forged_is_refused(setup: Any) -> None:
    client, published = setup
    form, headers = sms(f"ack {CODE.lower()}")
    r = await client.post("/api/twilio/sms", auth=False, data=form, headers=headers)
    assert r.status == 200 and "Acknowledged" in await r.text()
    assert published == [SmsReply(kind="ack", code=CODE, phone=ALICE_PHONE, by="alice",
                                  message_sid="SM1")]
    bad = RequestValidator("wrong").compute_signature(HOOK, form)
    r = await client.post("/api/twilio/sms", auth=False, data=form,
                          headers={"X-Twilio-Signature": bad})
    assert r.status == 403
    assert len(published) == 1


async def test_sms_ack_from_an_unknown_number_is_refused(setup: Any) -> None:
    client, published = setup
    form, headers = sms(f"ACK {CODE}", phone="+15559999999")
    r = await client.post("/api/twilio/sms", auth=False, data=form, headers=headers)
    assert r.status == 200 and "not registered" in await r.text()
    assert published == []


async def test_sms_ack_with_the_derived_alert_code_is_refused(setup: Any) -> None:
    """The old codes were computed from the alert's labels; they no longer act."""
    client, published = setup
    form, headers = sms(f"ACK {View().items[0].code}")
    r = await client.post("/api/twilio/sms", auth=False, data=form, headers=headers)
    assert "unknown, used or expired" in await r.text()
    assert published == []


async def test_sms_ack_from_another_known_number_than_the_code_was_sent_to(setup: Any) -> None:
    client, published = setup
    form, headers = sms(f"ACK {CODE}", phone="+15550100002")  # bob's phone
    r = await client.post("/api/twilio/sms", auth=False, data=form, headers=headers)
    assert "unknown, used or expired" in await r.text()
    assert published == []


async def test_twilio_request_replayed_is_refused_by_message_sid(setup: Any) -> None:
    client, published = setup
    form, headers = sms(f"ACK {CODE}", sid="SMreplay")
    first = await client.post("/api/twilio/sms", auth=False, data=form, headers=headers)
    again = await client.post("/api/twilio/sms", auth=False, data=form, headers=headers)
    assert (first.status, again.status) == (200, 409)
    assert len(published) == 1
