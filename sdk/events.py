"""Building ``logwarden.logs.v1`` events: the fields both log integrations share."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

# Fields of the log contract that are passed through as they are, not put into ``attrs``.
PASSTHROUGH = ("http", "peer", "user", "trace_id", "span_id", "env", "host", "event_id")

_LEVELS = {
    "warning": "WARN", "warn": "WARN", "exception": "ERROR", "err": "ERROR", "error": "ERROR",
    "critical": "CRITICAL", "crit": "CRITICAL", "fatal": "FATAL", "info": "INFO",
    "msg": "INFO", "debug": "DEBUG", "trace": "DEBUG", "notset": "DEBUG",
}


@lru_cache(maxsize=1)
def hostname() -> str:
    """This machine's host name, looked up once."""
    return socket.gethostname()[:256]


def new_event_id() -> str:
    """A fresh event id (uuid4 hex) so the pipeline can drop duplicates."""
    return uuid.uuid4().hex


def level_name(name: str) -> str:
    """A logging or structlog level name as a contract level (``warning`` -> ``WARN``)."""
    return _LEVELS.get(name.lower(), name.upper())


def level_from_number(levelno: int) -> str:
    """A stdlib numeric level as a contract level; custom levels round down."""
    if levelno >= 50:
        return "CRITICAL"
    if levelno >= 40:
        return "ERROR"
    if levelno >= 30:
        return "WARN"
    if levelno >= 20:
        return "INFO"
    return "DEBUG"


def to_datetime(value: Any) -> datetime:
    """A timestamp from a log record (epoch seconds or ms, ISO text, datetime); else now."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000.0 if value > 1e11 else float(value)  # structlog gives seconds
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return datetime.now(UTC)
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return datetime.now(UTC)


def log_event(
    *,
    ts: datetime,
    service: str,
    level: str,
    message: str,
    logger: str | None,
    fields: dict[str, Any],
    defaults: dict[str, Any],
) -> dict[str, Any]:
    """One log event: contract fields from ``fields`` pass through, the rest go to attrs."""
    event: dict[str, Any] = {
        "ts": ts,
        "service": service,
        "level": level,
        "message": message,
        "event_id": new_event_id(),
        "host": hostname(),
    }
    if logger:
        event["logger"] = logger
    event.update(defaults)
    attrs: dict[str, Any] = {}
    for key, value in fields.items():
        if key in PASSTHROUGH:
            if value is not None:
                event[key] = value
        elif key == "attrs" and isinstance(value, dict):
            attrs.update(value)
        else:
            attrs[key] = value
    if attrs:
        event["attrs"] = attrs
    return event
