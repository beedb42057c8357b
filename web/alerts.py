"""Alerting endpoints: list alerts, ack / resolve, silences, who is on call, and the Slack and
Twilio webhooks (signatures verified, replays refused). Writes go to the alert-actions topic
through ``publish`` as typed manager inputs; the alerting stage applies them. Reads come
from its in-memory view.

Who acted is the authenticated principal: the API token's name for the JSON endpoints (a
``by`` / ``created_by`` / ``id`` in the body is ignored), the Slack user of a signed
interaction, the configured user whose phone sent an SMS reply."""

from __future__ import annotations

import html
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
from alerting.inputs import Ack, Action, AddSilence, ExpireSilence, Resolve, SmsReply
from alerting.lifecycle import Alert
from alerting.oncall import who_is_on_call
from alerting.replycodes import ReplyCode, normalise_phone
from alerting.silences import Silence, suppressing
from alerting.verdicts import LABELS, VerdictInput, parse_slack_verdict, parse_sms_verdict
from alerting.webhooks import (
    SLACK_TOLERANCE_S,
    TWILIO_REPLAY_WINDOW_S,
    ReplayGuard,
    parse_slack_action,
    parse_sms_reply,
    verify_slack,
    verify_twilio,
)
from alerting.yamlfile import parse_duration
from web.actions import ActionsApi
from web.auth import Principal, require
from web.http import ApiError
from web.verdicts import VerdictsApi


class AlertView(Protocol):
    def alerts(self) -> list[Alert]: ...
    def silences(self) -> list[Silence]: ...
    def find(self, ref: str) -> Alert | None: ...
    def reply_code(self, code: str) -> ReplyCode | None: ...


class ApiRefusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _twiml(reply: str) -> web.Response:
    xml = ('<?xml version="1.0" encoding="UTF-8"?>'
           f"<Response><Message>{html.escape(reply)}</Message></Response>")
    return web.Response(status=200, text=xml, content_type="application/xml")


def phone_owners(cfg: AlertingConfig | None) -> dict[str, str]:
    """Normalised phone number -> who it is: configured users, and receivers' SMS numbers."""
    if cfg is None:
        return {}
    out = {normalise_phone(c.to): f"receiver:{r.name}" for r in cfg.receivers
           for c in r.channels if c.type == "sms"}
    out |= {normalise_phone(u.phone): u.name for u in cfg.users if u.phone}
    return out


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


def silence_from(body: dict[str, Any], now: float, by: str) -> Silence:
    """A new silence from a POST body: matchers plus ``duration`` or ``ends_at``. Its id is
    new and its creator is ``by`` (the principal), whatever the body says."""
    doc = {k: v for k, v in body.items() if k not in ("duration", "id", "created_by", "by")}
    doc["id"] = f"s-{uuid.uuid4().hex[:12]}"
    doc["created_by"] = by
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
    publish: Callable[[Action], Awaitable[None]]
    config: Callable[[], AlertingConfig | None]
    settings: AlertingSettings
    suppressed: Callable[[float], dict[str, str]] = lambda now: {}
    clock: Callable[[], float] = field(default=time.time)
    replays: ReplayGuard = field(default_factory=ReplayGuard)
    verdicts: VerdictsApi | None = None  # Useful / False alarm from Slack, SMS, links, page
    actions: ActionsApi | None = None  # runbook actions: list, approve, reject

    def register(self, app: web.Application,
                 guard: Callable[[web.Request], None] = lambda r: None) -> None:
        """Add the routes; ``guard`` checks API tokens (not used by the signed webhooks).
        Writes also take their principal from the app's auth policy (``web.auth.require``)."""

        def guarded(fn: Callable[[web.Request], Awaitable[web.Response]]
                    ) -> Callable[[web.Request], Awaitable[web.Response]]:
            async def handler(request: web.Request) -> web.Response:
                guard(request)
                try:
                    return await fn(request)
                except (ApiRefusal, ApiError) as e:
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
        if self.verdicts is not None:
            self.verdicts.register(app)
        if self.actions is not None:
            self.actions.register(app)

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
        who = _responder(request)
        ref, action = request.match_info["ref"], request.match_info["action"]
        await self._body(request)  # still has to be JSON; who acts comes from the token
        a = self.view.find(ref)
        if a is None:
            raise ApiRefusal(404, "unknown_alert", f"no alert {ref!r}")
        model = Ack if action == "ack" else Resolve
        await self.publish(model(ref=a.fingerprint, by=who.name, via="api"))
        return _json({"queued": action, "fingerprint": a.fingerprint, "by": who.name}, 202)

    async def list_silences(self, request: web.Request) -> web.Response:
        now, alerts = self.clock(), self.view.alerts()
        out = [{**s.model_dump(mode="json"), "active": s.active(now),
                "suppressing": [a.fingerprint for a in suppressing(s, alerts, now)]}
               for s in self.view.silences()]
        return _json({"silences": out})

    async def add_silence(self, request: web.Request) -> web.Response:
        who = _responder(request)
        body = await self._body(request)
        try:
            s = silence_from(body, self.clock(), who.name)
        except (ValidationError, ValueError, TypeError) as e:
            raise ApiRefusal(400, "bad_silence", str(e)[:500]) from None
        await self.publish(AddSilence(silence=s, via="api"))
        return _json({"id": s.id, "silence": s.model_dump(mode="json")}, 201)

    async def expire_silence(self, request: web.Request) -> web.Response:
        who = _responder(request)
        sid = request.match_info["id"]
        await self.publish(ExpireSilence(id=sid, by=who.name, via="api"))
        return _json({"queued": "expire", "id": sid}, 202)

    async def oncall(self, request: web.Request) -> web.Response:
        at = parse_at(request.query.get("at"), self.clock())
        cfg = self.config()
        when = datetime.fromtimestamp(at, tz=UTC)
        out = {s.name: who_is_on_call(s, when) for s in (cfg.schedules if cfg else [])}
        return _json({"at": when.isoformat(), "schedules": out})

    async def slack(self, request: web.Request) -> web.Response:
        body, now = await request.read(), self.clock()
        ts = request.headers.get("X-Slack-Request-Timestamp")
        sig = request.headers.get("X-Slack-Signature")
        ok = verify_slack(body, ts, sig, self.settings.slack.signing_secret.get_secret_value(),
                          now)
        if not ok or ts is None or sig is None:
            return _json({"error": {"code": "bad_signature",
                                    "message": "Slack signature check failed"}}, 401)
        if not self.replays.first_time(f"slack:{sig}", float(ts) + SLACK_TOLERANCE_S, now):
            return _json({"error": {"code": "replayed",
                                    "message": "this Slack request was already handled"}}, 401)
        if self.actions is not None and await self.actions.slack(body):
            return web.Response(status=200, text="")
        verdict = parse_slack_verdict(body)
        if verdict is not None and self.verdicts is not None:
            self.verdicts.record(VerdictInput(kind=verdict.kind, target=verdict.target,
                                              verdict=verdict.verdict, by=verdict.by,
                                              via="slack", nonce=sig))
            return web.Response(status=200, text="")
        action = parse_slack_action(body)
        if action is None:
            return _json({"error": {"code": "bad_payload", "message": "no alert action"}}, 400)
        await self.publish(action)
        return web.Response(status=200, text="")

    async def twilio(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = self.settings.twilio.webhook_url or str(request.url)
        ok = verify_twilio(url, form, request.headers.get("X-Twilio-Signature"),
                           self.settings.twilio.auth_token.get_secret_value())
        if not ok:
            return _json({"error": {"code": "bad_signature",
                                    "message": "Twilio signature check failed"}}, 403)
        now, sid = self.clock(), form.get("MessageSid", "")
        if not sid:
            return _json({"error": {"code": "bad_payload", "message": "no MessageSid"}}, 400)
        if not self.replays.first_time(f"twilio:{sid}", now + TWILIO_REPLAY_WINDOW_S, now):
            return _json({"error": {"code": "replayed",
                                    "message": f"message {sid} was already handled"}}, 409)
        cmd = parse_sms_reply(form)
        if cmd is None:
            return self._sms_verdict(form, sid)
        owner = phone_owners(self.config()).get(normalise_phone(cmd.phone))
        if owner is None:  # not a number we page: say nothing about codes
            return _twiml("This number is not registered with logwarden.")
        rc = self.view.reply_code(cmd.code)
        if rc is None or rc.refusal(cmd.phone, now):
            return _twiml(f"Code {cmd.code} is unknown, used or expired.")
        await self.publish(SmsReply(kind=cmd.kind, code=cmd.code, phone=cmd.phone, by=owner,
                                    message_sid=sid))
        return _twiml(f"{'Acknowledged' if cmd.kind == 'ack' else 'Resolved'} {cmd.code}.")

    def _sms_verdict(self, form: dict[str, str], sid: str) -> web.Response:
        """``USEFUL <alert code>`` / ``FALSE <alert code>`` from a registered phone."""
        v = parse_sms_verdict(form) if self.verdicts is not None else None
        if v is None or self.verdicts is None:
            return _twiml("Reply ACK <code> or RESOLVE <code>"
                          + (", or USEFUL / FALSE <alert code>." if self.verdicts else "."))
        owner = phone_owners(self.config()).get(normalise_phone(v.phone))
        if owner is None:
            return _twiml("This number is not registered with logwarden.")
        a = self.view.find(v.code)
        if a is None:
            return _twiml(f"Alert {v.code} is unknown.")
        self.verdicts.record(VerdictInput(kind="alert", target=a.fingerprint, verdict=v.verdict,
                                          by=owner, via="sms", nonce=sid))
        return _twiml(f"Recorded: {LABELS[v.verdict].lower()} for alert {v.code}.")


def _responder(request: web.Request) -> Principal:
    """The principal of a write: a responder token (401/403 otherwise)."""
    return require(request, "responder")
