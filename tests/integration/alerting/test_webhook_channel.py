"""The outgoing-webhook channel against a local HTTP receiver that verifies its signature:
signed JSON arrives, a 5xx is retried with the same Idempotency-Key, a wrong secret is
refused by the receiver (a 4xx: failed, not retried), and the channel is configurable as a
receiver in the alerting file."""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from ports import port_in_range
from pydantic import SecretStr

from alerting.config import AlertingSettings, WebhookSettings, load_alerting
from alerting.messages import receiver_chain
from alerting.notifiers.base import Deliverer, Message, RetryPolicy
from alerting.notifiers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    verify_signature,
)

pytestmark = pytest.mark.integration
SECRET = "whsec-test"
MSG = Message(id="n-42", fingerprint="0123456789abcdef", code="AERUMV", severity="high",
              title="checkout: error rate 12.0%", text="errors above 5% for 3 min",
              fields={"service": "checkout"}, evidence=["GET /cart 500 timeout"],
              trigger_ts=1.0)


class Receiver:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.fail_first = 1

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify_signature(body, request.headers.get(TIMESTAMP_HEADER),
                              request.headers.get(SIGNATURE_HEADER), SECRET, time.time())
        self.got.append({"ok": ok, "key": request.headers.get("Idempotency-Key"),
                         "type": request.content_type, "doc": json.loads(body)})
        if not ok:
            return web.json_response({"error": "bad signature"}, status=401)
        if self.fail_first:
            self.fail_first -= 1
            return web.Response(status=502)
        return web.json_response({"ok": True})


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, Receiver]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = port_in_range()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", rec
    finally:
        await runner.cleanup()


async def no_sleep(_s: float) -> None:
    return None


async def test_signed_json_verified_and_retried_with_one_key(hook: tuple[str, Receiver]
                                                            ) -> None:
    url, rec = hook
    ch = WebhookChannel("ops/webhook:0", WebhookSettings(secret=SecretStr(SECRET)), url)
    d = Deliverer(policy=RetryPolicy(attempts=3, timeout_s=5), sleep=no_sleep,
                  rng=random.Random(1))
    res = await d.deliver(MSG, [ch])
    assert res.delivered_via == "ops/webhook:0"
    assert [r.outcome for r in res.records] == ["retry", "sent"]
    assert res.records[-1].provider_id == "http 200"
    assert [(g["ok"], g["key"], g["type"]) for g in rec.got] == [
        (True, "n-42", "application/json")] * 2
    doc = rec.got[-1]["doc"]
    assert doc["schema"] == "logwarden.webhook.v1" and doc["status"] == "firing"
    assert doc["fingerprint"] == MSG.fingerprint and doc["evidence"] == MSG.evidence

    forged = WebhookChannel("x", WebhookSettings(secret=SecretStr("wrong")), url)
    res = await d.deliver(MSG, [forged])
    assert res.delivered_via is None
    assert [r.outcome for r in res.records] == ["failed"]  # 401: permanent, no retry
    assert "401" in res.records[0].error and rec.got[-1]["ok"] is False


def test_a_receiver_can_use_the_webhook_channel(tmp_path: Any) -> None:
    src = tmp_path / "alerting.yaml"
    src.write_text("route: {receiver: hooks}\nreceivers:\n  - name: hooks\n    channels:\n"
                   "      - {type: webhook, to: 'https://hooks.example/lw'}\n")
    cfg = load_alerting(src)
    (ch,) = receiver_chain(cfg.receiver("hooks"), AlertingSettings())
    assert isinstance(ch, WebhookChannel) and ch.url == "https://hooks.example/lw"
