"""The sections of the compliance report: access by user and role, redaction counts,
retention per table, the audit chain's verification, dead letters, and alert handling
against the response times stated in deploy/config/compliance.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alerting.yamlfile import Duration, load_yaml_model
from audit.chain import verify
from audit.trail import audit_rows
from sinks.clickhouse.client import Store
from sinks.clickhouse.queries import compliance as compliance_q
from sinks.clickhouse.queries.base import Span


class ResponseTime(BaseModel):
    """How soon an alert of one severity must be acknowledged and resolved (seconds)."""

    model_config = {"extra": "forbid", "frozen": True}

    acknowledge: Duration
    resolve: Duration


class ComplianceConfig(BaseModel):
    """deploy/config/compliance.yaml."""

    model_config = {"extra": "forbid", "frozen": True}

    owner: str = ""
    response_times: dict[str, ResponseTime] = {}


def load_compliance(path: Path) -> ComplianceConfig:
    """Read the file; errors name file, line and field."""
    return load_yaml_model(path, ComplianceConfig)


@dataclass
class ComplianceInputs:
    """What the report needs besides the store: stated times, the audit key and anchors,
    the API tokens (name, role, created) and the privacy rules in force."""

    config: ComplianceConfig
    audit_key: bytes = b""
    anchors: dict[str, tuple[int, str]] = field(default_factory=dict)
    tokens: list[dict[str, Any]] = field(default_factory=list)
    privacy_rules: list[dict[str, Any]] = field(default_factory=list)


def _dt(v: Any) -> datetime | None:
    """A datetime from a store value (datetime, or ISO text via the worker API)."""
    if v is None or v == "":
        return None
    dt = v if isinstance(v, datetime) else datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return None if dt.year <= 1970 else dt


def handling(alerts: list[dict[str, Any]], stated: dict[str, ResponseTime],
             now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per severity: alerts, acked and resolved in time, breaches; the breaching alerts).

    An alert not yet acknowledged counts as a breach once its time is past ``now``."""
    summary: dict[str, dict[str, Any]] = {}
    breaches = []
    for a in alerts:
        sev, fired = str(a.get("severity") or "warning"), _dt(a.get("fired_at"))
        s = summary.setdefault(sev, {"severity": sev, "alerts": 0, "ack_in_time": 0,
                                     "resolved_in_time": 0, "breaches": 0,
                                     "ack_target": "-", "resolve_target": "-"})
        s["alerts"] += 1
        target = stated.get(sev)
        if target is None or fired is None:
            continue
        s["ack_target"], s["resolve_target"] = _fmt(target.acknowledge), _fmt(target.resolve)
        late = []
        for what, at, limit in (("ack", _dt(a.get("acked_at")), target.acknowledge),
                                ("resolve", _dt(a.get("resolved_at")), target.resolve)):
            took = ((at or now) - fired).total_seconds()
            if took <= limit and at is not None:
                s["ack_in_time" if what == "ack" else "resolved_in_time"] += 1
            elif took > limit:
                late.append(f"{what} {'after' if at else 'pending for'} {_fmt(took)} "
                            f"(stated {_fmt(limit)})")
        if late:
            s["breaches"] += 1
            breaches.append({"fingerprint": a.get("fingerprint"), "rule": a.get("rule"),
                             "service": a.get("service"), "severity": sev,
                             "fired_at": a.get("fired_at"), "breach": "; ".join(late)})
    return sorted(summary.values(), key=lambda s: str(s["severity"])), breaches


def _fmt(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def sections(store: Store, db: str, span: Span, inputs: ComplianceInputs,
             table: Any) -> list[tuple[str, str]]:
    """The compliance sections as (title, HTML); ``table`` renders rows (``web.reports``)."""
    out = []
    access = compliance_q.access(store, db, span)
    tokens = table(inputs.tokens, ["name", "role", "created"])
    out.append(("Access by user and role", table(access, [
        "actor", "role", "action", "n", "refused", "first", "last"])
        + "<h3>API tokens and their roles</h3>" + tokens))
    red = compliance_q.redactions(store, db, span)
    total = sum(int(r["matches"]) for r in red)
    out.append(("Redaction of personal data", f"<p>{total} values redacted or hashed at "
                "ingest in this period, before storage.</p>"
                + table(red, ["rule", "matches", "workers"])
                + "<h3>Rules in force</h3>"
                + table(inputs.privacy_rules, ["name", "kind", "action", "fields"])))
    ret = compliance_q.retention(store, db)
    past = sum(int(r.get("past_ttl") or 0) for r in ret)
    for r in ret:
        r["retention"] = f"{r['ttl_days']} days" if r["ttl_days"] else "kept (no TTL)"
        r["purged"] = (f"all before {r['column']} - {r['ttl_days']} d" if r["ttl_days"]
                       else "-")
    out.append(("Retention per table and what was purged", table(ret, [
        "table", "retention", "rows", "oldest", "purged", "past_ttl"])
        + f"<p>Rows past their retention still stored (dropped at their part's next "
        f"merge): {past}.</p>"))
    rows = audit_rows(store, db)
    v = verify(rows, inputs.audit_key, inputs.anchors)
    verdict = ("<p class='ok'><b>Audit chain verified</b>: " if v.ok else
               "<p class='bad'><b>Audit chain BROKEN</b>: ")
    problems = "".join(f"<li>{escape(p)}</li>" for p in v.problems[:50])
    out.append(("Audit trail verification", verdict + f"{v.rows} rows from {v.writers} "
                f"writers, {len(inputs.anchors)} anchors checked.</p>"
                + (f"<ul>{problems}</ul>" if problems else "")))
    dl = compliance_q.dead_letters_by_stage(store, db, span)
    out.append(("Dead letters", f"<p>{sum(int(r['n']) for r in dl)} messages refused at "
                "ingest in this period, each kept with its (redacted) bytes and error.</p>"
                + table(dl, ["stage", "n", "first", "last", "example_error"])))
    alerts = compliance_q.alert_handling(store, db, span)
    summary, breaches = handling(alerts, inputs.config.response_times, span.until)
    stated = "".join(f"<li>{escape(sev)}: acknowledge within {_fmt(t.acknowledge)}, "
                     f"resolve within {_fmt(t.resolve)}</li>"
                     for sev, t in inputs.config.response_times.items())
    out.append(("Alert handling against stated response times", f"<ul>{stated}</ul>"
                + table(summary, ["severity", "alerts", "ack_target", "ack_in_time",
                                  "resolve_target", "resolved_in_time", "breaches"])
                + "<h3>Breaches</h3>" + table(breaches, [
                    "fired_at", "severity", "rule", "service", "breach"])))
    return out
