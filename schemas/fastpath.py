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


def _short(v: Any) -> bool:
    return v is None or (type(v) is str and len(v) <= 256)


def _dur(v: Any) -> bool:
    return v is None or (type(v) in (int, float) and 0 <= v <= 86_400_000)


def fast_log(d: dict[str, Any], now_ms: int | None = None) -> dict[str, Any] | None:
    """The normalised event if ``d`` is a plainly valid log event, else ``None``."""
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
    level = _LEVELS.get(d.get("level"))  # type: ignore[arg-type]
    message = d.get("message")
    if level is None or type(message) is not str or len(message) > MAX_MESSAGE_BYTES:
        return None
    for k in _OPTIONAL_STR:
        v = d.get(k)
        if v is not None and (type(v) is not str or len(v) > 256):
            return None
    http, peer, user, attrs = d.get("http"), d.get("peer"), d.get("user"), d.get("attrs")
    if http is not None:
        if type(http) is not dict or not _HTTP.issuperset(http):
            return None
        st = http.get("status")
        route = http.get("route")
        if not (_short(http.get("method")) and (route is None or (type(route) is str
                and len(route) <= 1024)) and (st is None or (type(st) is int and 0 <= st <= 999))
                and _dur(http.get("duration_ms"))):
            return None
    if peer is not None:
        if type(peer) is not dict or not _PEER.issuperset(peer):
            return None
        ps, op, ok = peer.get("service"), peer.get("operation"), peer.get("ok")
        if not (type(ps) is str and (ps in _services or SERVICE_RE.match(ps))
                and (op is None or (type(op) is str and len(op) <= 1024))
                and _dur(peer.get("duration_ms")) and (ok is None or type(ok) is bool)):
            return None
    if user is not None and (type(user) is not dict or not _USER.issuperset(user)
                             or not all(_short(v) for v in user.values())):
        return None
    if attrs is not None and type(attrs) is not dict:
        return None
    out = dict(d)
    out["ts"] = ts_ms
    out["level"] = level
    if attrs is None:
        out["attrs"] = {}
    return out


def normalise_log(e: LogEvent) -> dict[str, Any]:
    """The normalised dict form of a validated event (what ``fast_log`` returns)."""
    out = e.model_dump(exclude_none=True)
    out["ts"] = to_epoch_ms(e.ts)
    return out
