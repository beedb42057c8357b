"""What every HTTP module of the API shares: the error type, its JSON body, JSON encoding.

It imports nothing else of ``web``, so route modules and the app builder can all import it.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from datetime import time as dtime
from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    """A request the API refuses: HTTP status, a stable code, a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON: ISO datetimes, NaN/inf as null, text for bytes and the rest."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode()
    if isinstance(value, Mapping):
        return {str(json_safe(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)  # Decimal (exact), UUID, IP addresses, enums


def _default(value: Any) -> Any:
    """What orjson cannot write itself: bytes as text, the rest (Decimal, IPs) as str."""
    return json_safe(value) if isinstance(value, bytes | bytearray | memoryview | set) \
        else str(value)


def dumps(value: Any) -> bytes:
    """JSON bytes of ``value`` the way ``json_safe`` would write it, fast (orjson in C)."""
    try:
        return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits (UInt128, Int256)
        return orjson.dumps(json_safe(value))


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """The JSON error body every endpoint uses: ``{"error": {"code", "message"}}``."""
    body = {"error": {"code": code, "message": message, **extra}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_errors(handler: Handler) -> Handler:
    """``handler`` answering its ``ApiError`` as the JSON error body itself, so a route
    module works the same on an app without the API's error middleware."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return error_response(e.status, e.code, e.message)

    return wrapped
