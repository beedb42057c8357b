"""Reports (daily, weekly, incident, compliance): figures from the typed reads, HTML with
inline SVG charts, PDF through weasyprint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries import alerts as alerts_q
from sinks.clickhouse.queries import base as base_q
from sinks.clickhouse.queries import pipeline as pipeline_q
from sinks.clickhouse.queries import quality as quality_q
from sinks.clickhouse.queries import telemetry as telemetry_q
from web.compliance import ComplianceConfig, ComplianceInputs
from web.compliance import sections as compliance_sections
from web.svgchart import bar_chart, line_chart

KINDS = ("daily", "weekly", "incident", "compliance")
_CSS = """body{font-family:sans-serif;font-size:11px;color:#1d2330}h1{font-size:20px}
h2{font-size:15px;border-bottom:1px solid #ccc;margin-top:18px}table{border-collapse:collapse;
width:100%}td,th{border-bottom:1px solid #e3e6eb;padding:2px 6px;text-align:left}
.kpi td{font-size:13px}.nodata{color:#888;font-style:italic}.ok{color:#17692a}
.bad{color:#b00020}"""


def as_dt(v: Any) -> datetime | None:
    """A datetime from a store value (datetime, or ISO text via the worker API); 1970 is None."""
    if v is None or v == "":
        return None
    dt = v if isinstance(v, datetime) else datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return None if dt.year <= 1970 else dt


def _mean_s(pairs: list[tuple[datetime | None, datetime | None]]) -> float | None:
    gaps = [(b - a).total_seconds() for a, b in pairs if a and b and b >= a]
    return sum(gaps) / len(gaps) if gaps else None


def kpis(history: list[dict[str, Any]], feedback: list[dict[str, Any]]) -> dict[str, Any]:
    """MTTD, MTTA, MTTR (seconds), alert volume, noise ratio and false-alert rate.

    >>> t = "2024-01-01T00:00:{:02d}+00:00"
    >>> k = kpis([{"trigger_at": t.format(0), "fired_at": t.format(10), "acked_at": t.format(40),
    ...            "resolved_at": t.format(50), "acked": 1, "flapping": 0}], [])
    >>> (k["mttd_s"], k["mtta_s"], k["mttr_s"], k["noise_ratio"])
    (10.0, 30.0, 40.0, 0.0)
    """
    rows = [{k: as_dt(v) if k.endswith("_at") else v for k, v in r.items()} for r in history]
    verdicts = [f["verdict"] for f in feedback if f.get("target_kind") == "alert"]
    judged = [v for v in verdicts if v in ("true", "false")]
    noisy = sum(1 for r in rows if not r.get("acked") or r.get("flapping"))
    return {"alerts": len(rows),
            "mttd_s": _mean_s([(r["trigger_at"], r["fired_at"]) for r in rows]),
            "mtta_s": _mean_s([(r["fired_at"], r["acked_at"]) for r in rows]),
            "mttr_s": _mean_s([(r["fired_at"], r["resolved_at"]) for r in rows]),
            "noise_ratio": noisy / len(rows) if rows else None,
            "false_alert_rate": judged.count("false") / len(judged) if judged else None}


def regressions(routes: list[dict[str, Any]], changes: list[dict[str, Any]],
                min_ratio: float = 1.2) -> list[dict[str, Any]]:
    """Routes whose p95 grew by ``min_ratio`` or more, each with the change it followed."""
    out = []
    for r in routes:
        before, after = float(r["p95_before"] or 0), float(r["p95_after"] or 0)
        if before <= 0 or after < before * min_ratio:
            continue
        mine = sorted((c for c in changes if c["service"] == r["service"]),
                      key=lambda c: str(c["ts"]))
        cause = mine[-1] if mine else None
        since = (f"since {cause['kind']} '{cause['description']}' at {cause['ts']}"
                 if cause else "with no recorded change (look at load and dependencies)")
        out.append({**r, "ratio": after / before, "advice":
                    f"{r['service']} {r['route']}: p95 {before:.0f} → {after:.0f} ms "
                    f"(+{100 * (after / before - 1):.0f}%) {since}; profile this route, "
                    "compare it with the previous release and check its downstream calls."})
    return sorted(out, key=lambda r: -float(r["ratio"]))


def forecast(usage: list[dict[str, Any]], limit_per_s: float) -> list[dict[str, Any]]:
    """Per service: linear trend of peak rate and when it crosses ``limit_per_s``."""
    by: dict[str, list[tuple[float, float]]] = {}
    for u in usage:
        t = as_dt(u["bucket"])
        if t:
            by.setdefault(u["service"], []).append((t.timestamp(), float(u["peak_rate_per_s"])))
    out = []
    for svc, pts in sorted(by.items()):
        n = len(pts)
        mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
        var = sum((p[0] - mx) ** 2 for p in pts)
        slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / var if var else 0.0
        last = pts[-1][1]
        days = ((limit_per_s - last) / slope / 86400) if slope > 0 and last < limit_per_s \
            else None
        out.append({"service": svc, "peak_rate_per_s": last, "growth_per_day": slope * 86400,
                    "days_to_limit": days, "growth_pct": 100 * (pts[-1][1] / pts[0][1] - 1)
                    if pts[0][1] else None})
    return out


@dataclass
class Report:
    """A report's title, period and rendered sections (HTML fragments)."""

    kind: str
    span: base_q.Span
    sections: list[tuple[str, str]] = field(default_factory=list)

    def html(self) -> str:
        """The whole report as one HTML document."""
        body = "".join(f"<h2>{escape(t)}</h2>{h}" for t, h in self.sections)
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>logwarden "
                f"{self.kind} report</title><style>{_CSS}</style></head><body>"
                f"<h1>logwarden {self.kind} report</h1><p>{self.span.since:%Y-%m-%d %H:%M} - "
                f"{self.span.until:%Y-%m-%d %H:%M} UTC</p>{body}</body></html>")

    def pdf(self, path: Path) -> None:
        """Write the PDF (weasyprint renders the inline SVG charts)."""
        from weasyprint import HTML  # imported late: it loads pango

        HTML(string=self.html()).write_pdf(str(path))


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return '<p class="nodata">no data in this period</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else escape(str(v if v is not None else "-"))

    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v / 60:.1f} min" if v >= 120 else f"{v:.0f} s"


def build(kind: str, store: Store, db: str, span: base_q.Span, *, rate_limit_per_s: float = 1000.0,
          step: Callable[[str], None] = lambda s: None,
          compliance: ComplianceInputs | None = None) -> Report:
    """Gather the figures of a ``kind`` report over ``span``; ``step`` reports progress.
    ``compliance``: the stated response times, audit key and anchors, tokens and privacy
    rules of a compliance report (default: none stated, no key, no anchors)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    rep, big = Report(kind, span), base_q.Page(1000)
    step("alerts and KPIs")
    history = alerts_q.alert_history(store, db, span)
    fb = quality_q.feedback(store, db, span, big)["items"]
    k = kpis(history, fb)
    rep.sections.append(("KPIs", "<table class='kpi'>" + "".join(
        f"<tr><td>{name}</td><td>{val}</td></tr>" for name, val in [
            ("Alerts", k["alerts"]), ("MTTD", _fmt_s(k["mttd_s"])),
            ("MTTA", _fmt_s(k["mtta_s"])), ("MTTR", _fmt_s(k["mttr_s"])),
            ("Noise ratio (never acked or flapping)", _pct(k["noise_ratio"])),
            ("False-alert rate (feedback)", _pct(k["false_alert_rate"]))]) + "</table>"))
    step("error templates")
    top = telemetry_q.top_error_templates(store, db, span)
    for t in top:
        t["trend"] = f"{t['first_half']} → {t['second_half']}"
    rep.sections.append(("Top error templates", bar_chart(
        "Error lines per template", [(f"{t['service']} {t['template_id']}", float(t["lines"]))
                                     for t in top]) + _table(
        top, ["service", "template_id", "lines", "trend", "example"])))
    step("latency")
    routes = telemetry_q.route_latency(store, db, span)
    chg = telemetry_q.changes(store, db, span, big)["items"]
    regs = regressions(routes, chg)
    advice = "".join(f"<li>{escape(r['advice'])}</li>" for r in regs[:10])
    rep.sections.append(("Slowest routes and latency regressions", _table(
        routes[:15], ["service", "route", "requests", "p95_before", "p95_after"])
        + (f"<h3>Recommendations</h3><ul>{advice}</ul>" if advice else
           '<p class="nodata">no route got 20% slower in this period</p>')))
    step("capacity and usage")
    bucket = "hour" if (span.until - span.since).days < 3 else "day"
    use = pipeline_q.usage(store, db, span, bucket)
    fc = forecast(use, rate_limit_per_s)
    series: dict[str, list[tuple[float, float]]] = {}
    for u in use:
        when = as_dt(u["bucket"])
        if when:
            series.setdefault(u["service"], []).append((when.timestamp(), float(u["events"])))
    rep.sections.append(("Capacity trend and forecast", line_chart(
        f"Events per {bucket} and service", series) + _table(
        fc, ["service", "peak_rate_per_s", "growth_per_day", "days_to_limit"])
        + f"<p>Limit: {rate_limit_per_s:g} events/s per service.</p>"))
    rep.sections.append(("Usage growth per service", _table(fc, ["service", "growth_pct"])))
    if kind == "incident":
        step("incident timeline")
        an = telemetry_q.anomalies(store, db, span, base_q.Page(200))["items"]
        rep.sections.append(("Timeline: changes", _table(chg, ["ts", "service", "kind",
                                                                "description"])))
        rep.sections.append(("Timeline: anomalies", _table(an, [
            "ts", "service", "route", "feature", "observed", "expected", "severity"])))
        rep.sections.append(("Alerts", _table(history, ["fired_at", "service", "rule",
                                                         "acked_at", "resolved_at"])))
    if kind == "compliance":
        step("compliance")
        inputs = compliance or ComplianceInputs(ComplianceConfig())
        rep.sections[:0] = compliance_sections(store, db, span, inputs, _table)
    step("done")
    return rep


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"
