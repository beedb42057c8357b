"""Alert latency: from the first bad event of an injected critical incident to the
notification received by a local Slack peer, through the real pipeline (Kafka, a worker
process, 10 s windows). ``python -m bench.alert`` prints one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from devstack.kafka import throwaway_kafka
from devstack.peers import PeerThread, free_port
from schemas import topics
from streams.settings import Settings
from streams.topics import wait_for_kafka

INCIDENTS = 5
CONFIG = """
rules:
  - name: BenchErrors
    kind: threshold
    select: {scope: service, service: "bench-.*", window: 10s}
    field: error_rate
    op: ">"
    value: 0.5
    min_count: 5
    severity: critical
    annotations: {summary: "{service} error rate {value:.0%}"}
route: {receiver: ops, group_by: [alertname, service], group_wait: 0s, group_interval: 10s}
receivers:
  - name: ops
    channels: [{type: slack, to: C0BENCH, rate_per_min: 600}]
"""


def _start_worker(bootstrap: str, data: Path, env_extra: dict[str, str]) -> tuple[
        subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "LOGWARDEN_KAFKA_BOOTSTRAP": bootstrap,
           "LOGWARDEN_DATA_DIR": str(data), "LOGWARDEN_STREAM_WEB_PORT": str(port),
           "LOGWARDEN_STREAM_APP_ID": f"bench-alert-{uuid.uuid4().hex[:8]}",
           "LOGWARDEN_STREAM_WINDOW_GRACE_S": "2", **env_extra}
    bin_ = Path(sys.executable).parent / "logwarden"
    proc = subprocess.Popen([str(bin_), "worker", "--loglevel", "WARNING"], env=env,
                            stdout=(data / "worker.log").open("wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"worker did not start: {(data / 'worker.log').read_text()[-2000:]}")


def _incident(producer: Producer, peers: PeerThread, service: str, timeout: float) -> float:
    """Errors until the alert arrives; seconds from the first error to the notification."""
    first = time.time()
    while time.time() - first < timeout:
        doc = {"ts": int(time.time() * 1000), "service": service, "level": "ERROR",
               "message": "upstream timeout", "event_id": uuid.uuid4().hex}
        producer.produce(topics.LOGS, json.dumps(doc).encode(), key=service)
        producer.poll(0)
        got = [r for r in peers.received() if service in r["text"]]
        if got:
            return float(got[0]["at"] - first)
        time.sleep(0.05)
    raise TimeoutError(f"no alert for {service} within {timeout} s")


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def run(incidents: int = INCIDENTS) -> dict[str, Any]:
    """Inject ``incidents`` critical incidents; p50 / p99 / max alert latency in seconds."""
    s = Settings()
    with tempfile.TemporaryDirectory() as tmp, PeerThread() as peers, \
            throwaway_kafka(s.kafka.bootstrap, Path(tmp)) as bootstrap:
        wait_for_kafka(bootstrap, timeout=60)
        cfg = Path(tmp) / "alerting.yaml"
        cfg.write_text(CONFIG)
        env = {**peers.alerting_env(), "LOGWARDEN_ALERTING_CONFIG_FILE": str(cfg),
               "LOGWARDEN_ALERTING_EVALUATION_INTERVAL_S": "1",
               "LOGWARDEN_ALERTING_CANARY_INTERVAL_S": "0"}
        proc, _ = _start_worker(bootstrap, Path(tmp), env)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        try:
            time.sleep(5)  # let the Faust agents get their partitions
            lat = [_incident(producer, peers, f"bench-{uuid.uuid4().hex[:6]}", 120)
                   for _ in range(incidents)]
        finally:
            producer.flush(10)
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"bench": "alert_latency", "incidents": len(lat), "window_s": 10,
            "p50_s": round(_quantile(lat, 0.5), 2), "p99_s": round(_quantile(lat, 0.99), 2),
            "max_s": round(max(lat), 2)}


if __name__ == "__main__":
    print(json.dumps(run()))
