"""A running worker: a new error fires a rule whose runbook has a webhook step; the action
reaches a local HTTP endpoint once, signed, the notification goes out through the webhook
channel, and both the live API and the ``actions`` table show the outcome."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import start_worker  # type: ignore[import-not-found]

from alerting.notifiers.webhook import verify_signature
from schemas import topics
from sdk import Publisher

pytestmark = pytest.mark.e2e
SECRET = "e2e-webhook-secret"


def port_in_range() -> int:
    """A free loopback port in 17500-17599 (this suite's range on the shared machine)."""
    for p in range(17500, 17600):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    raise RuntimeError("no free port in 17500-17599")


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.append({"path": self.path, "doc": json.loads(body),
                         "key": self.headers.get("Idempotency-Key"),
                         "ok": verify_signature(body, self.headers.get("X-Logwarden-Timestamp"),
                                                self.headers.get("X-Logwarden-Signature"),
                                                SECRET, time.time())})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            return None

    port = port_in_range()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, got
    finally:
        server.shutdown()
        server.server_close()


def test_a_firing_rule_runs_its_runbook_webhook_once(
        kafka_bootstrap: str, tmp_path: Path,
        receiver: tuple[int, list[dict[str, Any]]]) -> None:
    port, got = receiver
    suffix = uuid.uuid4().hex[:6]
    service = f"ledger-{suffix}"
    cfg = tmp_path / "alerting.yaml"
    cfg.write_text(f"""
rules:
  - name: NewError
    kind: template
    events: [new]
    levels: [ERROR]
    service: "ledger-{suffix}"
    severity: high
    annotations: {{summary: "{{service}}: new error"}}
    runbook:
      url: https://runbooks.example/new-error
      steps:
        - name: capture
          webhook: {{url: "http://127.0.0.1:{port}/action", body: {{service: "{{service}}"}}}}
route: {{receiver: hooks, group_wait: 0s}}
receivers:
  - name: hooks
    channels: [{{type: webhook, to: "http://127.0.0.1:{port}/notify"}}]
""")
    w = start_worker(kafka_bootstrap, tmp_path / "data", f"rb-{suffix}",
                     LOGWARDEN_ALERTING_CONFIG_FILE=str(cfg),
                     LOGWARDEN_ALERTING_WEBHOOK=json.dumps({"secret": SECRET}),
                     LOGWARDEN_ALERTING_CANARY_INTERVAL_S="0",
                     LOGWARDEN_ALERTING_EVALUATION_INTERVAL_S="2")
    try:
        now_ms = int(time.time() * 1000)
        pub = Publisher(kafka_bootstrap, service=service)
        pub.publish(topics.LOGS, {"ts": now_ms - 7_200_000, "service": service,
                                  "level": "INFO", "message": "ledger worker started"},
                    key=service)
        for i in range(3):
            pub.publish(topics.LOGS, {"ts": now_ms + i, "service": service, "level": "ERROR",
                                      "message": f"ledger shard {i} refused the write"},
                        key=service)
        pub.close(30)

        def notes() -> list[dict[str, Any]]:
            # this rule's: the worker reads the shared logs topic from its start, so earlier
            # tests' traffic (the demo's brute force) can page its security rules here too
            return [g for g in got if g["path"] == "/notify"
                    and "alertname=NewError" in g["doc"]["id"]]

        w.wait_for(lambda: any(g["path"] == "/action" for g in got) and bool(notes()),
                   timeout=180, what="the runbook webhook and the notification")

        def actions() -> list[dict[str, Any]]:
            return list(json.loads(w.get("/api/actions"))["items"])

        w.wait_for(lambda: [a["outcome"] for a in actions()] == ["succeeded"], timeout=60,
                   what="the action's outcome")
        (action,) = actions()
        assert action["step"] == "capture" and action["kind"] == "webhook"
        hook = [g for g in got if g["path"] == "/action"]
        assert len(hook) == 1 and hook[0]["ok"] and hook[0]["key"] == action["id"]
        assert hook[0]["doc"]["service"] == service
        note = notes()[0]
        assert note["ok"] and note["doc"]["schema"] == "logwarden.webhook.v1"
        assert note["doc"]["fields"]["runbook"] == "https://runbooks.example/new-error"
        w.wait_for(lambda: [r[0] for r in w.query(
            "SELECT outcome FROM logwarden.actions FINAL WHERE action_id = {a:String} "
            "ORDER BY version", a=action["id"])] == ["running", "succeeded"], timeout=60,
            what="the actions rows")
    finally:
        w.stop()
