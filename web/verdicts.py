"""Verdict endpoints: ``POST /api/verdicts`` (responder token: the alerts page, scripts) and
the signed e-mail links ``/verdicts/{token}`` (GET: a confirmation page, POST: record).
The Slack button and the SMS reply arrive at the existing webhooks (``web/alerts.py``),
which hand them here after their signature checks.

Every verdict is published as feedback (``alerting/verdicts.py``); the false-alert budget
and detector quality read it from there.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from pydantic import ValidationError

from alerting.config import AlertingSettings
from alerting.verdicts import LABELS, VerdictInput, read_link_token, to_feedback, verdict_name
from schemas.changes import Feedback
from web.auth import require
from web.http import ApiError, json_errors

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>logwarden verdict</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}button{{font-size:1.2em}}
</style></head><body><h1>logwarden</h1>{body}</body></html>"""


def _page(body: str, status: int = 200) -> web.Response:
    return web.Response(text=_PAGE.format(body=body), status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@dataclass
class VerdictsApi:
    """Records verdicts as feedback through ``publish`` (the worker's feedback producer)."""

    settings: AlertingSettings
    publish: Callable[[Feedback], None]
    clock: Callable[[], float] = field(default=time.time)
    recorded: int = 0

    def record(self, v: VerdictInput) -> Feedback:
        """Publish one verdict as feedback; returns what was published."""
        fb = to_feedback(v, int(self.clock() * 1000))
        self.publish(fb)
        self.recorded += 1
        return fb

    def register(self, app: web.Application) -> None:
        """Add ``POST /api/verdicts`` and the e-mail link pages."""
        app.router.add_post("/api/verdicts", json_errors(self.post_api))
        app.router.add_get("/verdicts/{token}", self.confirm_page)
        app.router.add_post("/verdicts/{token}", self.post_link)

    async def post_api(self, request: web.Request) -> web.Response:
        """``{"kind": "alert", "target": "<fingerprint>", "verdict": "useful"}``."""
        who = require(request, "responder")
        try:
            body = orjson.loads(await request.read() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("send a JSON object")
            name = verdict_name(str(body.get("verdict", "")))
            if name is None:
                raise ValueError("verdict must be 'useful' or 'false_alarm'")
            via = "page" if body.get("via") == "page" else "api"
            v = VerdictInput(kind=body.get("kind", "alert"), target=str(body.get("target", "")),
                             verdict=name, by=who.name,
                             via=via, comment=str(body.get("comment", ""))[:4096])
            if not v.target:
                raise ValueError("target (an alert fingerprint or incident id) is required")
        except (orjson.JSONDecodeError, ValueError, ValidationError) as e:
            raise ApiError(400, "bad_verdict", str(e)[:500]) from None
        fb = self.record(v)
        return web.Response(status=202, content_type="application/json", body=orjson.dumps(
            {"recorded": v.verdict, "kind": v.kind, "target": v.target, "by": who.name,
             "event_id": fb.event_id}))

    def _claim_or_page(self, request: web.Request) -> VerdictInput | web.Response:
        secret = self.settings.verdict_secret.get_secret_value()
        if not secret:
            return _page("<p>Verdict links are switched off on this server "
                         "(no LOGWARDEN_ALERTING_VERDICT_SECRET).</p>", 503)
        token = request.match_info["token"]
        claim = read_link_token(token, secret, self.clock())
        if claim is None:
            return _page("<p>This link is not valid or has expired. Use the buttons in Slack "
                         "or on the alerts page instead.</p>", 403)
        return VerdictInput(kind=claim.kind, target=claim.target, verdict=claim.verdict,
                            by=claim.by, via="email", nonce=token[-24:])

    async def confirm_page(self, request: web.Request) -> web.Response:
        """GET a link: show what it would record, with a button (scanners only GET)."""
        v = self._claim_or_page(request)
        if isinstance(v, web.Response):
            return v
        label = LABELS[v.verdict]
        return _page(f"<p>Mark {html.escape(v.kind)} <code>{html.escape(v.target)}</code> as "
                     f"<b>{html.escape(label)}</b>, as {html.escape(v.by)}?</p>"
                     f"<form method='post'><button type='submit'>Record: "
                     f"{html.escape(label)}</button></form>")

    async def post_link(self, request: web.Request) -> web.Response:
        """POST a link: record the verdict it carries."""
        v = self._claim_or_page(request)
        if isinstance(v, web.Response):
            return v
        self.record(v)
        return _page(f"<p>Recorded: <b>{html.escape(LABELS[v.verdict])}</b> for "
                     f"{html.escape(v.kind)} <code>{html.escape(v.target)}</code>. "
                     "Thank you.</p>")
