"""``logwarden eval paging``: the demo's incidents through the alert rules, scored at the
level of what reaches people (``evaluation/paging.py``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.common import eval_app, settings
from demo.fleet import rfc3339
from demo.traffic import DemoConfig, parse_duration
from evaluation.paging import DEFAULT_CONFIG, TARGET_PAGE_S, sweep, totals
from evaluation.scenarios import DEV_STARTS, parse_seeds
from schemas.common import parse_ts
from schemas.errors import ConfigError

# Start times for paging runs: the development set's first two (the demo depends on both
# seed and start time; the daily shape differs between them).
PAGING_STARTS = DEV_STARTS[:2]


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


@eval_app.command("paging")
def eval_paging(
    config: Annotated[Path, typer.Option(help="alerting config (rules, routes, receivers)",
                                         exists=True, dir_okay=False)] = DEFAULT_CONFIG,
    seeds: Annotated[str, typer.Option(help="demo seeds: 0-2, 1,3,7 or 0-2,9")] = "0-2",
    start: Annotated[list[str] | None, typer.Option(
        help="demo start time (RFC 3339), repeatable; default: two of the development "
             "set's")] = None,
    duration: Annotated[str, typer.Option(help="event time of each run")] = "30m",
    incident_every: Annotated[str, typer.Option(help="time between incidents")] = "3m",
    rate: Annotated[float, typer.Option(help="the demo's base log events per second")] = 200.0,
    jobs: Annotated[int, typer.Option(min=1, help="runs at a time (processes)")] = 2,
    quiet: Annotated[bool, typer.Option(
        help="also replay each seed with no incident: every alert of that run is false "
             "(deploys, config changes, daily peaks and other look-alikes only)")] = True,
    profile: Annotated[str | None, typer.Option(
        help="demo profile (e.g. realistic: churning pods, spikes, small gauges), when "
             "the demo has profiles")] = None,
    family: Annotated[str | None, typer.Option(help="the realistic profile's family")] = None,
) -> None:
    """Pages, alerts and notifications after grouping; time to page per critical incident
    (target <= 60 s) and false alerts / pages per day, per run, worst run first."""
    try:
        seed_list = parse_seeds(seeds)
        starts = [int(parse_ts(t).timestamp() * 1000) for t in (start or PAGING_STARTS)]
        duration_s, every_s = parse_duration(duration), parse_duration(incident_every)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    s = settings()
    extra: dict[str, Any] = {k: v for k, v in (("profile", profile), ("family", family))
                             if v is not None}
    demos = [DemoConfig(start_ms=t, seed=sd, duration_s=duration_s, rate=rate,
                        incident_every_s=every_s) for t in starts for sd in seed_list]
    if quiet:
        demos += [replace(d, incidents=0) for d in demos]
    try:
        demos = [replace(d, **extra) for d in demos]
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(f"--profile/--family: {exc}") from None
    err = Console(stderr=True)
    try:
        with err.status(f"replaying {len(demos)} demo runs through {config}"):
            runs = sweep(demos, config, s.detect, jobs, s.stream.window_grace_s,
                         s.alerting.absence_settle_s)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    table = Table(title=f"pages, worst run first ({config})")
    for col in ("seed", "incidents", "start", f"criticals paged <= {TARGET_PAGE_S:.0f} s",
                "page s median", "page s worst", "pages (false)", "alerts (false)",
                "false pages/day"):
        table.add_column(col)
    for r in runs:
        table.add_row(str(r["seed"]), "none" if r["quiet"] else "yes",
                      rfc3339(r["start_ms"])[:16].replace("T", " "),
                      f"{r['criticals_paged_60s']}/{r['criticals']}", _s(r["page_s_median"]),
                      _s(r["page_s_worst"]), f"{r['pages']} ({r['false_pages']})",
                      f"{r['alerts']} ({r['false_alerts']})", str(r["false_pages_per_day"]))
    t = totals(runs)
    table.add_row("all", "", "", f"{t['criticals_paged_60s']}/{t['criticals']}",
                  _s(t["page_s_median"]), _s(t["page_s_worst"]),
                  f"{t['pages']} ({t['false_pages']})", f"{t['alerts']} ({t['false_alerts']})",
                  str(t["false_pages_per_day"]))
    err.print(table)
    for r in runs[:1]:
        late = [i for i in r["incidents"] if i["severity"] == "critical"
                and (i["page_s"] is None or i["page_s"] > TARGET_PAGE_S)]
        for i in late:
            err.print(f"worst run: {i['id']} {i['kind']} on {i['service']}: page "
                      f"{_s(i['page_s'])} s, first alert {_s(i['alert_s'])} s")
        if r["false"]:
            err.print("worst run's false alerts: " + "; ".join(r["false"][:10]))
    typer.echo(json.dumps({"benchmark": "paging", "config": str(config), **t,
                           "worst_run": {k: v for k, v in runs[0].items() if k != "incidents"}
                           if runs else None}))


def register(cli: typer.Typer) -> None:
    """``eval paging`` hangs on the shared eval group; nothing at the root."""
