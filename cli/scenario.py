"""``logwarden eval scenario LABELS``: was each injected incident detected, and how fast?

Anomalies come from a file (JSON lines), from the worker API (the ``anomalies`` table), or,
with ``--replay``, from running the demo generator with the labels' seed through the same
``IngestProcessor`` windows and ``WindowScorer`` the worker uses, in-process, no Kafka.

``logwarden eval scenarios`` replays the demo over several seeds and start times (its events
depend on both) and reports each run and the total: one start time can flatter a detector.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cli.common import eval_app, settings
from cli.query import QueryFailed, api_url, query_api
from demo.fleet import rfc3339
from demo.incidents import Incident
from demo.traffic import DemoConfig, event_time_ms, generate, parse_duration
from detectors.feedback import ChangeLog
from detectors.scoring import WindowScorer
from detectors.settings import DetectionSettings
from evaluation.incidents import evaluate
from schemas.common import parse_ts
from schemas.topics import CHANGES, LOGS
from schemas.windows import WindowStats
from streams.ingest import IngestProcessor, Record

ANOMALY_SQL = ("SELECT event_id AS id, toUnixTimestamp64Milli(ts) AS ts, series, service, "
               "feature, variant, detector, score, severity FROM {db}.anomalies "
               "ORDER BY ts")


def read_labels(path: Path) -> list[dict[str, Any]]:
    """The demo's labels file: one incident per JSON line."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def demo_config(labels: list[dict[str, Any]], seed: int, rate: float,
                duration_s: float | None) -> DemoConfig:
    """The demo run that produced ``labels`` (incidents are evenly spaced from the start)."""
    starts = [int(i["start_ms"]) for i in labels]
    if len(starts) < 2:
        raise ValueError("need at least two labelled incidents to infer the demo's timing")
    spacing = (starts[1] - starts[0]) / 1000
    start_ms = starts[0] - int(spacing * 1000)
    end_ms = max(int(i["end_ms"]) for i in labels)
    duration = duration_s or (end_ms - start_ms) / 1000 + spacing / 2
    return DemoConfig(start_ms=start_ms, seed=seed, duration_s=duration, rate=rate,
                      incident_every_s=spacing)


def replay(cfg: DemoConfig, detect: DetectionSettings,
           progress: Callable[[int], None] = lambda t: None,
           on_incident: Callable[[Incident], None] = lambda i: None) -> list[dict[str, Any]]:
    """Run the demo through ingest windows and the scorer; every anomaly, as dicts."""
    clock = [cfg.start_ms / 1000]
    proc = IngestProcessor(clock=lambda: clock[0])
    changes = ChangeLog()
    scorer = WindowScorer(detect, changes)
    out: list[dict[str, Any]] = []
    batch: list[Record] = []
    # the demo stops mid-window: a window past its end is partial (a fake traffic drop)
    stop_s = (cfg.start_ms + (cfg.duration_s or math.inf) * 1000) / 1000

    def score(windows: list[WindowStats]) -> None:
        whole = [w for w in windows if w.end.timestamp() <= stop_s]
        out.extend(a.model_dump() for a in scorer.score_batch(whole))

    def flush() -> None:
        result = proc.process(batch)
        batch.clear()
        score(result.windows)

    for offset, (topic, event) in enumerate(generate(cfg, on_incident)):
        if topic == CHANGES:
            changes.add(event_time_ms(event), event["service"], event["kind"],
                        event["description"])
        elif topic == LOGS and event.get("peer"):
            changes.add_edge(event["service"], event["peer"]["service"])
        batch.append(Record(topic, 0, offset, event["service"].encode(),
                            orjson.dumps(event)))
        if len(batch) >= 5000:
            clock[0] = event_time_ms(event) / 1000
            flush()
            progress(int(clock[0] * 1000))
    flush()
    clock[0] += 3600.0
    score(proc.flush_idle())
    return out


def report(result: dict[str, dict[str, Any]], console: Console) -> None:
    """Print the per-incident table and the per-variant summary."""
    for variant, r in result.items():
        table = Table(title=f"{variant}: {r['anomalies']} anomalies, {r['false_alarms']} "
                            f"false ({r['false_fraction']:.1%}), {r['false_per_hour']}/h")
        for col in ("incident", "kind", "severity", "service", "detected", "ttd s"):
            table.add_column(col)
        for i in r["incidents"]:
            table.add_row(i["id"], i["kind"], i["severity"], i["service"],
                          "yes" if i["detected"] else "[red]no[/]",
                          "" if i["ttd_s"] is None else f"{i['ttd_s']:.0f}")
        console.print(table)


@eval_app.command("scenario")
def eval_scenario(
    labels: Annotated[Path, typer.Argument(help="the demo's labels file (JSON lines)",
                                           exists=True, dir_okay=False)],
    anomalies: Annotated[Path | None, typer.Option(
        help="anomalies as JSON lines (id, ts ms, service, variant)")] = None,
    api: Annotated[str | None, typer.Option(help="worker API URL to read anomalies from "
                                                 "(default: the settings' web port)")] = None,
    do_replay: Annotated[bool, typer.Option("--replay", help="regenerate the demo (same "
                                            "seed) and score it in-process, no Kafka")] = False,
    seed: Annotated[int, typer.Option(help="the demo's seed (with --replay)")] = 0,
    rate: Annotated[float, typer.Option(help="the demo's --rate (with --replay)")] = 200.0,
    duration: Annotated[float | None, typer.Option(help="demo seconds (with --replay; "
                                                        "default from the labels)")] = None,
    save: Annotated[Path | None, typer.Option(help="write the anomalies here "
                                                   "(JSON lines)")] = None,
) -> None:
    """Per injected incident: detected? time to detect; false alarms per hour and share."""
    incidents = read_labels(labels)
    detect = settings().detect
    if do_replay:
        try:
            cfg = demo_config(incidents, seed, rate, duration)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        span = (cfg.duration_s or 0) * 1000
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("replaying the demo", total=span)
            rows = replay(cfg, detect,
                          lambda t: bar.update(task, completed=t - cfg.start_ms))
        hours = span / 3_600_000
    elif anomalies is not None:
        rows = read_labels(anomalies)
        hours = _hours(rows, incidents)
    else:
        s = settings()
        try:
            answer = query_api(api_url(s, api), ANOMALY_SQL.format(db=s.clickhouse.database),
                               {}, 1_000_000)
        except QueryFailed as exc:
            raise typer.BadParameter(str(exc)) from None
        rows = [dict(zip(answer["columns"], r, strict=True)) for r in answer["rows"]]
        hours = _hours(rows, incidents)
    if save is not None:
        save.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    result = evaluate(rows, incidents, hours)
    report(result, Console(stderr=True))
    summary = {v: {k: x for k, x in r.items() if k != "incidents"} for v, r in result.items()}
    typer.echo(json.dumps({"benchmark": "scenario", "hours": round(hours, 3),
                           "incidents": len(incidents), **summary}))


# The start times of the development set in the README (seeds 0-4 at each).
DEV_STARTS = ("2026-11-20T03:17:00Z", "2026-11-22T21:33:00Z", "2026-11-24T14:05:00Z",
              "2026-11-27T08:48:00Z")
FIGURES = ("anomalies", "false_alarms", "critical_within_60s", "criticals", "detected",
           "incidents")


def parse_seeds(text: str) -> list[int]:
    """``0-4`` or ``1,3,7`` (or both: ``0-2,9``) -> the seeds.

    >>> parse_seeds("0-2,9")
    [0, 1, 2, 9]
    """
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if m is None or int(m[2] or m[1]) < int(m[1]):
            raise ValueError(f"{text!r} is not a list of seeds such as 0-4 or 1,3,7")
        out += range(int(m[1]), int(m[2] or m[1]) + 1)
    return out


def run_scenario(cfg: DemoConfig, detect: DetectionSettings) -> dict[str, Any]:
    """One demo run replayed and scored: the champion's figures (``FIGURES``)."""
    labels: list[dict[str, Any]] = []
    rows = replay(cfg, detect, on_incident=lambda inc: labels.append(inc.label()))
    r = evaluate(rows, labels, (cfg.duration_s or 0) / 3600)["champion"]
    return {"seed": cfg.seed, "start_ms": cfg.start_ms, **{k: r[k] for k in FIGURES[:4]},
            "detected": sum(i["detected"] for i in r["incidents"]),
            "incidents": len(r["incidents"])}


def sweep(configs: Iterable[DemoConfig], detect: DetectionSettings, jobs: int,
          done: Callable[[dict[str, Any]], None] = lambda r: None) -> list[dict[str, Any]]:
    """``run_scenario`` for every config, ``jobs`` at a time; results in config order."""
    todo = list(configs)
    if jobs <= 1:
        out = []
        for cfg in todo:
            out.append(run_scenario(cfg, detect))
            done(out[-1])
        return out
    results: dict[int, dict[str, Any]] = {}
    with ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(run_scenario, cfg, detect): i for i, cfg in enumerate(todo)}
        for f in as_completed(futures):
            results[futures[f]] = f.result()
            done(results[futures[f]])
    return [results[i] for i in range(len(todo))]


@eval_app.command("scenarios")
def eval_scenarios(
    seeds: Annotated[str, typer.Option(help="seeds: 0-4, 1,3,7 or 0-2,9")] = "0-4",
    start: Annotated[list[str] | None, typer.Option(
        help="demo start time (RFC 3339), repeatable; default: the README's development "
             "set")] = None,
    rate: Annotated[float, typer.Option(help="the demo's base log events per second")] = 200.0,
    duration: Annotated[str, typer.Option(help="event time of each run")] = "1h",
    incident_every: Annotated[str, typer.Option(help="time between incidents")] = "3m",
    jobs: Annotated[int, typer.Option(min=1, help="runs at a time (processes)")] = 2,
) -> None:
    """The demo scenario replayed over seeds x start times: per run and in all."""
    try:
        seed_list = parse_seeds(seeds)
        starts = [int(parse_ts(t).timestamp() * 1000) for t in (start or DEV_STARTS)]
        duration_s, every_s = parse_duration(duration), parse_duration(incident_every)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    configs = [DemoConfig(start_ms=t, seed=sd, duration_s=duration_s, rate=rate,
                          incident_every_s=every_s) for t in starts for sd in seed_list]
    err = Console(stderr=True)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"replaying {len(configs)} demo runs", total=len(configs))
        runs = sweep(configs, settings().detect, jobs, lambda r: bar.advance(task))
    table = Table(title="demo scenario, champion")
    for col in ("seed", "start", "criticals ≤ 60 s", "false / anomalies", "detected"):
        table.add_column(col)
    for r in runs:
        table.add_row(str(r["seed"]), rfc3339(r["start_ms"])[:16].replace("T", " "),
                      f"{r['critical_within_60s']}/{r['criticals']}",
                      f"{r['false_alarms']}/{r['anomalies']}",
                      f"{r['detected']}/{r['incidents']}")
    total = {k: sum(r[k] for r in runs) for k in FIGURES}
    total["false_fraction"] = round(total["false_alarms"] / max(total["anomalies"], 1), 4)
    table.add_row("all", "", f"{total['critical_within_60s']}/{total['criticals']}",
                  f"{total['false_alarms']}/{total['anomalies']} "
                  f"({total['false_fraction']:.2%})", f"{total['detected']}/{total['incidents']}")
    err.print(table)
    typer.echo(json.dumps({"benchmark": "scenarios", "runs": len(runs), **total}))


def _hours(rows: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> float:
    times = [int(r["ts"]) for r in rows] + [int(i["start_ms"]) for i in incidents] + [
        int(i["end_ms"]) for i in incidents]
    return max((max(times) - min(times)) / 3_600_000, 1 / 60) if times else 1.0


def register(cli: typer.Typer) -> None:
    """``eval scenario`` hangs on the shared eval group; nothing at the root."""
