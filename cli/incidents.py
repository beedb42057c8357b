"""``logwarden incidents list|show|ack|mitigate|resolve|note|postmortem|metrics`` (through the
running worker's API) and ``logwarden eval incidents`` (root cause and grouping, offline)."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cli.alert import API_OPT, TOKEN_OPT, call, err
from cli.common import cli_token, eval_app, settings
from cli.query import api_url
from demo.realism import FAMILIES
from demo.traffic import parse_duration
from incidents.evidence import pack_lines

incidents_app = typer.Typer(help="List, inspect and act on incidents of the running worker.",
                            no_args_is_help=True)
LIST_FIELDS = ("id", "ts", "severity", "status", "services", "root_cause", "suspect_changes",
               "alerts")


def _get(path: str, api: str | None, token: str | None) -> Any:
    s = settings()
    return call(api_url(s, api), "GET", path, None, cli_token(s, token))


@incidents_app.command("list")
def list_incidents(
        since: str = typer.Option("24h", help="How far back: 30m, 24h, 7d, or epoch ms."),
        fmt: str = typer.Option("table", "--format", help="table, jsonl or csv."),
        status: str = typer.Option("", help="Only this status (open, acknowledged, "
                                            "mitigated, resolved)."),
        service: str = typer.Option("", help="Only incidents touching this service."),
        api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Incidents whose first signal is within ``--since``, newest first."""
    if fmt not in ("table", "jsonl", "csv"):
        raise typer.BadParameter("use table, jsonl or csv", param_hint="--format")
    qs = urllib.parse.urlencode({k: v for k, v in (("since", since), ("status", status),
                                                   ("service", service)) if v})
    items = _get(f"/api/incidents?{qs}", api, token)["items"]
    rows = [{**{k: i.get(k) for k in LIST_FIELDS}, "alerts": int(i["alerts"]) + int(
        i.get("anomalies", 0)), "anomalies": i.get("anomalies", 0), "title": i.get("title", "")}
            for i in items]
    if fmt == "jsonl":
        for r in rows:
            sys.stdout.write(json.dumps(r) + "\n")
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[*LIST_FIELDS, "anomalies", "title"])
        w.writeheader()
        for r in rows:
            w.writerow({k: ";".join(v) if isinstance(v, list) else v for k, v in r.items()})
        sys.stdout.write(buf.getvalue())
    else:
        t = Table("id", "opened (UTC)", "severity", "status", "services", "root cause",
                  "changes", "alerts")
        for r in rows:
            t.add_row(r["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["ts"] / 1000)),
                      r["severity"], r["status"], ", ".join(r["services"]),
                      " > ".join(r["root_cause"][:3]), ", ".join(r["suspect_changes"][:2]),
                      str(r["alerts"]))
        Console().print(t)


@incidents_app.command("show")
def show(incident: str = typer.Argument(..., help="Incident id (from list)."),
         as_json: bool = typer.Option(False, "--json", help="The whole document as JSON."),
         api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """One incident: state, impact, evidence pack and timeline."""
    d = _get(f"/api/incidents/{urllib.parse.quote(incident)}", api, token)
    if as_json:
        sys.stdout.write(json.dumps(d, indent=2) + "\n")
        return
    typer.echo(f"{d['id']}  {d['severity']}  {d['status']}  owner {d.get('owner') or '-'}")
    typer.echo(f"services: {', '.join(d['services'])}")
    typer.echo("evidence:")
    for line in pack_lines(d) or ["(not built yet)"]:
        typer.echo(f"  {line}")
    typer.echo("timeline:")
    for e in d["timeline"]:
        when = time.strftime("%H:%M:%S", time.gmtime(e["ts"] / 1000))
        typer.echo(f"  {when} [{e['kind']}] {e['text']}")


def _act(action: str, incident: str, text: str, api: str | None, token: str | None) -> None:
    s = settings()
    d = call(api_url(s, api), "POST", f"/api/incidents/{urllib.parse.quote(incident)}/{action}",
             {"text": text}, cli_token(s, token))
    typer.echo(f"{d['id']}: {d['status']}" + (" (note added)" if action == "note" else ""))


@incidents_app.command("ack")
def ack(incident: str = typer.Argument(..., help="Incident id."),
        text: str = typer.Option("", "--text", help="A comment."),
        api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Acknowledge an incident (you become its owner if it has none)."""
    _act("ack", incident, text, api, token)


@incidents_app.command("mitigate")
def mitigate(incident: str = typer.Argument(..., help="Incident id."),
             text: str = typer.Option("", "--text", help="What mitigated it."),
             api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Mark an incident mitigated (impact stopped, cause not yet fixed)."""
    _act("mitigate", incident, text, api, token)


@incidents_app.command("resolve")
def resolve(incident: str = typer.Argument(..., help="Incident id."),
            text: str = typer.Option("", "--text", help="How it was resolved."),
            api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Resolve an incident."""
    _act("resolve", incident, text, api, token)


@incidents_app.command("note")
def note(incident: str = typer.Argument(..., help="Incident id."),
         text: str = typer.Argument(..., help="The note."),
         api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Add a note to an incident's timeline."""
    _act("note", incident, text, api, token)


@incidents_app.command("postmortem")
def postmortem(incident: str = typer.Argument(..., help="Incident id."),
               fmt: str = typer.Option("md", "--format", help="md or html."),
               out: Path | None = typer.Option(None, "--out", help="Write to this file."),
               api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Draft a postmortem (summary, impact, timeline, root cause with evidence, actions,
    follow-ups) in Markdown or HTML."""
    if fmt not in ("md", "html"):
        raise typer.BadParameter("use md or html", param_hint="--format")
    s = settings()
    url = (f"{api_url(s, api)}/api/incidents/{urllib.parse.quote(incident)}/postmortem"
           f"?format={fmt}")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {cli_token(s, token)}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as e:
        try:
            msg = orjson.loads(e.read())["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            msg = str(e)
        err.print(f"[red]error:[/] {msg} (HTTP {e.code})", highlight=False)
        raise typer.Exit(1) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        err.print(f"[red]error:[/] no running worker ({e})", highlight=False)
        raise typer.Exit(1) from None
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}")


@incidents_app.command("metrics")
def metrics(since: str = typer.Option("30d", help="How far back (24h, 7d, 30d)."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON."),
            api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """MTTD, MTTA and MTTR per incident, overall, weekly and per team."""
    d = _get(f"/api/incident-metrics?since={urllib.parse.quote(since)}", api, token)
    if as_json:
        sys.stdout.write(json.dumps(d, indent=2) + "\n")
        return
    t = Table("group", "incidents", "MTTD s", "MTTA s", "MTTR s")
    rows = [("all", d["overall"])] + [(f"week {w}", m) for w, m in d["weekly"].items()] + [
        (f"team {k}", m) for k, m in d["teams"].items()]
    for name, m in rows:
        t.add_row(name, str(m["incidents"]), str(m["mttd_s"]), str(m["mtta_s"]),
                  str(m["mttr_s"]))
    Console().print(t)


@eval_app.command("incidents")
def eval_incidents(
        nezha: Path | None = typer.Option(None, help="The Nezha data set directory "
                                                     "(default: <datasets>/nezha)."),
        no_nezha: bool = typer.Option(False, "--no-nezha", help="Demo runs only."),
        demo_seeds: str = typer.Option("1,2,3", help="Demo seeds to replay (\"\": none, "
                                                     "Nezha only)."),
        profile: str = typer.Option("classic", help="Demo world: classic, or realistic "
                                    "(churning pods, spikes, network delays, a starved pod)."),
        family: str = typer.Option("churn", help="The realistic world's family: "
                                   + ", ".join(FAMILIES) + "."),
        duration: str = typer.Option("", help="Length of each demo run (default: 3h classic, "
                                     "90m realistic)."),
        incidents: int = typer.Option(0, help="Incidents per demo run (default: 24 classic, "
                                      "12 realistic).", min=0),
        out: Path | None = typer.Option(None, help="Also write the figures as JSON here."),
) -> None:
    """Root-cause top-1/top-3 (knobs leave-one-out, worst fold) against chance, incidents
    per real incident, wrong merges, time to evidence: demo fleet and Nezha TrainTicket."""
    from evaluation.rca import run_all

    if profile not in ("classic", "realistic"):
        raise typer.BadParameter(f"{profile!r}: classic or realistic", param_hint="--profile")
    if family not in FAMILIES:
        raise typer.BadParameter(f"{family!r}: one of {', '.join(FAMILIES)}",
                                 param_hint="--family")
    classic = profile == "classic"
    try:
        seconds = parse_duration(duration) if duration else (3 * 3600 if classic else 5400)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--duration") from None
    s = settings()
    directory = nezha or s.datasets_dir / "nezha"
    if (nezha is not None and not no_nezha and nezha.is_dir()
            and not (nezha / "labels.json").is_file()):
        raise typer.BadParameter(f"{nezha} holds no Nezha data set (no labels.json); "
                                 "--no-nezha replays the demo only", param_hint="--nezha")
    use = directory if directory.exists() and not no_nezha else None
    seeds = [int(x) for x in demo_seeds.split(",") if x.strip()]
    result = run_all(use, seeds, duration_s=seconds,
                     n_incidents=incidents or (24 if classic else 12), profile=profile,
                     family=family)
    if not directory.exists() and not no_nezha:
        err.print(f"note: {directory} not found; Nezha skipped", highlight=False)
    for name, r in result.items():
        t = Table(title=name)
        t.add_column("figure")
        t.add_column("value")
        for k, v in r.items():
            if k not in ("per_case", "folds"):
                t.add_row(k, json.dumps(v) if isinstance(v, dict | list) else str(v))
        Console().print(t)
    if out is not None:
        out.write_text(json.dumps(result, indent=2))


def register(cli: typer.Typer) -> None:
    """Attach ``incidents``."""
    cli.add_typer(incidents_app, name="incidents")
