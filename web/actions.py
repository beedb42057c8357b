"""Runbook action endpoints served by the worker: ``GET /api/actions`` (live state),
``POST /api/actions/{id}/approve|reject`` (a responder token; who approves is the token's
name) and the Slack Approve / Reject buttons, which arrive at the Slack interactions webhook
(``web/alerts.py``) and are handed here after its signature check.

Answers are queued on the runbook topic; the runner applies them (an approval of an action
that is not awaiting one, such as a second click, changes nothing).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from alerting.actions import ActionState, Approve, Reject
from web.auth import require
from web.http import ApiError, json_errors

SLACK_ACTIONS = ("action_approve", "action_reject")


class ActionView(Protocol):
    def actions(self) -> list[ActionState]: ...
    def get(self, aid: str) -> ActionState | None: ...


def action_doc(st: ActionState) -> dict[str, Any]:
    """An action as the API shows it."""
    return {"id": st.id, "incident_id": st.incident_id, "key": st.key,
            "fingerprint": st.fingerprint, "rule": st.rule, "runbook": st.source,
            "runbook_url": st.runbook_url, "step": st.step, "kind": st.kind,
            "outcome": st.status, "plan": st.plan, "by": st.by, "detail": st.detail,
            "created_at": st.created_at, "ts": st.updated_at, "expires_at": st.expires_at,
            "duration_ms": st.duration_ms}


def parse_slack_approval(body: bytes) -> Approve | Reject | None:
    """An Approve / Reject button from a ``block_actions`` payload (None for others)."""
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
    except (KeyError, IndexError, ValueError, UnicodeDecodeError):
        return None
    acts = payload.get("actions") or [] if isinstance(payload, dict) else []
    if not acts or acts[0].get("action_id") not in SLACK_ACTIONS:
        return None
    user = payload.get("user") or {}
    by = str(user.get("username") or user.get("name") or user.get("id", ""))
    aid = str(acts[0].get("value", ""))
    model = Approve if acts[0]["action_id"] == "action_approve" else Reject
    return model(action_id=aid, by=by, via="slack")


@dataclass
class ActionsApi:
    """What the endpoints need: the runner's view and the runbook topic."""

    view: ActionView
    send: Callable[[Approve | Reject], Awaitable[None]]

    def register(self, app: web.Application) -> None:
        """Add the routes (before the ClickHouse-backed ``GET /api/actions``)."""
        app.router.add_get("/api/actions", json_errors(self.list_actions))
        app.router.add_post("/api/actions/{id}/{answer:approve|reject}", json_errors(self.answer))

    async def list_actions(self, request: web.Request) -> web.Response:
        require(request, "viewer")
        q = request.query
        items = [action_doc(a) for a in self.view.actions()
                 if (not q.get("incident_id") or a.incident_id == q["incident_id"])
                 and (not q.get("fingerprint") or a.fingerprint == q["fingerprint"])
                 and (not q.get("outcome") or a.status == q["outcome"])]
        items.sort(key=lambda d: -float(d["ts"]))
        return web.Response(body=orjson.dumps({"items": items}), content_type="application/json")

    async def answer(self, request: web.Request) -> web.Response:
        who = require(request, "responder")
        aid, answer = request.match_info["id"], request.match_info["answer"]
        st = self.view.get(aid)
        if st is None:
            raise ApiError(404, "unknown_action", f"no action {aid!r}")
        if st.status != "awaiting_approval":
            raise ApiError(409, "not_awaiting_approval",
                           f"action {aid} is {st.status}; only one awaiting approval can be "
                           "approved or rejected")
        model = Approve if answer == "approve" else Reject
        await self.send(model(action_id=aid, by=who.name, via="api"))
        return web.Response(status=202, content_type="application/json", body=orjson.dumps(
            {"queued": answer, "id": aid, "by": who.name}))

    async def slack(self, body: bytes) -> bool:
        """Queue a Slack Approve / Reject (already verified); False when it is none."""
        msg = parse_slack_approval(body)
        if msg is None:
            return False
        await self.send(msg)
        return True
