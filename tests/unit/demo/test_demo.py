"""The demo generator: seeded, valid, a real fleet, incidents that match their labels."""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from categorisation.miner import TemplateMiner
from cli.demo import EventPacer, resolve_start
from cli.main import cli
from cli.produce import route_line
from demo.traffic import (
    DEMO_TEMPLATES,
    DemoConfig,
    Incident,
    event_time_ms,
    generate,
    parse_duration,
    template_matches,
)
from schemas.changes import Change
from schemas.logs import LogEvent
from schemas.metrics import MetricPoint
from schemas.topics import CHANGES, LOGS, METRICS

START = 1_777_636_800_000  # 2026-05-01T12:00:00Z
Event = dict[str, Any]


@dataclass
class Run:
    events: list[tuple[str, Event]]
    incidents: list[Incident]

    def logs(self, **where: Any) -> list[Event]:
        return [e for t, e in self.events
                if t == LOGS and all(e.get(k) == v for k, v in where.items())]

    def incident(self, kind: str) -> Incident:
        return next(i for i in self.incidents if i.kind == kind)


def _run(**kw: Any) -> Run:
    incidents: list[Incident] = []
    cfg = DemoConfig(**{"start_ms": START, **kw})
    return Run(list(generate(cfg, incidents.append)), incidents)


@pytest.fixture(scope="module")
def run() -> Run:
    # 13 minutes, an incident every 2 minutes: each of the six kinds once.
    return _run(seed=7, duration_s=780, rate=100, incident_every_s=120)


def _inside(e: Event, inc: Incident) -> bool:
    return inc.start_ms <= event_time_ms(e) < inc.end_ms


def test_same_seed_same_events_other_seed_other_events() -> None:
    a = _run(seed=3, duration_s=30, rate=50, incident_every_s=10)
    b = _run(seed=3, duration_s=30, rate=50, incident_every_s=10)
    c = _run(seed=4, duration_s=30, rate=50, incident_every_s=10)
    assert a.events == b.events and len(a.events) > 1000
    assert [i.label() for i in a.incidents] == [i.label() for i in b.incidents]
    assert a.events != c.events


def test_every_event_validates_against_its_topic_contract(run: Run) -> None:
    models: dict[str, type[BaseModel]] = {LOGS: LogEvent, METRICS: MetricPoint, CHANGES: Change}
    for topic, event in run.events:
        models[topic].model_validate(event)
    assert Counter(t for t, _ in run.events).keys() == models.keys()


def test_events_come_in_event_time_order_with_unique_ids_and_both_time_formats(run: Run) -> None:
    times = [event_time_ms(e) for _, e in run.events]
    assert times == sorted(times) and times[0] == START
    ids = [e["event_id"] for e in run.logs()]
    assert len(ids) == len(set(ids)) and all(len(i) == 36 for i in ids)
    kinds = {type(e["ts"]) for e in run.logs()}
    assert kinds == {int, str}


def test_fleet_has_many_services_routes_levels_and_metrics(run: Run) -> None:
    logs = run.logs()
    services = {e["service"] for e in logs}
    assert len(services) >= 8
    assert {e["level"] for e in logs} >= {"DEBUG", "INFO", "WARN", "ERROR"}
    routes = {(e["service"], e["http"]["route"]) for e in logs if "http" in e}
    assert len(routes) >= 20
    metric_names = {e["name"] for t, e in run.events if t == METRICS}
    assert {"cpu_percent", "memory_mb", "open_connections", "queue_depth",
            "orders_per_min", "up"} <= metric_names
    calls = {(e["service"], e["peer"]["service"]) for e in logs if "peer" in e}
    assert {("web-gateway", "cart"), ("cart", "inventory"), ("checkout", "payments")} <= calls


def test_baseline_error_rate_and_latency_are_realistic(run: Run) -> None:
    quiet = [e for e in run.logs() if "http" in e and not any(
        _inside(e, i) for i in run.incidents)]
    errors = sum(e["http"]["status"] >= 500 for e in quiet) / len(quiet)
    client = sum(400 <= e["http"]["status"] < 500 for e in quiet) / len(quiet)
    assert 0.001 <= errors <= 0.02 and 0.005 <= client <= 0.06
    durations = sorted(e["http"]["duration_ms"] for e in quiet
                       if e["service"] == "search" and e["http"]["route"] == "/search")
    p50, p99 = durations[len(durations) // 2], durations[int(len(durations) * 0.99)]
    assert 30 < p50 < 70 and p99 > 3 * p50  # log-normal with a heavy tail


def test_each_incident_kind_is_labelled_with_its_ground_truth(run: Run) -> None:
    assert sorted(i.kind for i in run.incidents) == sorted(
        ["error_burst", "latency_regression", "dependency_outage", "disk_full",
         "resource_exhaustion", "brute_force"])
    for inc in run.incidents:
        label = orjson.loads(orjson.dumps(inc.label()))
        assert label["severity"] in ("critical", "warning") and label["signals"]
        assert label["start"] < label["end"] and label["service"] in label["services"]
        assert datetime.fromisoformat(label["start"]).timestamp() * 1000 == inc.start_ms


def test_error_burst_raises_the_routes_5xx_far_above_baseline(run: Run) -> None:
    inc = run.incident("error_burst")
    hits = [e for e in run.logs(service=inc.service) if "http" in e
            and f"{e['http']['method']} {e['http']['route']}" == inc.route]
    inside = [e["http"]["status"] >= 500 for e in hits if _inside(e, inc)]
    outside = [e["http"]["status"] >= 500 for e in hits
               if not any(_inside(e, i) for i in run.incidents)]
    assert len(inside) >= 20
    assert sum(inside) / len(inside) > 0.15 > 10 * sum(outside) / len(outside)
    assert any(e["attrs"]["label"]["template"] == "exception" and _inside(e, inc)
               for e in run.logs(service=inc.service))


def test_latency_regression_follows_a_deploy_and_multiplies_p95(run: Run) -> None:
    inc = run.incident("latency_regression")
    deploys = [e for t, e in run.events if t == CHANGES and e["kind"] == "deploy"
               and e["service"] == inc.service and event_time_ms(e) == inc.start_ms]
    assert [d["event_id"] for d in deploys] == [
        s["event_id"] for s in inc.signals if s["type"] == "change"]
    hits = [e for e in run.logs(service=inc.service) if "http" in e
            and f"{e['http']['method']} {e['http']['route']}" == inc.route]

    def p95(xs: list[float]) -> float:
        return statistics.quantiles(xs, n=20)[-1]

    inside = p95([e["http"]["duration_ms"] for e in hits if _inside(e, inc)])
    outside = p95([e["http"]["duration_ms"] for e in hits
                   if not any(_inside(e, i) for i in run.incidents)])
    assert inside > 2.5 * outside


def test_dependency_outage_silences_the_service_and_fails_its_callers(run: Run) -> None:
    inc = run.incident("dependency_outage")
    calls = [e for e in run.logs() if e.get("peer", {}).get("service") == inc.service]
    failed_inside = [e for e in calls if _inside(e, inc) and e["peer"]["ok"] is False]
    assert len(failed_inside) >= 10
    assert all("connection refused" in e["message"] for e in failed_inside)
    assert {e["service"] for e in failed_inside} <= set(inc.services)
    assert all(e["peer"]["ok"] for e in calls if not _inside(e, inc)) or (
        sum(not e["peer"]["ok"] for e in calls if not _inside(e, inc)) < 0.02 * len(calls))
    own = [e for e in run.logs(service=inc.service) if _inside(e, inc)]
    assert own and all(e["attrs"]["label"]["template"] == "crash" for e in own)
    up = [e["value"] for t, e in run.events if t == METRICS and e["service"] == inc.service
          and e["name"] == "up" and _inside(e, inc)]
    assert up and set(up) == {0.0}


def test_brute_force_is_a_burst_of_failed_logins_from_one_ip(run: Run) -> None:
    inc = run.incident("brute_force")
    ip = inc.effect["ip"]
    failures = [e for e in run.logs(service="auth") if e.get("user", {}).get("ip") == ip]
    assert len(failures) > 5 * (inc.end_ms - inc.start_ms) / 1000
    assert all(_inside(e, inc) for e in failures)
    assert {e["user"]["outcome"] for e in failures} == {"failure"}
    assert any(e["attrs"]["label"]["template"] == "account_locked" for e in failures)


def test_disk_full_and_pool_exhaustion_show_in_metrics_and_lines(run: Run) -> None:
    for kind, name, high in (("disk_full", "disk_used_percent", 98.0),
                             ("resource_exhaustion", "open_connections", 200.0)):
        inc = run.incident(kind)
        points = [e for t, e in run.events if t == METRICS and e["service"] == inc.service
                  and e["name"] == name]
        assert all((e["value"] >= high) == _inside(e, inc) for e in points), kind
        assert any(_inside(e, inc) for e in points)
    disk = run.incident("disk_full")
    assert any(e["attrs"]["label"]["template"] == "disk_full" and _inside(e, disk)
               for e in run.logs(service=disk.service))


def test_every_message_fits_its_declared_template(run: Run) -> None:
    regexes = {n: re.compile(re.escape(p).replace(re.escape("<*>"), r"\S+") + "$")
               for n, p in DEMO_TEMPLATES.items()}
    for e in run.logs():
        assert regexes[e["attrs"]["label"]["template"]].match(e["message"]), e["message"]


def test_template_mining_recovers_the_demo_templates(run: Run) -> None:
    miners: dict[str, TemplateMiner] = defaultdict(TemplateMiner)
    used: dict[str, set[str]] = defaultdict(set)
    for e in run.logs():
        miners[e["service"]].add(e["message"])
        used[e["service"]].add(e["attrs"]["label"]["template"])
    missing = [(svc, name) for svc, names in used.items() for name in names
               if not any(template_matches(DEMO_TEMPLATES[name], t)
                          for t in miners[svc].templates().values())]
    assert not missing
    assert sum(len(m) for m in miners.values()) < 400  # no explosion of one-off templates


def test_incident_schedule_by_count_and_by_interval() -> None:
    by_count = list(DemoConfig(start_ms=0, duration_s=600, incidents=3).schedule())
    assert [s for s, _ in by_count] == [150_000, 300_000, 450_000]
    assert all(e - s == 67_000 for s, e in by_count)
    every = DemoConfig(start_ms=0, incident_every_s=60).schedule()
    assert [next(every)[0] for _ in range(3)] == [60_000, 120_000, 180_000]
    with pytest.raises(ValueError):
        list(DemoConfig(start_ms=0, incidents=2).schedule())


def test_pacer_holds_events_to_event_time_times_speed() -> None:
    now = [50.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    pacer = EventPacer(100.0, START, clock=lambda: now[0], sleep=sleep)
    pacer.wait(START)  # due at once
    pacer.wait(START + 60_000)  # a minute of event time: 0.6 s at 100x
    assert slept == [pytest.approx(0.6)]
    now[0] += 1.0  # the loop fell behind: no sleep, no catching up by waiting
    pacer.wait(START + 90_000)
    assert len(slept) == 1
    free = EventPacer(0.0, START, clock=lambda: now[0], sleep=sleep)
    free.wait(START + 10**9)
    assert len(slept) == 1


def test_start_defaults_keep_a_fast_replay_in_the_past() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert resolve_start(None, 1.0, None, now) == START
    assert resolve_start(None, 100.0, 600.0, now) == START - 600_000
    assert resolve_start("2026-05-01T11:00:00Z", 0.0, 60.0, now) == START - 3_600_000


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600),
                                           ("1h30m", 5400), ("500ms", 0.5)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        parse_duration("10 minutes")


def test_cli_writes_produce_ready_lines_labels_and_a_summary(tmp_path: Path) -> None:
    out, labels = tmp_path / "demo.jsonl", tmp_path / "labels.jsonl"
    result = CliRunner().invoke(cli, [
        "demo", "--no-pace", "--duration", "2m", "--incidents", "2", "--rate", "50",
        "--seed", "5", "--start", "2026-05-01T12:00:00Z", "--out", str(out),
        "--labels", str(labels)])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    lines = out.read_bytes().splitlines()
    assert summary["events"] == len(lines) and summary["incidents"] == 2
    assert {LOGS, METRICS} <= summary["topics"].keys() <= {LOGS, METRICS, CHANGES}
    routed = Counter(route_line(raw, LOGS).topic for raw in lines)
    assert routed == Counter(summary["topics"])
    label_rows = [orjson.loads(x) for x in labels.read_bytes().splitlines()]
    assert [r["start"] for r in label_rows] == ["2026-05-01T12:00:40.000Z",
                                                "2026-05-01T12:01:20.000Z"]


def test_cli_writes_the_realistic_fleet_and_refuses_an_unknown_family(tmp_path: Path) -> None:
    out, labels = tmp_path / "demo.jsonl", tmp_path / "labels.jsonl"
    args = ["demo", "--no-pace", "--duration", "4m", "--incidents", "1", "--rate", "50",
            "--start", "2026-05-01T12:00:00Z", "--out", str(out), "--labels", str(labels),
            "--profile", "realistic"]
    result = CliRunner().invoke(cli, [*args, "--family", "churn"])
    assert result.exit_code == 0, result.output
    pods = {orjson.loads(x).get("labels", {}).get("pod") for x in out.read_bytes().splitlines()}
    assert len(pods - {None}) > 10  # per-pod gauges: the realistic profile, not the classic
    assert len(labels.read_bytes().splitlines()) == 1
    bad = CliRunner().invoke(cli, [*args, "--family", "weekend"])
    assert bad.exit_code == 2 and "unknown demo family 'weekend'" in bad.output
