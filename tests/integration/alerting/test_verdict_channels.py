"""Verdicts where people work, over real HTTP on loopback, published to a real Kafka topic
and fed to the false-alert budget on chDB: a Slack button signed as slack-sdk signs, an SMS
reply signed as twilio's RequestValidator signs, an e-mail sent through the real SMTP path
whose signed link is opened (a confirmation page) and then posted, and the alerts page's
POST /api/verdicts with a responder token."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer
from ports import port_in_range
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator

from alerting.config import (
    AlertingSettings,
    SlackSettings,
    SmtpSettings,
    TwilioSettings,
    load_alerting,
)
from alerting.lifecycle import Alert, Evidence, fingerprint
from alerting.messages import alert_message, email_links
from alerting.notifiers.email import EmailChannel
from detectors.alert_budget import Verdict, steer
from detectors.settings import BudgetSettings
from devstack.peers import MailHandler
from schemas.changes import Feedback
from sinks.clickhouse import rows
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.queries.quality import verdict_history
from sinks.clickhouse.settings import ClickHouseSettings
from streams.topics import ensure_topics
from web.alerts import AlertsApi
from web.auth import POLICY_KEY, AuthPolicy, TokenStore
from web.verdicts import VerdictsApi

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
SIGNING, TW_TOKEN, LINK_SECRET = "slack-signing", "twilio-token", "verdict-link-secret"
ALICE_PHONE = "+15550100001"  # alice's phone in deploy/config/alerting.yaml
NOW = time.time()
ALERTS = [Alert(fingerprint=fingerprint({"alertname": "Anomaly", "service": s}), rule="Anomaly",
                labels={"alertname": "Anomaly", "service": s, "severity": "high"},
                starts_at=NOW - 600, updated_at=NOW - 600, trigger_ts=NOW - 600,
                evidence=Evidence(anomaly_id=f"x-{s}"))
          for s in ("checkout", "payments", "search")]


class View:
    def alerts(self) -> list[Alert]:
        return ALERTS

    def silences(self) -> list[Any]:
        return []

    def find(self, ref: str) -> Alert | None:
        return next((a for a in ALERTS if ref in (a.fingerprint, a.code)), None)

    def reply_code(self, code: str) -> None:
        return None


async def no_actions(action: Any) -> None:
    raise AssertionError("a verdict is no alert action")


@pytest.fixture
async def server(kafka_bootstrap: str, tmp_path: Path
                 ) -> AsyncIterator[tuple[str, AlertingSettings, str, str]]:
    """The worker's alerting endpoints with verdicts published to a fresh feedback topic."""
    topic = f"lw-test-feedback-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, {topic: 1})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    port = port_in_range()
    base = f"http://127.0.0.1:{port}"
    settings = AlertingSettings(
        slack=SlackSettings(signing_secret=SecretStr(SIGNING)),
        twilio=TwilioSettings(auth_token=SecretStr(TW_TOKEN),
                              webhook_url=f"{base}/api/twilio/sms"),
        verdict_secret=SecretStr(LINK_SECRET), public_url=base)

    def publish(fb: Feedback) -> None:
        producer.produce(topic, fb.model_dump_json().encode(), key=fb.target_id.encode())
        producer.flush(10)

    cfg = load_alerting(REPO / "deploy/config/alerting.yaml")
    tokens = TokenStore(tmp_path / "tokens.json")
    carol = tokens.create("carol", "responder")
    app = web.Application()
    app[POLICY_KEY] = AuthPolicy(tokens)
    AlertsApi(view=View(), publish=no_actions, config=lambda: cfg, settings=settings,
              verdicts=VerdictsApi(settings, publish)).register(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield base, settings, topic, carol
    finally:
        await runner.cleanup()


def feedback_on(bootstrap: str, topic: str, n: int, timeout_s: float = 60.0
                ) -> list[Feedback]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out: list[Feedback] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append(Feedback.model_validate_json(m.value() or b""))
    finally:
        c.close()
    return out


async def test_verdicts_from_slack_sms_email_and_page_feed_the_budget(
        server: tuple[str, AlertingSettings, str, str], kafka_bootstrap: str,
        smtp_server: tuple[int, MailHandler], chdb_store: Client) -> None:
    base, settings, topic, carol = server
    checkout, payments, search = ALERTS
    async with aiohttp.ClientSession() as http:
        # Slack: bob presses "Useful" on the checkout alert
        body = urlencode({"payload": json.dumps({
            "type": "block_actions", "user": {"id": "U0BOB", "username": "bob"},
            "actions": [{"action_id": "verdict_useful",
                         "value": f"alert:{checkout.fingerprint}"}]})}).encode()
        ts = str(int(time.time()))
        sig = SignatureVerifier(SIGNING).generate_signature(timestamp=ts, body=body) or ""
        headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig,
                   "Content-Type": "application/x-www-form-urlencoded"}
        r = await http.post(f"{base}/api/slack/interactions", data=body, headers=headers)
        assert r.status == 200
        forged = {**headers, "X-Slack-Signature": "v0=" + "0" * 64}
        r = await http.post(f"{base}/api/slack/interactions", data=body, headers=forged)
        assert r.status == 401

        # SMS: alice replies "FALSE <code>" about the payments alert
        form = {"From": ALICE_PHONE, "To": "+15550000000", "MessageSid": "SM-v1",
                "Body": f"false {payments.code}", "AccountSid": "AC1"}
        url = f"{base}/api/twilio/sms"
        good = RequestValidator(TW_TOKEN).compute_signature(url, form)
        r = await http.post(url, data=form, headers={"X-Twilio-Signature": good})
        assert r.status == 200 and "Recorded: false alarm" in await r.text()
        stranger = {**form, "From": "+15559999999", "MessageSid": "SM-v2"}
        sig2 = RequestValidator(TW_TOKEN).compute_signature(url, stranger)
        r = await http.post(url, data=stranger, headers={"X-Twilio-Signature": sig2})
        assert "not registered" in await r.text()

        # E-mail: the page for the checkout alert, through SMTP, with signed links
        port, handler = smtp_server
        ch = EmailChannel("ops/email:0", SmtpSettings(port=port), ["ops@example.test"],
                          links=email_links(settings))
        await ch.send(alert_message(checkout, "n-1"))
        text = next(bytes(p.get_payload(decode=True)).decode()
                    for p in handler.mails[0].walk() if p.get_content_type() == "text/plain")
        link = re.search(r"Useful: (\S+)", text)
        assert link is not None and link.group(1).startswith(f"{base}/verdicts/")
        page = await http.get(link.group(1))  # a mail scanner or a person opening it
        assert page.status == 200 and "Record: Useful" in await page.text()
        tampered = link.group(1)[:-3] + ("AAA" if not link.group(1).endswith("AAA") else "BBB")
        assert (await http.post(tampered)).status == 403
        done = await http.post(link.group(1))
        assert done.status == 200 and "Recorded" in await done.text()

        # The alerts page: carol marks the search alert a false alarm
        r = await http.post(f"{base}/api/verdicts", json={
            "kind": "alert", "target": search.fingerprint, "verdict": "false_alarm",
            "via": "page"}, headers={"Authorization": f"Bearer {carol}"})
        assert r.status == 202 and (await r.json())["by"] == "carol"
        r = await http.post(f"{base}/api/verdicts", json={
            "kind": "alert", "target": search.fingerprint, "verdict": "false_alarm"})
        assert r.status == 401

    got = await asyncio.to_thread(feedback_on, kafka_bootstrap, topic, 4)
    assert sorted((f.target_id, f.verdict, f.user, f.attrs["via"]) for f in got) == sorted([
        (checkout.fingerprint, "true", "bob", "slack"),
        (payments.fingerprint, "false", "alice", "sms"),
        (checkout.fingerprint, "true", "ops@example.test", "email"),
        (search.fingerprint, "false", "carol", "page")])
    assert all(f.target_kind == "alert" for f in got)

    # The feedback rows (as ingest writes them) reach the false-alert budget through the
    # anomaly each alert was fired by.
    db = ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:10]}")
    migrate(chdb_store, db)
    old = int((NOW - 600) * 1000)
    chdb_store.insert("anomalies", [[a.evidence.anomaly_id, old, a.labels["service"],
                                     a.labels["service"], "series", "champion"]
                                    for a in ALERTS], database=db.database,
                      column_names=["event_id", "ts", "series", "service", "detector",
                                    "variant"])
    chdb_store.insert("alerts", [[old, a.fingerprint, a.rule, "firing",
                                  json.dumps({"anomaly_id": a.evidence.anomaly_id}), 1,
                                  f"{a.fingerprint}-1"] for a in ALERTS],
                      database=db.database, column_names=[
                          "ts", "fingerprint", "rule", "state", "evidence", "version",
                          "event_id"])
    chdb_store.insert("feedback", [rows.feedback_row(f, f.event_id or "") for f in got],
                      database=db.database, column_names=list(rows.FEEDBACK_COLUMNS))
    history = verdict_history(chdb_store, db.database, 100)
    assert sorted(h["verdict"] for h in history) == ["false", "false", "true"]
    state = steer([Verdict(int(h["ts_ms"]), h["detector"], h["variant"], h["verdict"])
                   for h in history], BudgetSettings())[("series", "champion")]
    assert (state.judged, state.false) == (3, 2) and state.offset > 0
