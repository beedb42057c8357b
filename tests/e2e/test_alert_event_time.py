"""End to end: one recorded stream, produced with ``logwarden produce FILE`` at full speed
and paced by its timestamps (1x), raises the same alerts - names, labels and trigger event
times - in a real worker on a real broker. Absence is judged on the stream's watermark, so
the full-speed replay neither misses the outage nor fires on wall-clock silence.

Both runs go to one worker, so each run's services carry a prefix, and the 1x run is
stamped ten minutes after the full-speed one (its data then moves the event-time clock past
the first run's end, where that run's services do fall silent: only alerts inside a run's
span are compared).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
from conftest import BIN, Worker, start_worker  # type: ignore[import-not-found]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
SPAN_S = 180  # event time of the recording
BURST = (60, 100)  # api: half its requests fail
OUTAGE = (40, 120)  # db: sends nothing
SERVICES = ("api", "db", "web")
EXPECTED = {("HighErrorRate", "api", 80.0), ("ServiceDown", "db", 70.0)}  # s after start

CONFIG = """
rules:
  - name: HighErrorRate
    kind: threshold
    select: {scope: service, window: 10s}
    field: error_rate
    op: ">"
    value: 0.3
    min_count: 10
    for: 20s
    keep_firing_for: 20s
    severity: critical
    annotations: {summary: "{service}: error rate {value:.0%}"}
  - name: ServiceDown
    kind: absence
    select: {scope: service, window: 10s}
    for: 30s
    severity: critical
route:
  receiver: ops
  group_wait: 0s
receivers:
  - name: ops
    channels: [{type: email, to: ops@example.test}]
"""


def recording(prefix: str, start_s: int) -> bytes:
    """Five requests a second per service for ``SPAN_S``, with the burst and the outage."""
    lines = []
    for k in range(SPAN_S * 5):
        at = k / 5
        for svc in SERVICES:
            if svc == "db" and OUTAGE[0] <= at < OUTAGE[1]:
                continue
            failed = (svc == "api" and BURST[0] <= at < BURST[1] and k % 2 == 0) or k % 50 == 7
            lines.append(orjson.dumps({
                "ts": int((start_s + at) * 1000), "service": prefix + svc,
                "level": "ERROR" if failed else "INFO",
                "message": f"GET /x {'failed' if failed else 'ok'}",
                "http": {"method": "GET", "route": "/x", "status": 500 if failed else 200,
                         "duration_ms": 20.0}}))
    return b"\n".join(lines) + b"\n"


def produce(worker: Worker, bootstrap: str, path: Path, *speed: str) -> None:
    subprocess.run([str(BIN), "produce", str(path), "-b", bootstrap, *speed], env=worker.env,
                   check=True, capture_output=True, timeout=SPAN_S * 3)


def alerts(worker: Worker, prefix: str, start_s: int) -> set[tuple[str, str, float, str]]:
    """(rule, service without prefix, trigger s after start, other labels) of every firing
    alert of the run's services inside its span."""
    rows = worker.query("SELECT rule, labels, toUnixTimestamp64Milli(trigger_ts) FROM "
                        "logwarden.alerts WHERE state = 'firing' AND startsWith(service, "
                        "{p:String})", p=prefix)
    out = set()
    for rule, labels, trigger_ms in rows:
        at = int(trigger_ms) / 1000 - start_s
        if at <= SPAN_S:
            rest = {k: v for k, v in dict(labels).items() if k != "service"}
            out.add((str(rule), str(labels["service"]).removeprefix(prefix), at,
                     orjson.dumps(rest, option=orjson.OPT_SORT_KEYS).decode()))
    return out


def resolved(worker: Worker, prefix: str) -> int:
    return len(worker.query("SELECT 1 FROM logwarden.alerts WHERE state = 'resolved' AND "
                            "startsWith(service, {p:String})", p=prefix))


def test_one_recording_at_full_speed_and_at_1x_raises_the_same_alerts(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    config = tmp_path / "alerting.yaml"
    config.write_text(CONFIG)
    worker = start_worker(kafka_bootstrap, tmp_path / "worker", f"e2e-{uuid.uuid4().hex[:8]}",
                          LOGWARDEN_ALERTING_CONFIG_FILE=str(config),
                          LOGWARDEN_ALERTING_CANARY_INTERVAL_S="0",
                          LOGWARDEN_ALERTING_EVALUATION_INTERVAL_S="2",
                          LOGWARDEN_ALERTING_SMTP='{"port": 17601, "timeout_s": 1}')
    run = uuid.uuid4().hex[:5]
    fast, live = f"et{run}f-", f"et{run}l-"
    fast_start = int(time.time()) // 10 * 10 - 1200  # recorded twenty minutes ago
    live_start = fast_start + 600
    try:
        (tmp_path / "fast.jsonl").write_bytes(recording(fast, fast_start))
        (tmp_path / "live.jsonl").write_bytes(recording(live, live_start))
        produce(worker, kafka_bootstrap, tmp_path / "fast.jsonl")  # full speed
        worker.wait_for(lambda: {a[:3] for a in alerts(worker, fast, fast_start)} >= EXPECTED
                        and resolved(worker, fast) >= 2, timeout=240,
                        what="the full-speed run's alerts and resolves")
        produce(worker, kafka_bootstrap, tmp_path / "live.jsonl", "--speed", "1")  # 1x
        worker.wait_for(lambda: {a[:3] for a in alerts(worker, live, live_start)} >= EXPECTED
                        and resolved(worker, live) >= 2, timeout=240,
                        what="the 1x run's alerts and resolves")
        time.sleep(5)  # anything extra would have come by now
        at_full_speed = alerts(worker, fast, fast_start)
        at_1x = alerts(worker, live, live_start)
        assert {a[:3] for a in at_1x} == EXPECTED
        assert at_full_speed == at_1x
    finally:
        worker.stop()
