"""``logwarden eval scenario LABELS``: was each injected incident detected, and how fast?

Anomalies come from a file (JSON lines), from the worker API (the ``anomalies`` table), or,
with ``--replay``, from running the demo generator with the labels' seed through the same
``IngestProcessor`` windows and ``WindowScorer`` the worker uses, in-process, no Kafka.

``logwarden eval scenarios`` replays the demo over several seeds and start times (its events
depend on both) and reports each run and the total: one start time can flatter a detector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cli.common import cli_token, eval_app, settings
from cli.query import QueryFailed, api_url, query_api
from demo.fleet import rfc3339
from demo.realism import FAMILIES
from demo.traffic import DemoConfig, parse_duration
from detectors.settings import VariantConfig
from evaluation import nezha, nezha_delay, paging
from evaluation.incidents import alert_figures, evaluate
from evaluation.scenarios import (
    DEV_STARTS,
    FIGURES,
    KNOB_POINTS,
    baseline,
    demo_config,
    leave_one_family_out,
    parse_seeds,
    read_labels,
    replay,
    span_hours,
    sweep,
    sweep_pairs,
    totals,
)
from schemas.common import parse_ts
from schemas.windows import WindowStats

ANOMALY_SQL = ("SELECT event_id AS id, toUnixTimestamp64Milli(ts) AS ts, series, service, "
               "feature, variant, detector, score, severity FROM {db}.anomalies "
               "ORDER BY ts")
# alert episodes: one row per alert and the event time that fired it
ALERT_SQL = ("SELECT rule, service, severity, toUnixTimestamp64Milli(trigger_ts) AS ts "
             "FROM {db}.alerts GROUP BY fingerprint, rule, service, severity, trigger_ts "
             "ORDER BY ts")


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
    """Per injected incident: detected? time to detect; false alarms per hour and share.
    Read from a worker (no --anomalies, no --replay), its alerts too: how many were false,
    and which critical incidents raised a critical alert within 60 s."""
    incidents = read_labels(labels)
    alerts: list[dict[str, Any]] | None = None
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
        hours = span_hours(rows, incidents)
    else:  # what a worker that replayed the run raised: its anomalies and its alerts
        s = settings()

        def read(sql: str) -> list[dict[str, Any]]:
            try:
                answer = query_api(api_url(s, api), sql.format(db=s.clickhouse.database),
                                   {}, 1_000_000, cli_token(s))
            except QueryFailed as exc:
                raise typer.BadParameter(str(exc)) from None
            return [dict(zip(answer["columns"], r, strict=True)) for r in answer["rows"]]

        rows = read(ANOMALY_SQL)
        alerts = read(ALERT_SQL)
        hours = span_hours(rows, incidents)
    if save is not None:
        save.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    result = evaluate(rows, incidents, hours)
    err = Console(stderr=True, soft_wrap=True)
    report(result, err)
    summary = {v: {k: x for k, x in r.items() if k != "incidents"} for v, r in result.items()}
    if alerts is not None:
        summary["alerts"] = alert_figures(alerts, incidents)
        a = summary["alerts"]
        err.print(f"alerts: {a['alerts']}, {a['false_alerts']} false "
                  f"({a['false_alert_fraction']:.1%}); critical incidents with a critical "
                  f"alert within 60 s: {a['critical_alerted_within_60s']}/{a['criticals']}",
                  highlight=False)
    typer.echo(json.dumps({"benchmark": "scenario", "hours": round(hours, 3),
                           "incidents": len(incidents), **summary}))


@eval_app.command("scenarios")
def eval_scenarios(
    seeds: Annotated[str, typer.Option(help="seeds: 0-4, 1,3,7 or 0-2,9")] = "0-4",
    start: Annotated[list[str] | None, typer.Option(
        help="demo start time (RFC 3339), repeatable; default: the development "
             "set of docs/evaluation.md")] = None,
    rate: Annotated[float, typer.Option(help="the demo's base log events per second")] = 200.0,
    duration: Annotated[str, typer.Option(help="event time of each run")] = "1h",
    incident_every: Annotated[str, typer.Option(help="time between incidents")] = "3m",
    jobs: Annotated[int, typer.Option(min=1, help="runs at a time (processes)")] = 2,
    profile: Annotated[str, typer.Option(
        help="classic, or realistic: pods that churn, spikes, small gauges, scored "
             "leave one family out (docs/evaluation.md)")] = "classic",
    family: Annotated[list[str] | None, typer.Option(
        help=f"realistic families to run, repeatable (default all: {', '.join(FAMILIES)})")
    ] = None,
    before: Annotated[bool, typer.Option(
        help="realistic: also replay with the generalising rules off, same runs")] = True,
) -> None:
    """The demo scenario replayed over seeds x start times: per run and in all.

    With ``--profile realistic``, every family is scored at the knobs chosen on the other
    families (leave one family out), worst family first."""
    try:
        seed_list = parse_seeds(seeds)
        starts = [int(parse_ts(t).timestamp() * 1000) for t in (start or DEV_STARTS)]
        duration_s, every_s = parse_duration(duration), parse_duration(incident_every)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if profile not in ("classic", "realistic"):
        raise typer.BadParameter(f"--profile is classic or realistic, not {profile!r}")
    if profile == "realistic":
        unknown = [f for f in family or () if f not in FAMILIES]
        if unknown:
            raise typer.BadParameter(f"unknown family {unknown[0]!r}: one of "
                                     f"{', '.join(FAMILIES)}")
        _families(list(family or FAMILIES), seed_list, starts[:1] if start is None else starts,
                  rate, duration_s, every_s, jobs, before)
        return
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


def _families(families: list[str], seeds: list[int], starts: list[int], rate: float,
              duration_s: float, every_s: float, jobs: int, before: bool) -> None:
    """``eval scenarios --profile realistic``: leave one family out, before and after."""
    detect = settings().detect.model_copy(update={"challenger": VariantConfig(
        version=f"fpd{KNOB_POINTS['challenger']:g}",
        false_per_day=KNOB_POINTS["challenger"])})
    configs = [DemoConfig(start_ms=t, seed=sd, duration_s=duration_s, rate=rate,
                          incident_every_s=every_s, profile="realistic", family=f)
               for f in families for t in starts for sd in seeds]
    work = [(c, detect, baseline(detect) if before else None) for c in configs]
    err = Console(stderr=True)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"replaying {len(work)} realistic demo runs", total=len(work))
        after = sweep_pairs(work, jobs, lambda r: bar.advance(task))
    old = [{**r, "variants": r["before"]} for r in after if "before" in r]
    folds = leave_one_family_out(after, list(KNOB_POINTS))
    table = Table(title="realistic demo, leave one family out (worst first)")
    for col in ("family", "knobs chosen without it", "false / anomalies",
                "criticals ≤ 60 s", "detected", "before: false / anomalies", "before: detected"):
        table.add_column(col)
    for f in folds:
        b = totals(r for r in old if r["family"] == f["family"]) if old else None
        knob = KNOB_POINTS[f["chosen"]]
        table.add_row(f["family"], "q 6.5" if knob is None else f"false_per_day {knob:g}",
                      f"{f['false_alarms']}/{f['anomalies']} ({f['false_fraction']:.1%})",
                      f"{f['critical_within_60s']}/{f['criticals']}",
                      f"{f['detected']}/{f['incidents']}",
                      f"{b['false_alarms']}/{b['anomalies']} ({b['false_fraction']:.1%})"
                      if b else "", f"{b['detected']}/{b['incidents']}" if b else "")
    held = {k: sum(f[k] for f in folds) for k in FIGURES}
    held["false_fraction"] = round(held["false_alarms"] / max(held["anomalies"], 1), 4)
    err.print(table)
    summary = {"benchmark": "scenarios-realistic", "runs": len(configs),
               "worst_family": folds[0] if folds else None, "held_out": held,
               "folds": folds}
    if old:
        summary["before"] = totals(old)
    typer.echo(json.dumps(summary))


def register(cli: typer.Typer) -> None:
    """``eval scenario`` hangs on the shared eval group; nothing at the root."""


@eval_app.command("nezha")
def eval_nezha(
    datasets: Annotated[Path | None, typer.Option(
        help="datasets folder with nezha/ inside (default: settings' datasets_dir)")] = None,
    save: Annotated[Path | None, typer.Option(help="write the anomalies here "
                                                   "(JSON lines)")] = None,
    before: Annotated[bool, typer.Option(
        help="also replay with the generalising rules off (edges, pooling, floors, levels, "
             "demotion, gauge runs), for a before/after on the same data")] = False,
    config: Annotated[Path, typer.Option(
        help="alerting config whose pages are counted")] = paging.DEFAULT_CONFIG,
) -> None:
    """Replay the Nezha fault injections (TrainTicket) through the windows and the scorer,
    in-process, at the shipped settings; per fault: detected?, when; false anomaly events;
    then through the alert rules of --config: faults paged within 2 minutes, false pages."""
    root = (datasets or settings().datasets_dir) / "nezha"
    try:
        labels = nezha.read_labels(root)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None
    detect = settings().detect
    err = Console(stderr=True)
    figures: dict[str, Any] = {}
    for name, det in [("after", detect)] + ([("before", baseline(detect))] if before else []):
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"replaying nezha ({name})",
                                total=labels.get("counts", {}).get("lines"))
            def tick(n: int, t: Any = task) -> None:
                bar.update(t, completed=n)

            windows: list[WindowStats] = []
            rows = nezha.replay(nezha.events(root), det, tick, windows.extend)
        got = nezha.score(rows, labels["incidents"], labels.get("telemetry_gaps", []))
        figures[name] = {k: v for k, v in got.items() if k != "faults"}
        figures[name]["pages"] = nezha.pages(labels, windows, rows, config)
        del windows
        if name == "after":
            if save is not None:
                save.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
            table = Table(title=f"nezha: {got['detected']}/{got['total']} faults detected, "
                                f"{got['false_events']}/{got['anomalies']} anomaly events "
                                f"false ({got['false_at_gaps']} at telemetry gaps)")
            for col in ("fault", "kind", "root service", "detected", "ttd s", "critical"):
                table.add_column(col)
            for f in got["faults"]:
                table.add_row(f["id"], f["kind"], f["service"],
                              "yes" if f["detected"] else "[red]no[/]",
                              "" if f["ttd_s"] is None else f"{f['ttd_s']:.0f}",
                              "yes" if f["critical"] else "")
            err.print(table)
    typer.echo(json.dumps({"benchmark": "nezha", **figures}))


@eval_app.command("nezha-delay")
def eval_nezha_delay(
    delay_ms: Annotated[str, typer.Option(
        help="network delays to inject, comma-separated milliseconds")] = "50,200",
    rounds: Annotated[int, typer.Option(
        min=1, help="faults per recorded case window, each on another service")] = 1,
    datasets: Annotated[Path | None, typer.Option(
        help="datasets folder with nezha/ inside (default: settings' datasets_dir)")] = None,
    config: Annotated[Path, typer.Option(
        help="alerting config whose pages are counted")] = paging.DEFAULT_CONFIG,
) -> None:
    """Inject network delays (a fault kind the Nezha data set lacks) into its real
    TrainTicket traces, one service at a time, replay them and the untouched data through
    the windows, the scorer and the alert rules of --config; per delay: faults paged within
    2 minutes by a new alert on the delayed service or a caller, new false alerts, and where
    the incident engine ranks the delayed service (without the recorded fault's root)."""
    root = (datasets or settings().datasets_dir) / "nezha"
    try:
        labels = nezha.read_labels(root)
        delays = [float(d) for d in delay_ms.split(",") if d.strip()]
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None
    except ValueError:
        raise typer.BadParameter(f"--delay-ms {delay_ms!r}: comma-separated numbers") from None
    if not delays or min(delays) <= 0:
        raise typer.BadParameter("--delay-ms: at least one delay, each above 0")
    detect, graph, cases = settings().detect, labels["call_graph"], labels["incidents"]
    services = set(graph) | {c for callees in graph.values() for c in callees}
    plans = {d: nezha_delay.replays(nezha_delay.plan(
        cases, nezha_delay.candidates(graph), d, rounds), graph) for d in delays}
    err = Console(stderr=True)
    figures: dict[str, Any] = {}
    with Progress(console=err) as bar:
        task = bar.add_task("replaying nezha", total=1 + sum(len(p) for p in plans.values()))
        base = nezha_delay.alert_times(labels, nezha.events(root), detect, config).sim
        bar.advance(task)
        for d, groups in plans.items():
            faults: list[dict[str, Any]] = []
            alerts = false = 0
            for group in groups:
                run = nezha_delay.alert_times(
                    labels, nezha_delay.inject(nezha.events(root), group), detect, config)
                got = nezha_delay.score(group, cases, base, run.sim, graph)
                ranked = {c["id"]: c for c in nezha_delay.root_cause(group, cases, run, graph)}
                for f in got["faults"]:
                    rc = ranked.get(f"{f['service']}@{f['case']}", {})
                    faults.append({**f, "incident": bool(rc.get("detected")),
                                   "rank": rc.get("rank")})
                alerts, false = alerts + got["alerts"], false + got["false_alerts"]
                bar.advance(task)
            paged = sum(f["paged"] for f in faults)
            ranks = [f["rank"] for f in faults]
            figures[f"{d:g}ms"] = {
                "faults": len(faults), "paged_2min": paged, "alerts": alerts,
                "false_alerts": false,
                "missed": sorted(f"{f['service']}@{f['case']}" for f in faults if not f["paged"]),
                "root_cause": {"incidents": sum(f["incident"] for f in faults),
                               "top1": sum(r == 1 for r in ranks),
                               "top3": sum(r is not None and r <= 3 for r in ranks),
                               "chance_top1": round(1 / max(len(services), 1), 3)}}
            table = Table(title=f"nezha + {d:g} ms network delay: {paged}/{len(faults)} "
                                f"faults paged within 2 minutes, {false} new false alerts; "
                                f"root cause first {sum(r == 1 for r in ranks)}/{len(faults)}")
            for col in ("delayed service", "case window", "alerts", "paged after s",
                        "root-cause rank"):
                table.add_column(col)
            for f in sorted(faults, key=lambda f: f["start_ms"]):
                table.add_row(f["service"], f["case"], str(f["alerts"]),
                              "[red]no[/]" if f["page_s"] is None
                              else f"{f['page_s']:.0f}" if f["paged"]
                              else f"[red]{f['page_s']:.0f}[/]",
                              "[red]no incident[/]" if not f["incident"]
                              else "[red]not ranked[/]" if f["rank"] is None
                              else str(f["rank"]))
            err.print(table)
    typer.echo(json.dumps({"benchmark": "nezha-delay", "rounds": rounds, **figures}))
