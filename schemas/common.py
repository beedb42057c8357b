"""Shared field types and limits of the ingest contract."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints

MAX_MESSAGE_BYTES = 64 * 1024  # one Kafka message of the ingest topics
SERVICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SERVICE_RE = re.compile(SERVICE_PATTERN)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)

ServiceName = Annotated[str, StringConstraints(pattern=SERVICE_PATTERN)]
ShortStr = Annotated[str, StringConstraints(max_length=256)]


def check_regex(value: str) -> str:
    """``value`` if it compiles as a Python regex; else a ValueError that names it."""
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"bad regex {value!r}: {e}") from None
    return value


Regex = Annotated[str, AfterValidator(check_regex)]  # a config field holding a regex


def parse_ts(value: Any) -> datetime:
    """An RFC 3339 string or epoch milliseconds, as an aware UTC datetime in a sane range."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be an RFC 3339 string or epoch milliseconds")
    if isinstance(value, int | float):
        # 1e300, inf, nan or a huge int overflow the float or the datetime range: the
        # value is refused with a reason, never raised as OverflowError (a poison message)
        try:
            ts = datetime.fromtimestamp(value / 1000.0, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"timestamp {str(value)[:40]} ms is out of range") from None
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"timestamp {value[:40]!r} is not RFC 3339") from None
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    elif isinstance(value, datetime):
        ts = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    else:
        raise ValueError("timestamp must be an RFC 3339 string or epoch milliseconds")
    if ts < EARLIEST or ts > datetime.now(UTC) + MAX_FUTURE:
        raise ValueError(f"timestamp {ts.isoformat()} is outside 2000-01-01 .. now+1d")
    return ts


Timestamp = Annotated[datetime, BeforeValidator(parse_ts)]


def to_epoch_ms(ts: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(ts.timestamp() * 1000)
