"""Incident endpoints and the /incidents page: list, one incident with its merged timeline,
responder actions (ack, mitigate, resolve, note), the postmortem draft and the metrics.

Actions are written as a new version of the incident in the store (versions grow with wall
time); the incident stage adopts newer versions on its next tick. Who acted is the token's
name, never a field of the body.
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from incidents.metrics import incident_metrics
from incidents.model import Incident, IncidentError, TimelineEntry, apply_action
from incidents.postmortem import markdown, to_html
from sinks.clickhouse.queries import incidents as q
from web.auth import require
from web.http import ApiError
from web.routes_api import CTX_KEY, json_response

_SINCE = re.compile(r"^(\d+)([smhdw])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
ACTIONS = ("ack", "mitigate", "resolve", "note")
ALERTS_AFTER_MS = 600_000  # an incident's alerts fire up to this long after its last signal


def since_ms(text: str, now_ms: int) -> int:
    """``24h``, ``7d``, ``90m`` back from now, or epoch ms; ApiError otherwise.

    >>> since_ms("2h", 10_000_000)
    2800000
    """
    m = _SINCE.match(text.strip())
    if m:
        return now_ms - int(m.group(1)) * _UNIT_MS[m.group(2)]
    if text.strip().isdigit():
        return int(text)
    raise ApiError(400, "bad_since", f"since {text!r}: use e.g. 24h, 7d, 90m or epoch ms")


async def list_handler(request: web.Request) -> web.Response:
    """GET /api/incidents?since=24h&status=&service="""
    require(request, "viewer")
    ctx = request.app[CTX_KEY]
    qs = request.query
    start = since_ms(qs.get("since", "24h"), int(time.time() * 1000))
    docs = await ctx.read(lambda s, db: q.list_incidents(
        s, db, start, status=qs.get("status") or None, service=qs.get("service") or None))
    return json_response({"items": docs})


async def _one(request: web.Request) -> dict[str, Any]:
    ctx = request.app[CTX_KEY]
    iid = request.match_info["id"][:100]
    doc = await ctx.read(lambda s, db: q.get_incident(s, db, iid))
    if doc is None:
        raise ApiError(404, "no_such_incident", f"no incident {iid!r}")
    return doc


async def with_timeline(request: web.Request, doc: dict[str, Any]) -> dict[str, Any]:
    """The incident with alerts, notifications and runbook actions merged into its timeline."""
    ctx = request.app[CTX_KEY]
    ts = int(doc["ts"])
    wall_until = int(doc.get("resolved_ms") or time.time() * 1000) + 60_000
    wall_since = int(doc.get("opened_wall_ms") or ts) - 300_000
    until = int(doc.get("last_signal_ms") or ts) + ALERTS_AFTER_MS
    rows = await ctx.read(lambda s, db: q.related_rows(
        s, db, doc["services"], ts - 300_000, until, doc["id"], wall_since, wall_until))
    extra = [TimelineEntry(ts=int(r["ts"]), kind=str(r["kind"]), text=str(r["text"]),
                           ref=str(r["ref"])).model_dump() for r in rows]
    doc = dict(doc)
    doc["timeline"] = sorted(doc["timeline"] + extra, key=lambda e: e["ts"])
    return doc


async def show_handler(request: web.Request) -> web.Response:
    """GET /api/incidents/{id}"""
    require(request, "viewer")
    return json_response(await with_timeline(request, await _one(request)))


async def action_handler(request: web.Request) -> web.Response:
    """POST /api/incidents/{id}/{action} with optional {"text": ...}"""
    who = require(request, "responder")
    action = request.match_info["action"]
    if action not in ACTIONS:
        raise ApiError(404, "no_such_action", f"actions: {', '.join(ACTIONS)}")
    body = await request.json() if request.can_read_body else {}
    text = str((body or {}).get("text", ""))[:2000]
    inc = Incident.model_validate(await _one(request))
    now = int(time.time() * 1000)
    try:
        new = apply_action(inc, action, who.name, now, text)  # type: ignore[arg-type]
    except IncidentError as e:
        raise ApiError(409, "incident_state", str(e)) from e
    new.version = max(new.version, inc.version + 1, now)
    ctx = request.app[CTX_KEY]
    await ctx.run(lambda: q.save_incident(ctx.store, ctx.db, new.model_dump(mode="json"), now))
    return json_response(new.model_dump(mode="json"))


async def postmortem_handler(request: web.Request) -> web.Response:
    """GET /api/incidents/{id}/postmortem?format=md|html"""
    require(request, "viewer")
    doc = await with_timeline(request, await _one(request))
    if request.query.get("format", "md") == "html":
        return web.Response(text=to_html(doc), content_type="text/html")
    return web.Response(text=markdown(doc), content_type="text/markdown")


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /api/incident-metrics?since=30d"""
    require(request, "viewer")
    ctx = request.app[CTX_KEY]
    start = since_ms(request.query.get("since", "30d"), int(time.time() * 1000))
    docs = await ctx.read(lambda s, db: q.list_incidents(s, db, start, limit=10_000))
    return json_response(incident_metrics(docs))


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Incidents</title>
<link rel="stylesheet" href="/static/style.css"></head><body>
<nav><a href="/">Fleet</a> <a href="/alerts">Alerts</a> <a href="/incidents">Incidents</a></nav>
<h1>Incidents</h1>
<table id="incidents" class="grid"><thead><tr><th>opened</th><th>severity</th>
<th>status</th><th>services</th><th>root cause (ranked)</th><th>evidence</th>
<th>alerts</th><th>users affected</th></tr></thead><tbody></tbody></table>
<script>
const ESC={'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'};
function esc(s){return String(s).replace(/[&<>"']/g,c=>ESC[c]);}
async function load(){
 const r=await fetch('/api/incidents?since=7d'); const d=await r.json();
 document.querySelector('#incidents tbody').innerHTML=d.items.map(i=>'<tr><td>'+
  esc(new Date(i.ts).toISOString())+'</td><td>'+esc(i.severity)+'</td><td>'+esc(i.status)+
  '</td><td>'+esc(i.services.join(', '))+'</td><td>'+esc(i.root_cause.join(' > '))+
  '</td><td>'+esc((i.suspects[0]||{evidence:[]}).evidence.slice(0,2).join('; '))+'</td><td>'+
  esc(i.alerts+i.anomalies)+'</td><td>'+esc(i.users_affected||0)+'</td></tr>').join('');
}
load(); setInterval(load, 5000);
</script></body></html>"""


async def page_handler(request: web.Request) -> web.Response:
    """GET /incidents: the dashboard page (polls the API)."""
    require(request, "viewer")
    return web.Response(text=PAGE, content_type="text/html")


def add_incident_routes(app: web.Application) -> None:
    """Register the incident API and page."""
    app.router.add_get("/api/incidents", list_handler)
    app.router.add_get("/api/incident-metrics", metrics_handler)
    app.router.add_get("/api/incidents/{id}", show_handler)
    app.router.add_get("/api/incidents/{id}/postmortem", postmortem_handler)
    app.router.add_post("/api/incidents/{id}/{action}", action_handler)
    app.router.add_get("/incidents", page_handler)
