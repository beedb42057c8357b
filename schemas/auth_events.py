"""Authentication events: what ingest forwards to ``logwarden.auth-events.v1``.

A log event is an authentication event when it carries ``user`` fields (id, ip, action,
outcome) or is an http answer 401/403/429 or any answer of a login route. Ingest forwards a
small normalised document, and the security detectors (``alerting/security.py``) read only
that, so they never parse free text. The producer's words are kept (``action``,
``outcome``) next to two normalised fields the rules use:

- ``result``: ``success``, ``failure``, ``rate_limited`` or ``other``;
- ``kind``: ``login``, ``signup``, ``password_reset``, ``mfa``, ``logout``,
  ``privilege_change`` or ``other``, from the action (or the route when there is none).

Plain Python (no pydantic): it runs per event inside the ingest hot path.

>>> d = auth_event({"ts": 1000, "service": "shop", "message": "bad password",
...                 "user": {"id": "bob", "ip": "10.0.0.9", "action": "login",
...                          "outcome": "failure"}}, "POST /login", 401, "e1")
>>> (d["user"], d["ip"], d["kind"], d["result"], d["status"])
('bob', '10.0.0.9', 'login', 'failure', 401)
>>> auth_event({"ts": 1, "service": "shop", "message": "ok"}, "GET /items", 200, "e2") is None
True
"""

from __future__ import annotations

import re
from typing import Any

import orjson

AUTH_STATUSES = frozenset((401, 403, 429))  # answers that are authentication events anywhere
MESSAGE_CHARS = 300  # a forwarded message is cut here (evidence, not analysis)

FAILURE_WORDS = frozenset(("failure", "failed", "fail", "denied", "deny", "error", "invalid",
                      "rejected", "unauthorized", "unauthorised", "forbidden", "locked",
                      "bad_password", "wrong_password"))
SUCCESS_WORDS = frozenset(("success", "succeeded", "successful", "ok", "allowed", "allow",
                      "granted", "pass", "passed", "accepted"))
RATE_LIMITED_WORDS = frozenset(("rate_limited", "ratelimited", "throttled", "too_many_requests",
                           "rate-limited", "429"))
# Checked in this order: the first that matches the action (else the route) names the kind.
_KINDS = (
    ("privilege_change", re.compile(
        r"(?i)(role|permission|privilege|grant|revoke|promot|demot|sudo|admin_add|group_add)")),
    ("password_reset", re.compile(r"(?i)(password|passwd|pwd).?(reset|change|forgot|recover)"
                                  r"|(reset|forgot|recover).?(password|passwd|pwd)")),
    ("mfa", re.compile(r"(?i)(mfa|2fa|otp|totp|second.?factor)")),
    ("signup", re.compile(r"(?i)(sign.?up|register|registration|create.?account)")),
    ("logout", re.compile(r"(?i)(log.?out|sign.?out)")),
    ("login", re.compile(r"(?i)(log.?in|sign.?in|auth|session|token|credential)")),
)


# route -> kind and action -> kind, remembered: ingest sees few routes, and producers use
# few action words, so the six patterns run once per word, not per event
_ROUTE_KINDS: dict[str, str] = {}
_ACTION_KINDS: dict[str, str] = {}
_KINDS_MAX = 10_000


def _kind(action: str, route: str) -> str:
    """The kind named by ``action``, else by ``route``."""
    text, known_kinds = (action, _ACTION_KINDS) if action else (route, _ROUTE_KINDS)
    kind = known_kinds.get(text)
    if kind is None:
        kind = next((name for name, pattern in _KINDS if pattern.search(text)), "other")
        if len(known_kinds) >= _KINDS_MAX:
            known_kinds.clear()  # cheap bound; common words come back at once
        known_kinds[text] = kind
    return kind


def _result(outcome: str, status: int) -> str:
    o = outcome.strip().lower()
    if status == 429 or o in RATE_LIMITED_WORDS:
        return "rate_limited"
    if o in FAILURE_WORDS:
        return "failure"
    if o in SUCCESS_WORDS:
        return "success"
    if o:
        return "other"
    if status in (401, 403):
        return "failure"
    if 200 <= status < 400:
        return "success"
    return "other"


def auth_event(e: dict[str, Any], route: str, status: int | None,
               event_id: str) -> dict[str, Any] | None:
    """The auth-events document of a normalised log event, or None if it is not one."""
    u = e.get("user")
    st = status or 0
    if u is None:
        if not route and st not in AUTH_STATUSES:
            return None
        if st not in AUTH_STATUSES and _kind("", route) == "other":
            return None
        u = {}
    action = str(u.get("action") or "")
    outcome = str(u.get("outcome") or "")
    return {"ts": e["ts"], "service": e["service"], "event_id": event_id,
            "user": str(u.get("id") or ""), "ip": str(u.get("ip") or ""),
            "action": action, "outcome": outcome, "kind": _kind(action, route),
            "result": _result(outcome, st), "status": st, "route": route,
            "message": str(e.get("message", ""))[:MESSAGE_CHARS]}


def encode(doc: dict[str, Any]) -> bytes:
    """The topic's bytes for one document."""
    return orjson.dumps(doc)


def decode(raw: bytes) -> dict[str, Any]:
    """One topic message; raises ValueError when it is not an auth-events document."""
    doc = orjson.loads(raw)
    if type(doc) is not dict or type(doc.get("ts")) is not int or "service" not in doc:
        raise ValueError("not an auth-events document (needs integer ts, service)")
    for k in ("user", "ip", "action", "outcome", "kind", "result", "route", "message",
              "event_id"):
        doc[k] = str(doc.get(k) or "")
    doc["status"] = int(doc.get("status") or 0)
    doc["service"] = str(doc["service"])
    return doc


def kind_pattern(name: str) -> str:
    """The regular expression (RE2-compatible) of one kind, for queries."""
    return next(p.pattern for k, p in _KINDS if k == name)


def kinds_before(name: str) -> list[str]:
    """The kinds checked before ``name`` (an action matching one of them is not ``name``)."""
    names = [k for k, _ in _KINDS]
    return names[:names.index(name)]
