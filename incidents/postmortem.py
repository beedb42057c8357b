"""Draft a postmortem from an incident: summary, impact, timeline, root cause with evidence,
actions taken, follow-ups to fill in. Markdown, and HTML from the same content."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def _t(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _dur(a: int | None, b: int | None) -> str:
    if a is None or b is None:
        return "-"
    s = max(0, int(b) - int(a)) // 1000
    return f"{s // 3600}h {s % 3600 // 60}m {s % 60}s" if s >= 3600 else f"{s // 60}m {s % 60}s"


def sections(d: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(heading, lines) of the draft; lines are plain text, list items start with '- '."""
    root = d.get("root_cause") or []
    summary = [f"{d.get('title') or 'Incident'} ({d['id']}), severity {d['severity']}, "
               f"status {d['status']}.",
               f"First signal {_t(d['ts'])}; evidence ready {_t(d.get('evidence_ms'))}; "
               f"acknowledged {_t(d.get('acknowledged_ms'))}; resolved "
               f"{_t(d.get('resolved_ms'))} (time to resolve "
               f"{_dur(d['ts'], d.get('resolved_ms'))}).",
               f"Most likely root cause: {root[0] if root else 'not determined'}."]
    impact = [f"- services: {', '.join(d.get('services') or []) or '-'}",
              f"- routes: {', '.join(d.get('routes') or []) or '-'}",
              f"- users affected: {d.get('users_affected') or 'unknown'}",
              f"- alerts: {d.get('alerts', 0)}, anomalies: {d.get('anomalies', 0)}"]
    timeline = [f"- {_t(e['ts'])} [{e['kind']}] {e['text']}"
                + (f" ({e['actor']})" if e.get("actor") else "")
                for e in sorted(d.get("timeline") or [], key=lambda e: e["ts"])]
    cause = []
    for i, s in enumerate(d.get("suspects") or [], 1):
        cause.append(f"- {i}. {s['service']} (score {s['score']})")
        cause += [f"  - {line}" for line in s.get("evidence", [])]
    if d.get("suspect_changes"):
        cause.append(f"- suspect changes: {', '.join(d['suspect_changes'])}")
    cause += [f"- sample: {line}" for line in (d.get("samples") or [])[:3]]
    actions = [f"- {_t(e['ts'])} {e['text']}" + (f" ({e['actor']})" if e.get("actor") else "")
               for e in d.get("timeline") or [] if e["kind"] in ("action", "status", "note")]
    follow = ["- [ ] What would have detected this sooner?",
              "- [ ] What would have prevented it?",
              "- [ ] Owner and due date for each fix:"]
    return [("Summary", summary), ("Impact", impact), ("Timeline", timeline or ["- -"]),
            ("Root cause and evidence", cause or ["- not determined"]),
            ("Actions taken", actions or ["- none recorded"]), ("Follow-ups", follow)]


def markdown(d: Mapping[str, Any]) -> str:
    """The draft in Markdown."""
    out = [f"# Postmortem: {d.get('title') or d['id']}", ""]
    for head, lines in sections(d):
        out += [f"## {head}", "", *lines, ""]
    return "\n".join(out)


def to_html(d: Mapping[str, Any]) -> str:
    """The same draft as a standalone HTML page (every value escaped)."""
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>Postmortem {e(d['id'])}</title></head><body>",
           f"<h1>Postmortem: {e(str(d.get('title') or d['id']))}</h1>"]
    for head, lines in sections(d):
        out.append(f"<h2>{e(head)}</h2>")
        items = [ln for ln in lines if ln.lstrip().startswith("- ")]
        if items and len(items) == len(lines):
            out.append("<ul>" + "".join(f"<li>{e(ln.lstrip()[2:])}</li>" for ln in lines)
                       + "</ul>")
        else:
            out += [f"<p>{e(ln)}</p>" for ln in lines]
    out.append("</body></html>")
    return "\n".join(out)
