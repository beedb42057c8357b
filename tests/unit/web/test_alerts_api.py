"""The alerting endpoints: reads from the stage's view, writes only as queued actions, and the
Slack / Twilio webhooks refuse forged or replayed requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from alerting.config import AlertingSettings, SlackSettings, TwilioSettings, load_alerting
from alerting.lifecycle import Alert, fingerprint
from alerting.silences import Silence
from alerting.webhooks import sign_slack
from web.alerts import AlertsApi

SECRET, TOKEN, HOOK = "slack-secret", "twilio-token", "https://example.test/api/twilio/sms"
LABELS = {"alertname": "HighErrorRate", "service": "checkout", "severity": "high"}
FP = fingerprint(LABELS)


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


@pytest.fixture
async def setup() -> AsyncIterator[tuple[TestClient[Any, Any], list[dict[str, Any]]]]:
    published: list[dict[str, Any]] = []

    async def publish(doc: dict[str, Any]) -> None:
        published.append(doc)

    settings = AlertingSettings(slack=SlackSettings(signing_secret=SECRET),
                                twilio=TwilioSettings(auth_token=TOKEN, webhook_url=HOOK))
    cfg = load_alerting(settings.config_file)
    api = AlertsApi(view=View(), publish=publish, config=lambda: cfg, settings=settings)
    app = web.Application()
    api.register(app)
    async with TestClient(TestServer(app)) as c:
        yield c, published


def slack_body(action: str, value: str) -> bytes:
    payload = {"type": "block_actions", "user": {"username": "alice"},
               "channel": {"id": "C0OPS"}, "container": {"message_ts": "1700000000.000001"},
               "actions": [{"action_id": action, "value": value}]}
    return urlencode({"payload": orjson.dumps(payload).decode()}).encode()


async def test_ack_is_queued_not_applied(setup: Any) -> None:
    client, published = setup
    r = await client.post(f"/api/alerts/{FP}/ack", json={"by": "bob"})
    assert r.status == 202
    assert published == [{"kind": "ack", "ref": FP, "by": "bob", "via": "api"}]
    assert (await client.post("/api/alerts/nope/resolve")).status == 404


async def test_list_alerts_and_silences_with_what_they_suppress(setup: Any) -> None:
    client, _ = setup
    alerts = (await (await client.get("/api/alerts")).json())["alerts"]
    assert [a["fingerprint"] for a in alerts] == [FP]
    sil = (await (await client.get("/api/silences")).json())["silences"]
    assert sil[0]["suppressing"] == [FP]


async def test_new_silence_needs_an_end_and_valid_matchers(setup: Any) -> None:
    client, published = setup
    ok = await client.post("/api/silences", json={"matchers": ['service="x"'],
                                                   "duration": "2h", "created_by": "bob"})
    assert ok.status == 201
    assert published[-1]["kind"] == "silence"
    assert published[-1]["silence"]["ends_at"] - published[-1]["silence"]["starts_at"] == 7200
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
    r = await client.post("/api/slack/interactions", data=body, headers={
        "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign_slack(body, ts, SECRET),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200
    assert published[-1]["kind"] == "ack" and published[-1]["by"] == "alice"
    assert published[-1]["channel"] == "C0OPS"


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
    r = await client.post("/api/slack/interactions", data=body, headers=headers)
    assert r.status == 401
    assert published == []


async def test_twilio_signed_reply_acks_by_code_and_forged_is_refused(setup: Any) -> None:
    client, published = setup
    code = View().items[0].code
    form = {"From": "+15550100001", "Body": f"ack {code}", "To": "+15550000000"}
    good = RequestValidator(TOKEN).compute_signature(HOOK, form)
    r = await client.post("/api/twilio/sms", data=form, headers={"X-Twilio-Signature": good})
    assert r.status == 200 and "Acknowledged" in await r.text()
    assert published[-1]["ref"] == FP and published[-1]["via"] == "sms"
    bad = RequestValidator("wrong").compute_signature(HOOK, form)
    r = await client.post("/api/twilio/sms", data=form, headers={"X-Twilio-Signature": bad})
    assert r.status == 403
    assert len(published) == 1
