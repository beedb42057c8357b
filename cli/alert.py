"""``logwarden alert list|ack|resolve|silence|test-receiver|actions|approve|verdict``,
``logwarden oncall`` and ``logwarden rules test``: talk to the running worker's alerting API,
or work locally.

The API knows who acts from the token: ``--token`` / ``LOGWARDEN_TOKEN``, else the local CLI
token (``<data dir>/cli_token``, mode 0600), created on first use as a responder token named
``cli:<user>`` in the worker's token file, which the worker re-reads while it runs."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from alerting.backtest import backtest
from alerting.messages import receiver_chain
from alerting.notifiers.base import Deliverer, Message
from alerting.rules import load_rules
from alerting.yamlfile import parse_duration
from cli.common import cli_token, settings
from cli.query import QueryFailed, api_url, query_api, query_direct
from schemas.errors import ConfigError
from schemas.windows import WindowStats
from sinks.clickhouse import rows

alert_app = typer.Typer(help="List and act on alerts of the running worker.",
                        no_args_is_help=True)
rules_app = typer.Typer(help="Check alert rules against history.", no_args_is_help=True)
API_OPT = typer.Option(None, "--api", help="Worker API base URL (default: the local worker).")
TOKEN_OPT = typer.Option(None, "--token", envvar="LOGWARDEN_TOKEN",
                         help="API token (default: the local CLI token, created on first use).")
err = Console(stderr=True, soft_wrap=True)


def call(base: str, method: str, path: str, body: dict[str, Any] | None = None,
         token: str | None = None) -> Any:
    """One JSON request to the worker API; exits with its error message on failure."""
    data = orjson.dumps(body) if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{base}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            msg = orjson.loads(raw)["error"]["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            msg = raw[:300].decode(errors="replace")
        err.print(f"[red]error:[/] {msg} (HTTP {e.code})", highlight=False)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        err.print(f"[red]error:[/] no running worker at {base} ({getattr(e, 'reason', e)}); "
                  "start one with `logwarden run`", highlight=False)
    raise typer.Exit(1)


@alert_app.command("list")
def list_alerts(state: str = typer.Option("active", help="active, firing, acknowledged, "
                                                          "resolved or all."),
                api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Print the alerts (code, state, severity, rule, service, since, summary)."""
    s = settings()
    doc = call(api_url(s, api), "GET", f"/api/alerts?state={state}", None, cli_token(s, token))
    t = Table("code", "state", "severity", "rule", "service", "since", "summary", "suppressed")
    for a in doc["alerts"]:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["starts_at"]))
        t.add_row(a["code"], a["state"], a["labels"].get("severity", ""), a["rule"],
                  a["labels"].get("service", ""), since, a["summary"], a["suppressed"])
    Console().print(t)


@alert_app.command("ack")
def ack(ref: str = typer.Argument(..., help="Alert code (from list) or fingerprint."),
        api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Acknowledge an alert (as the token's name): stops its escalation and repeats."""
    s = settings()
    doc = call(api_url(s, api), "POST", f"/api/alerts/{ref}/ack", {}, cli_token(s, token))
    typer.echo(f"acknowledge queued for {doc['fingerprint']} by {doc.get('by', '?')}")


@alert_app.command("resolve")
def resolve(ref: str = typer.Argument(..., help="Alert code or fingerprint."),
            api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Resolve an alert by hand; everyone paged hears it is resolved."""
    s = settings()
    doc = call(api_url(s, api), "POST", f"/api/alerts/{ref}/resolve", {}, cli_token(s, token))
    typer.echo(f"resolve queued for {doc['fingerprint']} by {doc.get('by', '?')}")


@alert_app.command("silence")
def silence(matchers: list[str] = typer.Argument(..., help='Label matchers: service="api" '
                                                           'alertname=~"High.*"'),
            duration: str = typer.Option("1h", help="How long (30m, 2h, 1d)."),
            comment: str = typer.Option("", help="Why."), api: str | None = API_OPT,
            token: str | None = TOKEN_OPT) -> None:
    """Mute alerts matching every matcher for a while (created by the token's name)."""
    s = settings()
    doc = call(api_url(s, api), "POST", "/api/silences",
               {"matchers": matchers, "duration": duration, "comment": comment},
               cli_token(s, token))
    typer.echo(f"silence {doc['id']} until "
               f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(doc['silence']['ends_at']))}")


@alert_app.command("actions")
def list_actions(outcome: str | None = typer.Option(
        None, help="Only this outcome: awaiting_approval, succeeded, failed, dry_run, ..."),
        api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Print the runbook actions (id, outcome, rule, step, plan) of the running worker."""
    s = settings()
    path = "/api/actions" + (f"?outcome={outcome}" if outcome else "")
    doc = call(api_url(s, api), "GET", path, None, cli_token(s, token))
    t = Table("id", "outcome", "rule", "step", "kind", "by", "plan")
    for a in doc["items"]:
        t.add_row(a["id"] if "id" in a else a["action_id"], a["outcome"], a["rule"], a["step"],
                  a["kind"], a["by"], a["plan"][:80])
    Console().print(t)


@alert_app.command("approve")
def approve(action: str = typer.Argument(..., help="Action id (from `alert actions`)."),
            reject: bool = typer.Option(False, "--reject", help="Refuse it instead."),
            api: str | None = API_OPT, token: str | None = TOKEN_OPT) -> None:
    """Approve (or --reject) a runbook action awaiting approval, as the token's name."""
    s = settings()
    answer = "reject" if reject else "approve"
    doc = call(api_url(s, api), "POST", f"/api/actions/{action}/{answer}", {},
               cli_token(s, token))
    typer.echo(f"{answer} queued for {doc['id']} by {doc.get('by', '?')}")


@alert_app.command("verdict")
def verdict(ref: str = typer.Argument(..., help="Alert code or fingerprint."),
            value: str = typer.Argument(..., help="useful or false_alarm."),
            comment: str = typer.Option("", help="Why."), api: str | None = API_OPT,
            token: str | None = TOKEN_OPT) -> None:
    """Mark an alert useful or a false alarm (feeds the false-alert budget)."""
    s = settings()
    base, tok = api_url(s, api), cli_token(s, token)
    alerts = call(base, "GET", "/api/alerts?state=all", None, tok)["alerts"]
    found = next((a for a in alerts if ref in (a["fingerprint"], a["code"])), None)
    if found is None:
        err.print(f"[red]error:[/] no alert {ref!r} (see `logwarden alert list --state all`)",
                  highlight=False)
        raise typer.Exit(1)
    doc = call(base, "POST", "/api/verdicts", {"kind": "alert", "target": found["fingerprint"],
                                               "verdict": value, "comment": comment}, tok)
    typer.echo(f"{doc['recorded']} recorded for {found['code']} by {doc['by']}")


@alert_app.command("test-receiver")
def test_receiver(name: str = typer.Argument(..., help="A receiver of the alerting config.")
                  ) -> None:
    """Send a test message through a receiver's channels (no worker needed)."""
    from alerting.reload import load_full

    s = settings().alerting
    try:
        cfg = load_full(s)
        r = cfg.receiver(name)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    except StopIteration:
        raise SystemExit(f"error: no receiver {name!r} in {s.config_file}") from None
    msg = Message(id=f"test@{int(time.time())}", status="test", severity="info",
                  title=f"logwarden test for receiver {name}", text="It works.")
    chain = receiver_chain(r, s)
    if not chain:
        raise SystemExit(f"error: receiver {name!r} has no channels (only an escalation)")
    d = asyncio.run(Deliverer(policy=s.retry).deliver(msg, chain))
    for rec in d.records:
        typer.echo(f"{rec.channel}: {rec.outcome} {rec.error}".rstrip())
    if d.delivered_via is None:
        raise typer.Exit(1)


def fetch_windows(since_s: float, api: str | None) -> list[WindowStats]:
    """Stored windows of the last ``since_s`` seconds (through the worker in embedded mode)."""
    s = settings()
    cols = ", ".join(f"`{c}`" for c in rows.WINDOW_COLUMNS)
    sql = (f"SELECT {cols} FROM {s.clickhouse.database}.windows FINAL "
           "WHERE end >= now() - toIntervalSecond({since:UInt64}) ORDER BY end")
    params = {"since": int(since_s)}
    direct = api is None and s.clickhouse.url.startswith(("http://", "https://"))
    try:
        answer = (query_direct(s, sql, params, 1_000_000) if direct
                  else query_api(api_url(s, api), sql, params, 1_000_000, cli_token(s)))
    except QueryFailed as e:
        raise SystemExit(f"error: {e}") from None
    out = []
    for row in answer["rows"]:
        doc = dict(zip(answer["columns"], row, strict=True))
        doc = {k: (float("nan") if v is None and k in ("p50", "p95", "p99", "min", "max",
                                                       "mean", "last") else v)
               for k, v in doc.items()}
        out.append(WindowStats.model_validate(doc))
    return out


def is_security_file(file: Path) -> bool:
    """Whether ``file`` is a security rules file (it has ``sigma_dir`` or a security kind)."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError:
        return False
    return "sigma_dir:" in text or any(f"kind: {k}" in text for k in
                                       ("count", "sequence", "new_address", "match"))


@rules_app.command("test")
def rules_test(file: Path = typer.Argument(..., help="A rules file (or the alerting config)."),
               since: str = typer.Option("24h", help="How much stored history to replay."),
               api: str | None = API_OPT) -> None:
    """Replay stored history through the rules: how often each would have fired (windows
    for alerting rules; authentication events for a security file such as security.yaml)."""
    if is_security_file(file):
        from cli.security import backtest_security
        backtest_security(file, parse_duration(since), api)
        return
    try:
        rules = load_rules(file)
    except ConfigError:
        from alerting.config import load_alerting
        try:
            rules = load_alerting(file)
        except ConfigError as e:
            raise SystemExit(f"error: {e}") from None
    with err.status("reading windows"):
        windows = fetch_windows(parse_duration(since), api)
    report = backtest(rules, windows)
    t = Table("rule", "fired", "resolved", "firing min", "first")
    for r in report.rules:
        first = ", ".join(f"{e['labels'].get('service', '')}" for e in r.first[:3])
        t.add_row(r.rule, str(r.fired), str(r.resolved), f"{r.firing_s / 60:.1f}", first)
    err.print(t)
    sys.stdout.write(report.model_dump_json() + "\n")


def register(cli: typer.Typer) -> None:
    """Attach ``alert``, ``oncall`` and ``rules``."""
    cli.add_typer(alert_app, name="alert")
    cli.add_typer(rules_app, name="rules")

    @cli.command("oncall")
    def oncall(at: str | None = typer.Option(None, "--at", help="ISO time or epoch s "
                                                                "(default: now).")) -> None:
        """Who is on call at a time, per schedule of the alerting config."""
        from alerting.oncall import who_is_on_call
        from alerting.reload import load_full
        from web.alerts import parse_at

        s = settings()
        try:
            when = parse_at(at, time.time())
        except Exception as e:
            raise typer.BadParameter(str(e), param_hint="--at") from None
        try:
            cfg = load_full(s.alerting)
        except ConfigError as e:
            raise SystemExit(f"error: {e}") from None
        from datetime import UTC, datetime
        t = datetime.fromtimestamp(when, tz=UTC)
        for sch in cfg.schedules:
            typer.echo(f"{sch.name}: {', '.join(who_is_on_call(sch, t)) or '(nobody)'}")
