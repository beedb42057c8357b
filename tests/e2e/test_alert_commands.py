"""The alerting commands a responder runs by hand, against real peers and a real worker:
``logwarden alert test-receiver`` delivers through the receiver's channels, and
``logwarden rules test`` backtests a rule file against the windows the worker stored."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from conftest import BIN, Worker  # type: ignore[import-not-found]

from devstack.peers import PeerThread
from schemas import topics

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)


def test_test_receiver_delivers_through_its_channels() -> None:
    with PeerThread() as peers:
        env = {**peers.alerting_env(),
               "LOGWARDEN_ALERTING_CONFIG_FILE": str(REPO / "deploy/config/alerting.yaml")}
        done = run(["alert", "test-receiver", "ops-default"], env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "ops-default/slack:0: sent"
        got = peers.received()
        assert [(r["channel"], r["to"]) for r in got] == [("slack", "C0OPS")]
        assert "logwarden test for receiver ops-default" in got[0]["text"]
        unknown = run(["alert", "test-receiver", "nobody"], env)
        assert unknown.returncode != 0 and "no receiver 'nobody'" in unknown.stderr


def test_rules_test_backtests_stored_windows(worker: Worker, kafka_bootstrap: str,
                                             tmp_path: Path) -> None:
    service = f"bt-{uuid.uuid4().hex[:8]}"
    start = (int(time.time() * 1000) - 300_000) // 60_000 * 60_000
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(600):  # two minutes; the second has 80 % errors
        bad = i >= 300 and i % 5 != 0
        p.produce(topics.LOGS, orjson.dumps({
            "ts": start + i * 200, "service": service, "level": "ERROR" if bad else "INFO",
            "message": "boom" if bad else "ok", "event_id": f"{service}-{i}"}), key=service)
    assert p.flush(30) == 0
    worker.wait_for(lambda: worker.query(
        "SELECT count() FROM logwarden.windows FINAL WHERE service = {s:String} "
        "AND window_s = 10", s=service)[0][0] >= 12, what="the service's windows")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: HighErrorRate\n"
        "    kind: threshold\n"
        f"    select: {{scope: service, service: {service}, window: 10s}}\n"
        "    field: error_rate\n"
        "    op: '>'\n"
        "    value: 0.5\n"
        "    severity: critical\n")
    done = run(["rules", "test", str(rules), "--since", "1h", "--api", worker.api], worker.env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    (rule,) = report["rules"]
    assert rule["rule"] == "HighErrorRate"
    assert rule["fired"] >= 1
    assert all(e["labels"]["service"] == service for e in rule["first"])


def test_alert_commands_send_a_token_and_act_as_its_principal(worker: Worker) -> None:
    """``logwarden alert silence`` used to send no token and always got 401. It now sends
    the local CLI token (created on first use), and the silence is the token's, whatever
    it asks for; a token the worker does not know is refused with the API's message."""
    service = f"quiet-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in worker.env.items() if k != "LOGWARDEN_TOKEN"}  # no token given
    done = run(["alert", "silence", f'service="{service}"', "--duration", "10m",
                "--api", worker.api], env)
    assert done.returncode == 0, done.stderr
    data_dir = Path(worker.env["LOGWARDEN_DATA_DIR"])
    assert (data_dir / "cli_token").stat().st_mode & 0o777 == 0o600

    def ours() -> list[dict[str, object]]:
        doc = json.loads(worker.get("/api/silences"))
        return [s for s in doc["silences"] if service in json.dumps(s["matchers"])]

    worker.wait_for(lambda: bool(ours()), what="the silence to be applied")
    assert str(ours()[0]["created_by"]).startswith("cli:")
    bogus = run(["alert", "silence", f'service="{service}"', "--api", worker.api,
                 "--token", "lw_not-a-token"], env)
    assert bogus.returncode == 1 and "unknown or revoked" in bogus.stderr
