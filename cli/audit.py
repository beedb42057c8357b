"""`logwarden audit verify|list`: check and read the hash-chained audit trail."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

import typer
from rich.console import Console

from audit.chain import verify
from audit.trail import AuditTrail, audit_rows, read_anchors, spool
from cli.query import api_url
from sinks.clickhouse.client import Store, StoreLockedError, connect
from streams.settings import Settings
from web.remote_store import ApiStore

err = Console(stderr=True)


def audit_store(s: Settings, api: str | None, token: str | None) -> Store:
    """The store itself when this process can open it (a server, or chDB no worker holds),
    else the running worker's API (embedded mode: reading the audit needs an admin token)."""
    if api is None:
        try:
            return connect(s.clickhouse, s.data_dir)
        except StoreLockedError:
            pass
    return ApiStore(api_url(s, api), s.api_token(token))


def audit_cli_event(s: Settings, action: str, target: str, detail: str = "") -> None:
    """Audit a CLI action: straight into a ClickHouse server, else through the spool that
    the worker holding chDB records (``audit.trail``)."""
    if not s.audit.enabled:
        return
    actor = f"cli:{getpass.getuser()}"
    if s.clickhouse.url.startswith(("http://", "https://")):
        trail = AuditTrail(connect(s.clickhouse, s.data_dir), s.clickhouse.database, "cli",
                           s.audit.key.get_secret_value().encode(), s.data_dir)
        trail.record(actor, "local", action, target, detail)
    else:
        spool(s.data_dir, actor, "local", action, target, detail)


def register(cli: typer.Typer) -> None:
    """Attach ``audit verify`` and ``audit list``."""
    app = typer.Typer(help="The audit trail: who did what through the API and CLI.",
                      no_args_is_help=True)
    cli.add_typer(app, name="audit")
    api_opt = typer.Option(None, "--api", help="Worker API URL (embedded mode, worker running).")
    token_opt = typer.Option(None, "--token", help="API token for --api (an admin's).")

    @app.command("verify")
    def verify_cmd(api: str | None = api_opt, token: str | None = token_opt) -> None:
        """Check every writer's hash chain and anchor; exit 1 naming each edited, deleted or
        forged row."""
        from cli.common import settings

        s = settings()
        store = audit_store(s, api, token)
        rows = audit_rows(store, s.clickhouse.database)
        anchors = read_anchors(s.data_dir)
        result = verify(rows, s.audit.key.get_secret_value().encode(), anchors)
        print(json.dumps({"ok": result.ok, "rows": result.rows, "writers": result.writers,
                          "anchors": len(anchors), "problems": result.problems}))
        if not result.ok:
            for p in result.problems:
                err.print(f"[red]tampered:[/red] {p}")
            if not rows and anchors:
                err.print("no audit rows readable: reading the audit table needs an admin "
                          "token (--token, LOGWARDEN_TOKEN)")
            raise typer.Exit(1)
        err.print(f"audit chain intact: {result.rows} rows from {result.writers} writers")

    @app.command("list")
    def list_cmd(
        actor: str | None = typer.Option(None, "--actor", help="Only this actor."),
        action: str | None = typer.Option(None, "--action", help="Only this action "
                                          "(query, alert.ack, silence.create, token.create...)."),
        limit: int = typer.Option(100, "--limit", min=1, help="At most this many rows."),
        api: str | None = api_opt, token: str | None = token_opt,
    ) -> None:
        """Print audit rows as JSON lines (newest writers last, each in chain order)."""
        from cli.common import settings

        s = settings()
        conds, params = [], {}
        if actor:
            conds.append("actor = {actor:String}")
            params["actor"] = actor
        if action:
            conds.append("action = {action:String}")
            params["action"] = action
        rows = audit_rows(audit_store(s, api, token), s.clickhouse.database,
                          " AND ".join(conds), params, limit)
        for r in rows:
            r["ts"] = datetime.fromtimestamp(r.pop("ts_ms") / 1000, UTC).isoformat()
            print(json.dumps(r))
