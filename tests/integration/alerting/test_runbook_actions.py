"""A runbook webhook action end to end on real components: the trigger and the approval
travel through a real Kafka topic, approval is asked in Slack (the local Slack peer) and
given with the API over HTTP, the webhook reaches a local HTTP endpoint that checks its
signature, a 503 is retried with the same Idempotency-Key, the outcome lands in chDB, and a
redelivery of every message (a new consumer group re-reading the topic) runs nothing again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer
from ports import port_in_range
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from alerting.actions import (
    ActionRunner,
    Approve,
    RunbookInput,
    RunbookTrigger,
    decode_runbook_input,
    encode_runbook_input,
)
from alerting.agents.runbooks import slack_approval
from alerting.config import (
    AlertingConfig,
    AlertingSettings,
    RunbookSettings,
    SlackSettings,
    WebhookSettings,
)
from alerting.notifiers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from alerting.yamlfile import parse_yaml_model
from audit.chain import verify
from audit.trail import AuditTrail, audit_rows, read_anchors
from devstack.peers import Peer
from sinks.clickhouse import rows
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.queries import actions as actions_q
from sinks.clickhouse.queries.base import Page
from sinks.clickhouse.settings import ClickHouseSettings
from streams.topics import ensure_topics
from web.actions import ActionsApi
from web.alerts import AlertsApi
from web.auth import POLICY_KEY, AuthPolicy, TokenStore

pytestmark = pytest.mark.integration
SECRET = "hook-secret"
SIGNING = "slack-signing"


class Receiver:
    """The remediation service: checks signatures, acts once per Idempotency-Key."""

    def __init__(self, fail_first: int = 1) -> None:
        self.requests: list[dict[str, Any]] = []
        self.effects: list[dict[str, Any]] = []
        self.fail_first = fail_first

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify_signature(body, request.headers.get(TIMESTAMP_HEADER),
                              request.headers.get(SIGNATURE_HEADER), SECRET, time.time())
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append({"ok": ok, "key": key, "body": json.loads(body)})
        if not ok:
            return web.Response(status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        if key not in {e["key"] for e in self.effects}:
            self.effects.append({"key": key, "body": json.loads(body)})
        return web.json_response({"paused": True})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Receiver]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/pause", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = port_in_range()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/pause", rec
    finally:
        await runner.cleanup()


def config(url: str) -> AlertingConfig:
    text = f"""
rules:
  - name: Errors
    kind: threshold
    field: error_rate
    value: 0.1
    runbook:
      url: https://wiki.example/errors
      approval_channel: C0APPROVE
      steps:
        - name: look
          text: "Check {{service}}"
        - name: pause-deploys
          webhook: {{url: "{url}", body: {{service: "{{service}}", reason: "runbook"}}}}
          approval: true
          timeout: 20s
route: {{receiver: ops}}
receivers: [{{name: ops, channels: [{{type: email, to: ops@example.test}}]}}]
"""
    return parse_yaml_model(text, AlertingConfig, source="alerting.yaml")


class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add_many(self, batch: list[tuple[Any, ...]]) -> None:
        self.rows.extend(batch)


async def consume(bootstrap: str, topic: str, group: str, runner: ActionRunner,
                  done: Callable[[], bool], timeout_s: float = 60.0) -> int:
    """Feed the topic to the runner until ``done()`` and the topic is drained."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": True})
    c.subscribe([topic])
    handled, idle, deadline = 0, 0, time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            m = await asyncio.to_thread(c.poll, 0.5)
            if m is None or m.error():
                idle += 1
                if done() and idle >= 4:
                    return handled
                continue
            idle = 0
            await runner.handle(decode_runbook_input(m.value() or b""), time.time())
            handled += 1
        raise AssertionError(f"{topic}: condition not met within {timeout_s} s")
    finally:
        c.close()

AUDIT_KEY = b"audit-key-for-tests-0123456789abcdef"


async def test_webhook_action_with_approval_runs_once_across_redelivery(
        kafka_bootstrap: str, chdb_store: Client, peer: Peer, tmp_path: Path,
        receiver: tuple[str, Receiver]) -> None:
    url, rec = receiver
    topic = f"lw-test-runbooks-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, {topic: 1})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    async def send(msg: RunbookInput) -> None:
        producer.produce(topic, encode_runbook_input(msg), key=msg.type.encode())
        producer.flush(10)

    cfg = config(url)
    settings = AlertingSettings(slack=SlackSettings(token=SecretStr("xoxb-t"),
                                                    base_url=peer.slack_url,
                                                    signing_secret=SecretStr(SIGNING)),
                                webhook=WebhookSettings(secret=SecretStr(SECRET)))
    table: dict[str, bytes] = {}  # the runner's changelog table (restored on restart)
    sink = Rows()
    db = ClickHouseSettings(database=f"lw_{uuid.uuid4().hex[:10]}")
    migrate(chdb_store, db)
    trail = AuditTrail(chdb_store, db.database, "worker", AUDIT_KEY, tmp_path)
    runner = ActionRunner(lambda: cfg, RunbookSettings(), settings.webhook, table, sink,
                          on_approval=slack_approval(settings), audit=trail)
    trigger = RunbookTrigger(rule="Errors", labels={"alertname": "Errors",
                                                    "service": "checkout"},
                             fingerprint="0123456789abcdef", episode=1_700_000_000.0)

    # 1. the alert fires: the action waits for approval, asked in Slack
    await send(trigger)
    await consume(kafka_bootstrap, topic, "g1", runner, lambda: bool(runner.actions()))
    (waiting,) = runner.actions()
    assert waiting.status == "awaiting_approval" and rec.requests == []
    method, posted, _ = peer.requests[-1]
    assert method == "chat.postMessage" and posted["channel"] == "C0APPROVE"
    assert waiting.id in json.dumps(posted["blocks"]) and "action_approve" in str(posted)

    # 2. a responder approves through the API (a responder token; who is the token's name)
    tokens = TokenStore(tmp_path / "tokens.json")
    alice = tokens.create("alice", "responder")
    viewer = tokens.create("vic", "viewer")
    app = web.Application()
    app[POLICY_KEY] = AuthPolicy(tokens)
    actions_api = ActionsApi(runner, send)
    AlertsApi(view=NoAlerts(), publish=no_publish, config=lambda: cfg, settings=settings,
              actions=actions_api).register(app)
    async with TestClient(TestServer(app)) as client:
        refused = await client.post(f"/api/actions/{waiting.id}/approve",
                                    headers={"Authorization": f"Bearer {viewer}"})
        assert refused.status == 403
        r = await client.post(f"/api/actions/{waiting.id}/approve",
                              headers={"Authorization": f"Bearer {alice}"})
        assert r.status == 202 and (await r.json())["by"] == "alice"
        await consume(kafka_bootstrap, topic, "g1", runner,
                      lambda: runner.get(waiting.id).status == "succeeded")  # type: ignore[union-attr]
        # a Slack click on the old approval message, after the fact: queued, changes nothing
        body = urlencode({"payload": json.dumps({
            "type": "block_actions", "user": {"id": "U2", "username": "bob"},
            "actions": [{"action_id": "action_approve", "value": waiting.id}]})}).encode()
        ts = str(int(time.time()))
        sig = SignatureVerifier(SIGNING).generate_signature(timestamp=ts, body=body)
        r = await client.post("/api/slack/interactions", data=body, headers={
            "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig or "",
            "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 200
        listed = await (await client.get("/api/actions")).json()
        conflict = await client.post(f"/api/actions/{waiting.id}/reject",
                                     headers={"Authorization": f"Bearer {alice}"})
        assert conflict.status == 409

    done = runner.get(waiting.id)
    assert done is not None and done.status == "succeeded" and done.by == "alice"
    assert listed["items"][0]["outcome"] == "succeeded"
    # the receiver saw a signed request, a 503, and the retry with the same key: one effect
    assert [r["ok"] for r in rec.requests] == [True, True]
    assert {r["key"] for r in rec.requests} == {waiting.id}
    assert len(rec.effects) == 1
    sent = rec.effects[0]["body"]
    assert sent["service"] == "checkout" and sent["approved_by"] == "alice"
    assert sent["action_id"] == waiting.id and sent["schema"] == "logwarden.action.v1"

    # 3. redelivery: the trigger and the approval again, then a restarted runner (same
    # table, as Faust restores it) re-reads the whole topic in a new consumer group
    await send(trigger)
    await send(Approve(action_id=waiting.id, by="alice"))
    restarted = ActionRunner(lambda: cfg, RunbookSettings(), settings.webhook, table, sink)
    handled = await consume(kafka_bootstrap, topic, "g2", restarted, lambda: True)
    assert handled == 5  # trigger, approve, Slack approve, trigger, approve
    assert len(rec.requests) == 2 and len(rec.effects) == 1  # nothing ran again
    assert restarted.counts["ran"] == 0

    # 4. the outcome is on the actions table the incident timeline reads, and every state
    # change of the action is on the hash-chained audit trail
    audited = audit_rows(chdb_store, db.database)
    assert [(r["action"], r["target"], r["actor"]) for r in audited] == [
        ("runbook.awaiting_approval", waiting.id, "system"),
        ("runbook.running", waiting.id, "alice"),
        ("runbook.succeeded", waiting.id, "alice")]
    assert verify(audited, AUDIT_KEY, read_anchors(tmp_path)).ok
    chdb_store.insert("actions", sink.rows, database=db.database,
                      column_names=list(rows.ACTION_COLUMNS))
    history = actions_q.action_history(chdb_store, db.database, alert_key=trigger.key)
    assert [(h["step"], h["kind"], h["outcome"], h["by"]) for h in history] == [
        ("pause-deploys", "webhook", "awaiting_approval", ""),
        ("pause-deploys", "webhook", "running", "alice"),
        ("pause-deploys", "webhook", "succeeded", "alice")]
    current = actions_q.actions(chdb_store, db.database, Page(10))["items"]
    assert [(a["action_id"], a["outcome"]) for a in current] == [(waiting.id, "succeeded")]


class NoAlerts:
    def alerts(self) -> list[Any]:
        return []

    def silences(self) -> list[Any]:
        return []

    def find(self, ref: str) -> None:
        return None

    def reply_code(self, code: str) -> None:
        return None


async def no_publish(action: Any) -> None:
    raise AssertionError("no alert action expected")


