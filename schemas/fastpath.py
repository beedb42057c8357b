"""A fast validator for the common shape of a log event; pydantic stays the authority.

``fast_log`` accepts only a strict subset of what ``LogEvent`` accepts (known fields, exact
types) and returns the same normalised form as ``normalise_log(LogEvent(...))``. Anything
else returns ``None`` and the caller validates with pydantic, which also words the error.
A property test checks that the two paths agree.
"""

from __future__ import annotations

import time
from typing import Any

from schemas.common import (
    EARLIEST,
    MAX_FUTURE,
    MAX_MESSAGE_BYTES,
    SERVICE_RE,
    parse_ts,
    to_epoch_ms,
)
from schemas.logs import _LEVEL_ALIASES, Level, LogEvent

_LEVELS: dict[str, str] = {}
for _lvl in Level.__args__:  # type: ignore[attr-defined]
    for _v in (_lvl, _lvl.lower(), _lvl.capitalize()):
        _LEVELS[_v] = _lvl
for _alias, _lvl in _LEVEL_ALIASES.items():
    for _v in (_alias, _alias.lower(), _alias.capitalize()):
        _LEVELS[_v] = _lvl

_EARLIEST_MS = to_epoch_ms(EARLIEST)
_FUTURE_MS = int(MAX_FUTURE.total_seconds() * 1000)
_OPTIONAL_STR = ("host", "logger", "env", "trace_id", "span_id", "event_id")
_TOP = frozenset(("ts", "service", "level", "message", "http", "peer", "user", "attrs",
                  *_OPTIONAL_STR))
_HTTP = frozenset(("method", "route", "status", "duration_ms"))
_PEER = frozenset(("service", "operation", "duration_ms", "ok"))
_USER = frozenset(("id", "ip", "action", "outcome"))
_services: set[str] = set()  # names already known to match the pattern


def _text(v: Any, limit: int) -> bool:
    return v is None or (type(v) is str and len(v) <= limit)


def _dur(v: Any) -> bool:
    return v is None or (type(v) in (int, float) and 0 <= v <= 86_400_000)


def fast_log(d: dict[str, Any], now_ms: int | None = None) -> dict[str, Any] | None:
    """``d`` normalised in place if it is a plainly valid log event, else ``None`` (and ``d``
    untouched, for pydantic to validate and word the error)."""
    if not _TOP.issuperset(d):
        return None
    ts = d.get("ts")
    if type(ts) is int:
        ts_ms = ts
    elif type(ts) is str:
        try:
            ts_ms = to_epoch_ms(parse_ts(ts))
        except ValueError:
            return None
    else:
        return None
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if not _EARLIEST_MS <= ts_ms <= now_ms + _FUTURE_MS:
        return None
    service = d.get("service")
    if type(service) is not str:
        return None
    if service not in _services:
        if not SERVICE_RE.match(service):
            return None
        if len(_services) < 100_000:
            _services.add(service)
    level = d.get("level")
    level = _LEVELS.get(level) if type(level) is str else None
    message = d.get("message")
    if level is None or type(message) is not str or len(message) > MAX_MESSAGE_BYTES:
        return None
    if len(d) > 4:  # anything beyond ts, service, level and message
        for k in _OPTIONAL_STR:  # a plain loop: this is the hottest check
            v = d.get(k)
            if v is not None and (type(v) is not str or len(v) > 256):
                return None
        http = d.get("http")
        if http is not None:
            if type(http) is not dict or not _HTTP.issuperset(http):
                return None
            method, route, st = http.get("method"), http.get("route"), http.get("status")
            if method is not None and (type(method) is not str or len(method) > 256):
                return None
            if route is not None and (type(route) is not str or len(route) > 1024):
                return None
            if (st is not None and (type(st) is not int or not 0 <= st <= 999)) or not _dur(
                    http.get("duration_ms")):
                return None
        peer = d.get("peer")
        if peer is not None:
            if type(peer) is not dict or not _PEER.issuperset(peer):
                return None
            ps, ok = peer.get("service"), peer.get("ok")
            if not (type(ps) is str and (ps in _services or SERVICE_RE.match(ps))
                    and _text(peer.get("operation"), 1024) and _dur(peer.get("duration_ms"))
                    and (ok is None or type(ok) is bool)):
                return None
        user = d.get("user")
        if user is not None and (type(user) is not dict or not _USER.issuperset(user)
                                 or not all(_text(v, 256) for v in user.values())):
            return None
        attrs = d.get("attrs")
        if attrs is not None and type(attrs) is not dict:
            return None
    d["ts"] = ts_ms
    d["level"] = level
    if d.get("attrs") is None:
        d["attrs"] = {}
    return d


def normalise_log(e: LogEvent) -> dict[str, Any]:
    """The normalised dict form of a validated event (what ``fast_log`` returns)."""
    out = e.model_dump(exclude_none=True)
    out["ts"] = to_epoch_ms(e.ts)
    return out
