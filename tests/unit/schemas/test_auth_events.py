"""Authentication events: which log events are forwarded, and how they are normalised;
ingest forwards them (``Output.auth_events``)."""

from __future__ import annotations

import orjson
import pytest

from schemas import topics
from schemas.auth_events import auth_event, decode, encode
from streams.ingest import IngestProcessor, Record


def log(**kw: object) -> dict[str, object]:
    return {"ts": 1_767_225_600_000, "service": "shop", "level": "INFO", "message": "m", **kw}


@pytest.mark.parametrize(("user", "route", "status", "kind", "result"), [
    ({"id": "a", "ip": "1.1.1.1", "action": "login", "outcome": "failure"}, "", None,
     "login", "failure"),
    ({"id": "a", "action": "user.login", "outcome": "DENIED"}, "", None, "login", "failure"),
    ({"id": "a", "action": "signin", "outcome": "ok"}, "", None, "login", "success"),
    ({"id": "a", "action": "password.reset", "outcome": "success"}, "", None,
     "password_reset", "success"),
    ({"id": "a", "action": "role.grant", "outcome": "success"}, "", None, "privilege_change",
     "success"),
    ({"id": "a", "action": "signup", "outcome": "failure"}, "", None, "signup", "failure"),
    ({"id": "a", "action": "mfa.verify"}, "", None, "mfa", "other"),
    (None, "POST /login", 401, "login", "failure"),
    (None, "POST /api/v1/auth/token", 200, "login", "success"),
    (None, "POST /login", 429, "login", "rate_limited"),
    (None, "GET /search", 429, "other", "rate_limited"),
])
def test_normalisation(user: dict[str, str] | None, route: str, status: int | None,
                       kind: str, result: str) -> None:
    e = log(**({"user": user} if user else {}))
    doc = auth_event(e, route, status, "id1")
    assert doc is not None
    assert (doc["kind"], doc["result"]) == (kind, result)
    assert decode(encode(doc)) == doc


def test_ordinary_requests_are_not_auth_events() -> None:
    assert auth_event(log(), "GET /items/{id}", 200, "x") is None
    assert auth_event(log(), "GET /items/{id}", 500, "x") is None
    assert auth_event(log(), "", None, "x") is None


def test_decode_refuses_other_documents() -> None:
    for raw in (b"[]", b'{"service": "x"}', b'{"ts": "soon", "service": "x"}', b"nope"):
        with pytest.raises(ValueError):
            decode(raw)


def test_ingest_forwards_auth_events_keyed_by_service() -> None:
    p = IngestProcessor(clock=lambda: 1_767_225_601.0)
    msgs = [
        log(event_id="a", user={"id": "bob", "ip": "192.0.2.1", "action": "login",
                                "outcome": "failure"}),
        log(event_id="b", http={"method": "POST", "route": "/login", "status": 401}),
        log(event_id="c", http={"method": "GET", "route": "/items", "status": 200}),
        log(event_id="d"),
    ]
    out = p.process([Record(topics.LOGS, 0, i, b"shop", orjson.dumps(m))
                     for i, m in enumerate(msgs)])
    assert len(out.logs) == 4  # every row still stored
    docs = [(k, orjson.loads(v)) for k, v in out.auth_events]
    assert [(k, d["event_id"], d["result"]) for k, d in docs] == [
        ("shop", "a", "failure"), ("shop", "b", "failure")]
    assert docs[0][1]["user"] == "bob" and docs[0][1]["ip"] == "192.0.2.1"
    assert docs[1][1]["route"] == "POST /login" and docs[1][1]["status"] == 401
