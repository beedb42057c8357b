"""``logwarden eval scenario LABELS``: was each injected incident detected, and how fast?

Anomalies come from a file (JSON lines), from the worker API (the ``anomalies`` table), or,
with ``--replay``, from running the demo generator with the labels' seed through the same
``IngestProcessor`` windows and ``WindowScorer`` the worker uses, in-process, no Kafka.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from detectors.detection_settings import DetectionSettings
from detectors.feedback import ChangeLog
from detectors.incident_match import evaluate
from detectors.scoring import WindowScorer
from schemas.topics import CHANGES, LOGS
from schemas.windows import WindowStats
from streams.commands.common import eval_app, settings
from streams.commands.query import QueryFailed, api_url, query_api
from streams.demo import DemoConfig, event_time_ms, generate
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
           progress: Callable[[int], None] = lambda t: None) -> list[dict[str, Any]]:
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

    for offset, (topic, event) in enumerate(generate(cfg)):
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


def _hours(rows: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> float:
    times = [int(r["ts"]) for r in rows] + [int(i["start_ms"]) for i in incidents] + [
        int(i["end_ms"]) for i in incidents]
    return max((max(times) - min(times)) / 3_600_000, 1 / 60) if times else 1.0


def register(cli: typer.Typer) -> None:
    """``eval scenario`` hangs on the shared eval group; nothing at the root."""
