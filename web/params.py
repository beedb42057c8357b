"""Query-string parsing for the API: clear 400s for bad values, limits on every list."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from sinks.clickhouse.queries.base import MAX_LIMIT, MAX_OFFSET, Page, Span
from web.http import ApiError

MAX_TEXT = 200  # longest filter value we accept
DEFAULT_RANGE_S = 3600
MAX_RANGE_S = 90 * 86400
LEVELS = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL", "FATAL")
_RANGE = re.compile(r"^(\d+)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def text(q: Mapping[str, str], name: str) -> str | None:
    """An optional filter value; bound as a parameter later, only its size is checked here."""
    value = q.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise ApiError(400, "bad_parameter",
                       f"{name} must be at most {MAX_TEXT} printable characters")
    return value


def choice(q: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    """An optional value that must be one of ``allowed`` (case-insensitive)."""
    value = text(q, name)
    if value is None:
        return None
    if value.upper() not in {a.upper() for a in allowed}:
        raise ApiError(400, "bad_parameter", f"{name} must be one of {', '.join(allowed)}")
    return next(a for a in allowed if a.upper() == value.upper())


def integer(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer parameter in [lo, hi]."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_parameter", f"{name} must be between {lo} and {hi}")
    return value


def page(q: Mapping[str, str], default: int = 100) -> Page:
    """``limit`` (1..1000) and ``offset`` (0..100000)."""
    return Page(integer(q, "limit", default, 1, MAX_LIMIT),
                integer(q, "offset", 0, 0, MAX_OFFSET))


def timestamp(raw: str, name: str) -> datetime:
    """RFC 3339 or epoch milliseconds, as an aware UTC datetime."""
    try:
        if raw.isdigit():
            return datetime.fromtimestamp(int(raw) / 1000, UTC)
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ApiError(400, "bad_parameter",
                       f"{name} must be RFC 3339 (2024-05-01T12:00:00Z) or epoch ms") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def span(q: Mapping[str, str], latest: datetime | None) -> Span:
    """since/until, or range (15m, 6h, 7d) ending at until or at the newest data."""
    until = timestamp(q["until"], "until") if q.get("until") else (latest or datetime.now(UTC))
    if q.get("since"):
        since = timestamp(q["since"], "since")
    else:
        m = _RANGE.match(q.get("range", "") or str(DEFAULT_RANGE_S))
        if not m:
            raise ApiError(400, "bad_parameter", "range must look like 900, 15m, 6h or 7d")
        since = until - timedelta(seconds=int(m[1]) * _UNIT[m[2]])
    if since >= until:
        raise ApiError(400, "bad_parameter", "since must be before until")
    if (until - since).total_seconds() > MAX_RANGE_S:
        raise ApiError(400, "bad_parameter", "the time range may span at most 90 days")
    return Span(since.astimezone(UTC), until.astimezone(UTC))
