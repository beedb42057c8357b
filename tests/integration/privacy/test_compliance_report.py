"""`logwarden report compliance` on chDB: HTML and PDF (read back with pypdf) hold access by
user and role, redaction counts, retention per table, the audit chain's verdict, dead
letters, and alert handling against the stated response times; a tampered chain shows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from audit.settings import AuditSettings
from audit.trail import AuditTrail
from cli.main import cli
from cli.web import _one_report
from privacy.settings import PrivacySettings
from sinks.clickhouse import rows
from sinks.clickhouse.client import Client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.queries.base import Span
from sinks.clickhouse.settings import ClickHouseSettings
from streams.settings import Settings
from web.auth import TokenStore
from web.settings import WebSettings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
KEY = "compliance-audit-key"


@pytest.fixture
def settings(chdb_store: Client, tmp_path: Path) -> Iterator[Settings]:
    s = Settings(data_dir=tmp_path,
                 clickhouse=ClickHouseSettings(database=f"lw_cmp_{uuid.uuid4().hex[:8]}"),
                 privacy=PrivacySettings(config_file=ROOT / "deploy/config/privacy.yaml"),
                 web=WebSettings(compliance_file=ROOT / "deploy/config/compliance.yaml"),
                 audit=AuditSettings(key=KEY))
    migrate(chdb_store, s.clickhouse)
    yield s
    chdb_store.command(f"DROP DATABASE IF EXISTS {s.clickhouse.database}")


def seed(store: Client, s: Settings, now: datetime) -> None:
    db = s.clickhouse.database
    TokenStore(s.web.token_path(s.data_dir)).create("alice", "admin")
    trail = AuditTrail(store, db, "api", KEY.encode(), s.data_dir)
    trail.record("alice", "admin", "token.create", "bob", "role responder")
    trail.record("bob", "responder", "query", "/api/query", "SELECT 1", "200")
    trail.record("bob", "responder", "query", "/api/query", "SELECT * FROM merge()", "403")
    trail.record("carol", "responder", "alert.ack", "/api/alerts/fp1/ack", "", "200")
    ms = int(now.timestamp() * 1000)
    store.insert(f"{db}.redaction_counts", rows.redaction_rows(
        ms - 60_000, "w1", {"email": 120, "ipv4": 30, "user.id": 7}),
        column_names=list(rows.REDACTION_COLUMNS))
    store.insert(f"{db}.dead_letters", [rows.dead_letter_row(
        ms - 30_000, "logwarden.logs.v1", 0, 5, "ingest.logs", "ts: field required",
        b"{}", b"shop")], column_names=list(rows.DEAD_LETTER_COLUMNS))
    fired = now - timedelta(hours=2)

    def alert(fp: str, sev: str, state: str, at: datetime, version: int) -> None:
        store.command(
            f"INSERT INTO {db}.alerts (ts, fingerprint, rule, state, severity, service, "
            "starts_at, trigger_ts, version, event_id) VALUES ({ts:DateTime64(3)}, {fp:String}, "
            "'ErrorBurst', {st:String}, {sev:String}, 'shop', {ts:DateTime64(3)}, "
            "{ts:DateTime64(3)}, {v:UInt64}, {e:String})",
            parameters={"ts": at, "fp": fp, "st": state, "sev": sev, "v": version,
                        "e": f"{fp}-{version}"})

    alert("fp1", "critical", "firing", fired, 1)
    alert("fp1", "critical", "acknowledged", fired + timedelta(minutes=12), 2)
    alert("fp1", "critical", "resolved", fired + timedelta(minutes=40), 3)
    alert("fp2", "warning", "firing", fired, 1)
    alert("fp2", "warning", "acknowledged", fired + timedelta(minutes=2), 2)
    alert("fp2", "warning", "resolved", fired + timedelta(minutes=20), 3)


def pdf_text(path: str) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(path).pages)


def test_compliance_report_html_and_pdf(settings: Settings, chdb_store: Client,
                                        tmp_path: Path) -> None:
    now = datetime.now(UTC)
    seed(chdb_store, settings, now)
    span = Span(now - timedelta(days=1), now + timedelta(minutes=1))
    result = _one_report(settings, chdb_store, "compliance", span, tmp_path / "out", [], 1e3)
    assert result["sections"][:6] == [
        "Access by user and role", "Redaction of personal data",
        "Retention per table and what was purged", "Audit trail verification",
        "Dead letters", "Alert handling against stated response times"]
    html = Path(str(result["html"])).read_text()
    text = pdf_text(str(result["pdf"]))
    for doc in (html, text):
        assert "Audit chain verified" in doc and "4 rows from 1 writers" in doc
        assert "alice" in doc and "carol" in doc and "alert.ack" in doc
        assert "157 values redacted or hashed" in doc
        assert "ack after 12.0 min (stated 5.0 min)" in doc  # the critical alert's breach
        assert "ts: field required" in doc
        assert "14 days" in doc and "audit" in doc  # logs' retention; audit kept
    assert "refused" in html and ">1</td>" in html  # bob's refused query is counted
    # tampering shows in the next report
    chdb_store.command(f"ALTER TABLE {settings.clickhouse.database}.audit UPDATE actor = "
                       "'mallory' WHERE seq = 1", settings={"mutations_sync": 2})
    later = _one_report(settings, chdb_store, "compliance", span, tmp_path / "out2", [], 1e3)
    text = pdf_text(str(later["pdf"]))
    assert "Audit chain BROKEN" in text and "seq 1: its content does not match" in text


def test_commands_have_help() -> None:
    runner = CliRunner()
    for args in (["audit", "verify", "--help"], ["audit", "list", "--help"],
                 ["report", "--help"]):
        got = runner.invoke(cli, args)
        assert got.exit_code == 0 and "Usage" in got.output
