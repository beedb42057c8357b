"""The realistic demo profile: pods that churn, per-pod and small-integer gauges, counter
resets, spikes, and the network_delay / cpu_contention faults, all valid events."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from typing import Any

import pytest

from demo.realism import FAMILIES, World
from demo.traffic import DemoConfig, Incident, event_time_ms, generate
from schemas.changes import Change
from schemas.logs import LogEvent
from schemas.metrics import MetricPoint
from schemas.topics import CHANGES, LOGS, METRICS

START = 1_777_636_800_000  # 2026-05-01T12:00:00Z


def _run(family: str, seconds: int = 600, seed: int = 4, every: float = 120.0,
         rate: float = 60.0) -> tuple[list[tuple[str, dict[str, Any]]], list[Incident]]:
    incidents: list[Incident] = []
    cfg = DemoConfig(start_ms=START, seed=seed, duration_s=seconds, rate=rate,
                     incident_every_s=every, profile="realistic", family=family)
    return list(generate(cfg, incidents.append)), incidents


def test_pods_churn_and_per_pod_gauges_are_small_integers_and_counters_reset() -> None:
    events, _ = _run("churn", seconds=900)
    pods: dict[str, set[str]] = defaultdict(set)
    queue: list[float] = []
    counters: dict[str, list[float]] = defaultdict(list)
    for topic, e in events:
        if topic == METRICS:
            MetricPoint.model_validate(e)
            pod = e["labels"].get("pod")
            if pod:
                pods[e["service"]].add(pod)
                assert pod.startswith(e["service"] + "-")
            if e["name"] == "queue_depth" and pod:
                queue.append(e["value"])
            if e["name"] == "http_requests_total":
                counters[pod].append(e["value"])
        elif topic == LOGS:
            LogEvent.model_validate(e)
        elif topic == CHANGES:
            Change.model_validate(e)
    assert all(v == int(v) and 0 <= v <= 12 for v in queue) and max(queue) >= 2
    # deploys and the autoscaler brought new pods: more names than a service runs at once
    assert sum(len(p) for p in pods.values()) > 2 * len(pods) + 10
    resets = sum(1 for vs in counters.values() for a, b in pairwise(vs) if b < a)
    assert resets >= 1
    changes = [e for t, e in events if t == CHANGES]
    assert {"scale", "deploy"} <= {c["kind"] for c in changes}


def test_logs_name_the_pods_and_a_spike_moves_every_service() -> None:
    w = World.create(1, "spike", START)
    w.second(w.next_spike, lambda *a: "")
    s, e, f = w.spike
    assert 1.6 <= f <= 2.4 and 180_000 <= e - s <= 360_000
    assert w.spike_factor(s + 60_000) == f and w.spike_factor(s - 1) == 1.0
    assert w.spike_factor(e + 120_000) == 1.0  # ramped down after a minute
    events, _ = _run("spike", seconds=60)
    pods = {p.name for ps in World.create(4, "spike", START).pods.values() for p in ps}
    hosts = {e["host"] for t, e in events if t == LOGS}
    assert hosts & pods  # logs name the pods the metrics do


def test_network_delay_and_cpu_contention_faults() -> None:
    events, incidents = _run("changes", seconds=1500, seed=9, every=100.0, rate=8.0)
    kinds = {i.kind for i in incidents}
    assert {"network_delay", "cpu_contention"} <= kinds
    delay = next(i for i in incidents if i.kind == "network_delay")
    slow = [e["peer"]["duration_ms"] for t, e in events if t == LOGS and e.get("peer")
            and e["peer"]["service"] == delay.service
            and delay.start_ms <= event_time_ms(e) < delay.end_ms]
    assert slow and min(slow) >= delay.effect["delay_ms"]
    cpu = next(i for i in incidents if i.kind == "cpu_contention")
    pod = cpu.effect["pod"]
    during = [e["value"] for t, e in events if t == METRICS and e["name"] == "cpu_percent"
              and e["labels"].get("pod") == pod and cpu.start_ms <= e["ts"] < cpu.end_ms]
    assert during and max(during) >= 80  # (the autoscaler may retire the pod mid-way)


def test_unknown_profile_or_family_is_refused() -> None:
    with pytest.raises(ValueError, match="family"):
        DemoConfig(start_ms=START, profile="realistic", family="nope")
    with pytest.raises(ValueError, match="profile"):
        DemoConfig(start_ms=START, profile="tidy")
    assert set(FAMILIES) == {"churn", "spike", "peaks", "small", "changes"}
