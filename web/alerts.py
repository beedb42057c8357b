"""Alerting endpoints: list alerts, ack / resolve, silences, who is on call, and the Slack and
Twilio webhooks (signatures verified). Writes go to the alert-actions topic through
``publish``; the alerting stage applies them. Reads come from its in-memory view."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiohttp import web
from pydantic import ValidationError

from alerting.config import AlertingConfig, AlertingSettings
from alerting.lifecycle import Alert
from alerting.oncall import who_is_on_call
from alerting.silences import Silence, suppressing
from alerting.webhooks import parse_slack_action, parse_sms_reply, verify_slack, verify_twilio
from alerting.yamlfile import parse_duration


class AlertView(Protocol):
    def alerts(self) -> list[Alert]: ...
    def silences(self) -> list[Silence]: ...
    def find(self, ref: str) -> Alert | None: ...


class ApiRefusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def alert_doc(a: Alert, reason: str = "") -> dict[str, Any]:
    """An alert as the API shows it."""
    return {"fingerprint": a.fingerprint, "code": a.code, "rule": a.rule,
            "state": a.state.value, "labels": a.labels, "annotations": a.annotations,
            "value": a.value, "starts_at": a.starts_at, "updated_at": a.updated_at,
            "ends_at": a.ends_at, "acked_by": a.acked_by, "flapping": a.flapping,
            "suppressed": reason, "summary": a.summary()}


def parse_at(text: str | None, now: float) -> float:
    """Epoch seconds from an ISO time, epoch seconds, or nothing (now)."""
    if not text:
        return now
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiRefusal(400, "bad_time", f"not a time: {text!r} (ISO 8601 or epoch s)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def silence_from(body: dict[str, Any], now: float) -> Silence:
    """A new silence from a POST body: matchers plus ``duration`` or ``ends_at``."""
    doc = {k: v for k, v in body.items() if k != "duration"}
    doc.setdefault("id", f"s-{uuid.uuid4().hex[:12]}")
    doc.setdefault("starts_at", now)
    if "duration" in body:
        doc["ends_at"] = float(doc["starts_at"]) + parse_duration(body["duration"])
    if doc.get("ends_at") is None and not doc.get("recurring"):
        raise ValueError("a silence needs 'duration' or 'ends_at' (or 'recurring')")
    return Silence.model_validate(doc)


@dataclass
class AlertsApi:
    """What the endpoints need from the worker."""

    view: AlertView
    publish: Callable[[dict[str, Any]], Awaitable[None]]
    config: Callable[[], AlertingConfig | None]
    settings: AlertingSettings
    suppressed: Callable[[float], dict[str, str]] = lambda now: {}
    clock: Callable[[], float] = field(default=time.time)

    def register(self, app: web.Application,
                 guard: Callable[[web.Request], None] = lambda r: None) -> None:
        """Add the routes; ``guard`` checks API tokens (not used by the signed webhooks)."""

        def guarded(fn: Callable[[web.Request], Awaitable[web.Response]]
                    ) -> Callable[[web.Request], Awaitable[web.Response]]:
            async def handler(request: web.Request) -> web.Response:
                guard(request)
                try:
                    return await fn(request)
                except ApiRefusal as e:
                    return _json({"error": {"code": e.code, "message": e.message}}, e.status)
            return handler

        app.router.add_get("/api/alerts", guarded(self.list_alerts))
        app.router.add_post("/api/alerts/{ref}/{action:ack|resolve}", guarded(self.act))
        app.router.add_get("/api/silences", guarded(self.list_silences))
        app.router.add_post("/api/silences", guarded(self.add_silence))
        app.router.add_delete("/api/silences/{id}", guarded(self.expire_silence))
        app.router.add_get("/api/oncall", guarded(self.oncall))
        app.router.add_post("/api/slack/interactions", self.slack)
        app.router.add_post("/api/twilio/sms", self.twilio)

    async def list_alerts(self, request: web.Request) -> web.Response:
        want = request.query.get("state", "active")
        reasons = self.suppressed(self.clock())
        out = [alert_doc(a, reasons.get(a.fingerprint, "")) for a in self.view.alerts()
               if want == "all" or a.state.value == want or (want == "active" and a.active)]
        out.sort(key=lambda d: -float(d["starts_at"]))
        return _json({"alerts": out})

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiRefusal(400, "bad_json", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiRefusal(400, "bad_request", "send a JSON object")
        return body

    async def act(self, request: web.Request) -> web.Response:
        ref, action = request.match_info["ref"], request.match_info["action"]
        body = await self._body(request)
        a = self.view.find(ref)
        if a is None:
            raise ApiRefusal(404, "unknown_alert", f"no alert {ref!r}")
        await self.publish({"kind": action, "ref": a.fingerprint,
                            "by": str(body.get("by", "api")), "via": "api"})
        return _json({"queued": action, "fingerprint": a.fingerprint}, 202)

    async def list_silences(self, request: web.Request) -> web.Response:
        now, alerts = self.clock(), self.view.alerts()
        out = [{**s.model_dump(mode="json"), "active": s.active(now),
                "suppressing": [a.fingerprint for a in suppressing(s, alerts, now)]}
               for s in self.view.silences()]
        return _json({"silences": out})

    async def add_silence(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        try:
            s = silence_from(body, self.clock())
        except (ValidationError, ValueError, TypeError) as e:
            raise ApiRefusal(400, "bad_silence", str(e)[:500]) from None
        await self.publish({"kind": "silence", "id": s.id, "by": s.created_by,
                            "silence": s.model_dump(mode="json"), "via": "api"})
        return _json({"id": s.id, "silence": s.model_dump(mode="json")}, 201)

    async def expire_silence(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        await self.publish({"kind": "expire", "id": sid, "via": "api"})
        return _json({"queued": "expire", "id": sid}, 202)

    async def oncall(self, request: web.Request) -> web.Response:
        at = parse_at(request.query.get("at"), self.clock())
        cfg = self.config()
        when = datetime.fromtimestamp(at, tz=UTC)
        out = {s.name: who_is_on_call(s, when) for s in (cfg.schedules if cfg else [])}
        return _json({"at": when.isoformat(), "schedules": out})

    async def slack(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify_slack(body, request.headers.get("X-Slack-Request-Timestamp"),
                          request.headers.get("X-Slack-Signature"),
                          self.settings.slack.signing_secret.get_secret_value(), self.clock())
        if not ok:
            return _json({"error": {"code": "bad_signature",
                                    "message": "Slack signature check failed"}}, 401)
        action = parse_slack_action(body)
        if action is None:
            return _json({"error": {"code": "bad_payload", "message": "no alert action"}}, 400)
        await self.publish({**action.model_dump(), "via": "slack"})
        return web.Response(status=200, text="")

    async def twilio(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = self.settings.twilio.webhook_url or str(request.url)
        ok = verify_twilio(url, form, request.headers.get("X-Twilio-Signature"),
                           self.settings.twilio.auth_token.get_secret_value())
        if not ok:
            return _json({"error": {"code": "bad_signature",
                                    "message": "Twilio signature check failed"}}, 403)
        action = parse_sms_reply(form)
        if action is None:
            reply = "Reply ACK <code> or RESOLVE <code>."
        else:
            a = self.view.find(action.ref)
            if a is None:
                reply = f"No alert with code {action.ref}."
            else:
                await self.publish({**action.model_dump(), "ref": a.fingerprint})
                reply = f"{'Acknowledged' if action.kind == 'ack' else 'Resolved'} {action.ref}."
        xml = ('<?xml version="1.0" encoding="UTF-8"?>'
               f"<Response><Message>{reply}</Message></Response>")
        return web.Response(status=200, text=xml, content_type="application/xml")
