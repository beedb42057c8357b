"""`logwarden api` (cluster-mode API process), `logwarden token create`, `logwarden report`."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlparse

import aiosmtplib
import typer
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import Progress

from alerting.config import SmtpSettings
from audit.trail import AuditTrail, read_anchors
from cli.audit import audit_cli_event
from cli.common import save_cli_token, settings
from cli.query import api_url
from demo.traffic import parse_duration
from privacy.settings import load_privacy
from sinks.clickhouse.client import Store, StoreLockedError, connect, resolve_url
from sinks.clickhouse.queries.base import Span
from streams.settings import Settings
from streams.web_config import web_options
from web import reports
from web.api import create_app, serve
from web.auth import ROLES, TokenStore
from web.compliance import ComplianceInputs, load_compliance
from web.params import timestamp
from web.remote_store import ApiStore

err = Console(stderr=True)
_DEFAULT_SPAN = {"daily": timedelta(days=1), "weekly": timedelta(days=7),
                 "incident": timedelta(hours=2), "compliance": timedelta(days=30)}


def report_store(s: Settings, api: str | None, token: str | None) -> Store:
    """A ClickHouse server directly (cluster), else the running worker's API (embedded)."""
    if api is None and s.clickhouse.url.startswith(("http://", "https://")):
        return connect(s.clickhouse, s.data_dir)
    return ApiStore(api_url(s, api), s.api_token(token))


def send_report(smtp: SmtpSettings, to: list[str], subject: str, html: str,
                pdf: bytes, filename: str) -> None:
    """Mail the report (HTML body, PDF attached) through the alerting SMTP settings."""
    em = EmailMessage()
    em["From"], em["To"], em["Subject"] = smtp.sender, ", ".join(to), subject
    em.set_content("The logwarden report is attached as PDF.")
    em.add_alternative(html, subtype="html")
    em.add_attachment(pdf, maintype="application", subtype="pdf", filename=filename)
    password = smtp.password.get_secret_value()
    asyncio.run(aiosmtplib.send(em, hostname=smtp.host, port=smtp.port,
                                username=smtp.username or None,
                                password=password if smtp.username else None,
                                use_tls=smtp.use_tls, start_tls=smtp.starttls,
                                validate_certs=smtp.validate_certs, timeout=smtp.timeout_s))


def register(cli: typer.Typer) -> None:
    """Attach ``api``, ``token`` and ``report``."""
    token_app = typer.Typer(help="API tokens (stored hashed in the token file).")
    cli.add_typer(token_app, name="token")

    @token_app.command("create")
    def token_create(
        role: str = typer.Option("viewer", "--role", help=f"One of {', '.join(ROLES)}."),
        name: str = typer.Option("", "--name", help="Who uses it (default: <role>-<time>)."),
        save: bool = typer.Option(False, "--save",
                                  help="Also write it to the CLI's token file "
                                       "(LOGWARDEN_TOKEN_FILE, default <data dir>/cli_token, "
                                       "mode 0600) for `logwarden query` and reports."),
    ) -> None:
        """Create an API token; prints it once (only its SHA-256 is stored)."""
        s = settings()
        name = name or f"{role}-{int(time.time())}"
        try:
            token = TokenStore(s.web.token_path(s.data_dir)).create(name, role)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if save:
            save_cli_token(s.cli_token_path(), token)
        audit_cli_event(s, "token.create", name, f"role {role}")
        print(token)

    @cli.command("api")
    def api() -> None:
        """Serve the API and dashboards from ClickHouse (cluster mode: a separate process).

        LOGWARDEN_CLICKHOUSE_URL names the server; a ``chdb://`` URL (or an empty one, meaning
        the chDB store under LOGWARDEN_DATA_DIR) is served too, through the same
        clickhouse-connect client: useful on a store no worker holds (a stopped worker's
        data, a copy). chDB runs one call at a time, so its queries get one thread.
        """
        s = settings()
        embedded = urlparse(resolve_url(s.clickhouse, s.data_dir)).scheme == "chdb"
        try:
            store = connect(s.clickhouse, s.data_dir)
        except StoreLockedError as exc:
            raise typer.BadParameter(f"{exc} (in embedded mode the worker serves the API "
                                     "itself)") from None

        async def main() -> None:
            pool = ThreadPoolExecutor(1 if embedded else 4, thread_name_prefix="ch")
            app = create_app(store, database=s.clickhouse.database, executor_or_lock=pool,
                             health_provider=lambda: {"status": "ok", "mode": "api"},
                             metrics_registry=CollectorRegistry(),
                             web_options=web_options(s),
                             query_connect=lambda: connect(s.clickhouse, s.data_dir),
                             audit=AuditTrail(store, s.clickhouse.database, "api",
                                              s.audit.key.get_secret_value().encode(),
                                              s.data_dir) if s.audit.enabled else None)
            await serve(app, s.web.api_host, s.web.api_port)
            err.print(f"API and dashboards on http://{s.web.api_host}:{s.web.api_port}")
            await asyncio.Event().wait()

        asyncio.run(main())

    @cli.command("report")
    def report(
        kind: str = typer.Argument(..., help="daily, weekly, incident or compliance."),
        since: str | None = typer.Option(None, "--from", help="Start (RFC 3339); default: "
                                         "the period before --to."),
        until: str | None = typer.Option(None, "--to", help="End (RFC 3339); default now."),
        out: Path = typer.Option(Path("reports"), "--out", help="Folder for HTML and PDF."),
        email: list[str] = typer.Option([], "--email", help="Mail it to this address."),
        rate_limit: float = typer.Option(1000.0, "--rate-limit",
                                         help="Events/s per service the capacity forecast "
                                              "treats as the limit."),
        every: str | None = typer.Option(None, "--every", help="Repeat on a schedule, "
                                         "e.g. 1d or 7d (until Ctrl-C)."),
        api: str | None = typer.Option(None, "--api", help="Worker API URL (embedded mode)."),
        token: str | None = typer.Option(None, "--token", help="API token for --api."),
    ) -> None:
        """Render a report as HTML and PDF (charts included); prints one JSON line."""
        if kind not in reports.KINDS:
            raise typer.BadParameter(f"kind must be one of {', '.join(reports.KINDS)}")
        s = settings()
        store = report_store(s, api, token)
        while True:
            end = timestamp(until, "--to") if until else datetime.now(UTC)
            start = timestamp(since, "--from") if since else end - _DEFAULT_SPAN[kind]
            result = _one_report(s, store, kind, Span(start, end), out, email, rate_limit)
            print(json.dumps(result), flush=True)
            if not every:
                return
            time.sleep(parse_duration(every))


def compliance_inputs(s: Settings) -> ComplianceInputs:
    """Stated response times, the audit key and anchors, the tokens and privacy rules."""
    rules = ([{"name": r.name, "kind": r.kind, "action": r.action, "fields": ", ".join(r.fields)}
              for r in load_privacy(s.privacy.config_file).rules] if s.privacy.enabled else [])
    tokens = [{k: e.get(k) for k in ("name", "role", "created")}
              for e in TokenStore(s.web.token_path(s.data_dir)).entries()]
    return ComplianceInputs(load_compliance(s.web.compliance_file),
                            s.audit.key.get_secret_value().encode(), read_anchors(s.data_dir),
                            tokens, rules)


def _one_report(s: Settings, store: Store, kind: str, span: Span, out: Path,
                email: list[str], rate_limit: float) -> dict[str, object]:
    started = time.perf_counter()
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"{kind} report", total=8)

        def step(what: str) -> None:
            progress.update(task, advance=1, description=f"{kind} report: {what}")

        rep = reports.build(kind, store, s.clickhouse.database, span,
                            rate_limit_per_s=rate_limit, step=step,
                            compliance=compliance_inputs(s) if kind == "compliance" else None)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"{kind}-{span.until:%Y%m%dT%H%M}"
        html = rep.html()
        stem.with_suffix(".html").write_text(html)
        progress.update(task, description=f"{kind} report: PDF")
        rep.pdf(stem.with_suffix(".pdf"))
    pdf = stem.with_suffix(".pdf")
    if email:
        send_report(s.alerting.smtp, email, f"logwarden {kind} report", html,
                    pdf.read_bytes(), pdf.name)
    return {"kind": kind, "html": str(stem.with_suffix(".html")), "pdf": str(pdf),
            "sections": [t for t, _ in rep.sections], "emailed": email,
            "seconds": round(time.perf_counter() - started, 2)}
