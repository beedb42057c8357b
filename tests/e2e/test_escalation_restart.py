"""kill -9 the worker in the middle of an escalation: after a restart the escalation goes on
at the right step, no page is lost and at most one is sent twice (changelog tables)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer
from conftest import Worker, start_worker  # type: ignore[import-not-found]

from devstack.peers import PeerThread
from schemas import topics

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CONFIG = """
rules:
  - name: Errors
    kind: threshold
    select: {{scope: service, service: "{service}", window: 10s}}
    field: error_rate
    op: ">"
    value: 0.5
    min_count: 3
    severity: critical
    annotations: {{summary: "{{service}} errors {{value:.0%}}"}}
route:
  receiver: nobody
  group_by: [alertname, service]
  group_wait: 0s
  group_interval: 5s
  routes:
    # only this test's service pages: other workers of the session share the signal topics
    - {{matchers: ['service="{service}"'], receiver: pager}}
receivers:
  - {{name: nobody, channels: [{{type: email, to: nobody@example.test}}]}}
  - {{name: pager, escalation: esc}}
users:
  - {{name: u0, slack: C0U0, channels: [slack]}}
  - {{name: u1, slack: C0U1, channels: [slack]}}
  - {{name: u2, slack: C0U2, channels: [slack]}}
escalation_policies:
  - name: esc
    steps:
      - {{notify: [{{kind: user, name: u0}}], wait: {wait}s}}
      - {{notify: [{{kind: user, name: u1}}], wait: {wait}s}}
      - {{notify: [{{kind: user, name: u2}}], wait: 1h}}
"""


def produce_errors(bootstrap: str, service: str, seconds: float) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    end = time.time() + seconds
    while time.time() < end:
        now_ms = int(time.time() * 1000)
        doc = (f'{{"ts": {now_ms}, "service": "{service}", "level": "ERROR", '
               f'"message": "payment failed", "event_id": "{uuid.uuid4().hex}"}}')
        p.produce(topics.LOGS, doc.encode(), key=service)
        p.poll(0)
        time.sleep(0.1)
    p.flush(10)


def pages(peers: PeerThread) -> Counter[str]:
    """Escalation pages per user (resolve notices to whoever was paged are not pages)."""
    return Counter(r["to"] for r in peers.received()
                   if r["channel"] == "slack" and r["text"].startswith("[firing]"))


def test_escalation_survives_kill_9(kafka_bootstrap: str, tmp_path: Path) -> None:
    service = f"esc-{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "alerting.yaml"
    cfg.write_text(CONFIG.format(service=service, wait=25))
    app_id = f"e2e-esc-{uuid.uuid4().hex[:8]}"
    with PeerThread() as peers:
        env = {**peers.alerting_env(), "LOGWARDEN_ALERTING_CONFIG_FILE": str(cfg),
               "LOGWARDEN_ALERTING_EVALUATION_INTERVAL_S": "1",
               "LOGWARDEN_ALERTING_CANARY_INTERVAL_S": "0"}
        w: Worker = start_worker(kafka_bootstrap, tmp_path / "w", app_id, **env)
        # the errors keep coming while we watch, so step 0's page is seen as it happens
        errors = threading.Thread(target=produce_errors, args=(kafka_bootstrap, service, 25))
        errors.start()
        try:
            w.wait_for(lambda: pages(peers)["C0U0"] >= 1, timeout=120, what="step 0 page")
            first = next(r["at"] for r in peers.received() if r["to"] == "C0U0")
            time.sleep(max(0.0, first + 4 - time.time()))  # mid-escalation: step 1 due in ~20 s
            assert pages(peers)["C0U1"] == 0
            w.proc.kill()  # kill -9
            w.proc.wait(30)
        finally:
            errors.join()
            w.stop()
        w2 = start_worker(kafka_bootstrap, tmp_path / "w", app_id, **env)
        try:
            # a condition: the bound only matters when it fails (a loaded machine restores the
            # alerting tables slowly)
            try:
                w2.wait_for(lambda: pages(peers)["C0U2"] >= 1, timeout=420, what="step 2 page")
            except AssertionError as e:  # say what was sent (a resolve ends the escalation)
                sent = [(r["to"], r["text"][:60]) for r in peers.received()]
                raise AssertionError(f"{e}\nsent: {sent}") from None
            time.sleep(5)  # any late duplicate would show up now
        finally:
            w2.stop()
    got = pages(peers)
    order = [r["to"] for r in peers.received()
             if r["channel"] == "slack" and r["text"].startswith("[firing]")]
    assert got["C0U1"] >= 1 and got["C0U2"] >= 1, got  # no page lost
    assert sum(got.values()) - 3 <= 1, got  # at most one duplicate
    assert order.index("C0U1") < order.index("C0U2")  # in step order
    t1 = next(r["at"] for r in peers.received() if r["to"] == "C0U1")
    assert t1 - first >= 15  # step 1 waited for its turn (not paged at restart blindly early)
