"""The dead-man's canary on a real worker: the canary log goes round the pipeline and is
seen by the manager (no page), and the hourly heartbeat to an unreachable receiver is sent
once, not again at every tick. Then the rules file is edited under the running worker: a
bad edit is refused (file, line, field in the log), a good one applied without a restart."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Worker, free_port, start_worker  # type: ignore[import-not-found]

from devstack.peers import PeerThread

pytestmark = pytest.mark.e2e

CONFIG = """
rules:
  - {name: Errors, kind: threshold, field: error_rate, value: 0.5, severity: critical}
route: {receiver: ops, group_wait: 0s}
receivers:
  - name: ops
    channels: [{type: slack, to: C0OPS}]
  - name: dead
    channels: [{type: email, to: dead@example.test}]
deadman: {receiver: dead, interval: 1h}
"""


@pytest.fixture(scope="module")
def setup(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Worker, Path, PeerThread]]:
    tmp = tmp_path_factory.mktemp("canary")
    cfg = tmp / "alerting.yaml"
    cfg.write_text(CONFIG)
    closed = free_port()  # nothing listens: the heartbeat's email cannot be delivered
    with PeerThread() as peers:
        env = {**peers.alerting_env(),
               "LOGWARDEN_ALERTING_SMTP": f'{{"host": "127.0.0.1", "port": {closed}}}',
               "LOGWARDEN_ALERTING_RETRY": '{"attempts": 2, "base_s": 0.1, "max_s": 0.2, '
                                           '"timeout_s": 2}',
               "LOGWARDEN_ALERTING_CONFIG_FILE": str(cfg),
               "LOGWARDEN_ALERTING_EVALUATION_INTERVAL_S": "1",
               "LOGWARDEN_ALERTING_RELOAD_CHECK_S": "1",
               "LOGWARDEN_ALERTING_CANARY_INTERVAL_S": "5",
               "LOGWARDEN_ALERTING_CANARY_GRACE_S": "40"}
        w = start_worker(kafka_bootstrap, tmp / "w", f"e2e-{uuid.uuid4().hex[:8]}", **env)
        try:
            yield w, cfg, peers
        finally:
            w.stop()


def test_canary_round_trip_and_heartbeat_once(setup: tuple[Worker, Path, PeerThread]) -> None:
    w, _, peers = setup
    w.wait_for(lambda: "canary_seen" in w.log.read_text(), timeout=120,
               what="the canary's window reaching the manager")
    heartbeats = ("SELECT uniqExact(message_id), count() FROM logwarden.notifications "
                  "WHERE message_id LIKE 'deadman@%'")
    w.wait_for(lambda: w.query(heartbeats)[0][1] >= 2, timeout=60,
               what="the heartbeat's failed attempts")
    time.sleep(15)  # fifteen more ticks: a heartbeat re-sent per tick would show
    (distinct, attempts), = w.query(heartbeats)
    assert distinct == 1, f"heartbeat re-sent {distinct} times"
    assert attempts == 2  # one delivery, its two attempts, both failed
    pages = w.query("SELECT count() FROM logwarden.notifications "
                    "WHERE message_id LIKE 'canary@%'")
    assert pages == [[0]]
    log = w.log.read_text()
    assert "canary_missing" not in log
    assert log.count("canary_seen") >= 2  # every canary comes back, not just the first
    assert not [r for r in peers.received() if "canary" in r["text"]]


def events(w: Worker, name: str) -> list[dict[str, Any]]:
    """The worker's JSON log lines for one event."""
    out = []
    for line in w.log.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == name:
            out.append(doc)
    return out


def test_rules_reload_on_running_worker(setup: tuple[Worker, Path, PeerThread]) -> None:
    w, cfg, _ = setup
    w.wait_for(lambda: bool(events(w, "alerting_config_loaded")), what="the first load")
    cfg.write_text(CONFIG.replace("severity: critical", "severity: loud"))
    w.wait_for(lambda: bool(events(w, "alerting_config_refused")), timeout=30,
               what="the bad edit refused")
    (refused,) = events(w, "alerting_config_refused")
    assert refused["error"].startswith(f"{cfg}:3: rules.0.severity")
    assert refused["kept"] == "last good"
    cfg.write_text(CONFIG.replace("name: Errors", "name: Errs"))
    w.wait_for(lambda: events(w, "alerting_config_loaded")[-1]["version"] == 2, timeout=30,
               what="the good edit applied")
    assert events(w, "alerting_config_loaded")[-1]["rules"] == 1
    assert w.proc.poll() is None  # applied by the running worker, no restart
