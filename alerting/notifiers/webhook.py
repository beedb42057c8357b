"""The outgoing-webhook channel: a generic JSON document POSTed to a URL, signed.

Every request carries
- ``X-Logwarden-Timestamp``: epoch seconds when it was sent;
- ``X-Logwarden-Signature: v1=<hex>``: HMAC-SHA256 with the shared secret
  (``LOGWARDEN_ALERTING_WEBHOOK`` ``secret``) over ``<timestamp>.<body>``, so a receiver
  can check both the sender and the age (and refuse replays older than its tolerance);
- ``Idempotency-Key``: the message id, the same on every retry of one message, so a
  receiver that keeps the keys it has seen acts once.

Runbook webhook steps (``alerting/actions.py``) send their requests the same way.
A receiver verifies with ``verify_signature`` (or the same three lines in any language).

>>> sig = sign(b'{"a":1}', "1700000000", "s3cret")
>>> sig.startswith("v1=") and verify_signature(b'{"a":1}', "1700000000", sig, "s3cret",
...                                            now=1700000010)
True
>>> verify_signature(b'{"a":2}', "1700000000", sig, "s3cret", now=1700000010)
False
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import aiohttp
import orjson

from alerting.config import WebhookSettings
from alerting.notifiers.base import Message, PermanentError, TransientError

SIGNATURE_HEADER = "X-Logwarden-Signature"
TIMESTAMP_HEADER = "X-Logwarden-Timestamp"
TOLERANCE_S = 300.0  # what ``verify_signature`` accepts by default, either way
SCHEMA = "logwarden.webhook.v1"


def sign(body: bytes, timestamp: str, secret: str) -> str:
    """The ``X-Logwarden-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(body: bytes, timestamp: str | None, signature: str | None, secret: str,
                     now: float, tolerance_s: float = TOLERANCE_S) -> bool:
    """Whether ``body`` was signed with ``secret`` at a ``timestamp`` close to ``now``."""
    if not timestamp or not signature or not secret:
        return False
    try:
        ts = float(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(body, timestamp, secret), signature)


def signed_headers(body: bytes, secret: str, idempotency_key: str,
                   now: float | None = None) -> dict[str, str]:
    """Content type, timestamp, signature (when there is a secret) and idempotency key."""
    ts = str(int(time.time() if now is None else now))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: ts,
               "Idempotency-Key": idempotency_key, "User-Agent": "logwarden"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, ts, secret)
    return headers


def payload(msg: Message) -> dict[str, Any]:
    """The JSON document a webhook receiver gets for one message."""
    return {"schema": SCHEMA, "id": msg.id, "status": msg.status, "severity": msg.severity,
            "fingerprint": msg.fingerprint, "code": msg.code, "title": msg.title,
            "text": msg.text, "fields": msg.fields, "evidence": msg.evidence, "url": msg.url,
            "trigger_ts": msg.trigger_ts}


async def post_json(url: str, body: bytes, headers: dict[str, str], timeout_s: float,
                    method: str = "POST") -> tuple[int, str]:
    """Send ``body``; (status, first 4000 characters of the answer). 5xx, 429, connection
    errors and timeouts raise ``TransientError``, other 4xx ``PermanentError``."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s, \
                s.request(method, url, data=body, headers=headers) as r:
            text = (await r.text(errors="replace"))[:4000]
            status = r.status
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        raise TransientError(f"webhook {type(e).__name__}") from None
    if status >= 500 or status == 429:
        raise TransientError(f"webhook {status}")
    if status >= 400:
        raise PermanentError(f"webhook {status} {text[:200]}")
    return status, text


class WebhookChannel:
    """POSTs each message as signed JSON to one URL; the provider id is the HTTP status."""

    kind = "webhook"

    def __init__(self, name: str, settings: WebhookSettings, url: str) -> None:
        self.name = name
        self.settings = settings
        self.url = url

    async def send(self, msg: Message) -> str:
        """POST the message; returns ``http <status>``."""
        body = orjson.dumps(payload(msg))
        headers = signed_headers(body, self.settings.secret.get_secret_value(), msg.id)
        status, _ = await post_json(self.url, body, headers, self.settings.timeout_s)
        return f"http {status}"
