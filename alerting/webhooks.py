"""Inbound acknowledgements, verified without I/O: Slack interactions (signature v0,
HMAC-SHA256 over ``v0:{timestamp}:{body}``, 5-minute tolerance, checked by slack-sdk's
``SignatureVerifier``) and Twilio inbound SMS
(``X-Twilio-Signature`` through twilio's RequestValidator), parsed into manager inputs.
``web/`` serves the endpoints and calls these.

A valid signature is not enough: a captured request could be sent again. ``ReplayGuard``
remembers what was accepted (a Slack signature until its timestamp leaves the tolerance
window, a Twilio ``MessageSid`` for a day) and refuses a second copy. SMS replies carry a
one-time code (``alerting/replycodes.py``), so a replay that outlives the guard (a restart,
another API process) still acts at most once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict
from slack_sdk.signature import Clock, SignatureVerifier
from twilio.request_validator import RequestValidator

from alerting.inputs import Ack, Resolve, SilenceAlert

SLACK_TOLERANCE_S = 300.0
TWILIO_REPLAY_WINDOW_S = 86400.0  # MessageSids remembered this long
REPLAY_MEMORY = 100_000  # entries at most; the oldest are forgotten first
_SMS = re.compile(r"^\s*(ACK|RESOLVE|ACKNOWLEDGE)\s+([A-Z2-7]{6})\b", re.IGNORECASE)


@dataclass
class ReplayGuard:
    """Remembers accepted request ids until they expire; a second copy is a replay."""

    max_entries: int = REPLAY_MEMORY
    _until: dict[str, float] = field(default_factory=dict)

    def first_time(self, key: str, until: float, now: float) -> bool:
        """True (and remember ``key`` until ``until``) unless ``key`` was seen before."""
        if len(self._until) >= self.max_entries:
            self._forget(now)
        seen = self._until.get(key)
        if seen is not None and seen > now:
            return False
        self._until[key] = until
        return True

    def _forget(self, now: float) -> None:
        for k in [k for k, t in self._until.items() if t <= now]:
            del self._until[k]
        while len(self._until) >= self.max_entries:  # still full: drop the oldest
            del self._until[next(iter(self._until))]


class SmsCommand(BaseModel):
    """``ACK K3F7QZ`` from an inbound SMS: what, which code, from which phone."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["ack", "resolve"]
    code: str
    phone: str
    message_sid: str = ""


def sign_slack(body: bytes, timestamp: str, secret: str) -> str:
    """The ``X-Slack-Signature`` Slack would send for this body."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_slack(body: bytes, timestamp: str | None, signature: str | None, secret: str,
                 now: float, tolerance_s: float = SLACK_TOLERANCE_S) -> bool:
    """Whether a request really comes from Slack, recently (replays are refused)."""
    if not timestamp or not signature or not secret:
        return False
    try:
        ts = float(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s or not timestamp.isdigit():
        return False
    # slack-sdk's own verifier (its 5-minute window is checked against our ``now`` too)
    return SignatureVerifier(secret, clock=_FixedClock(now)).is_valid(body, timestamp, signature)


class _FixedClock(Clock):
    """slack-sdk's clock, reading the ``now`` we were given (tests run on fake time)."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def parse_slack_action(body: bytes) -> Ack | Resolve | SilenceAlert | None:
    """The button a person pressed, from a ``block_actions`` interaction payload."""
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
    except (KeyError, IndexError, ValueError, UnicodeDecodeError):
        return None
    if payload.get("type") != "block_actions" or not payload.get("actions"):
        return None
    act = payload["actions"][0]
    kind = act.get("action_id")
    if kind not in ("ack", "resolve", "silence"):
        return None
    user = payload.get("user") or {}
    container = payload.get("container") or {}
    channel = (payload.get("channel") or {}).get("id") or container.get("channel_id", "")
    by = str(user.get("username") or user.get("name") or user.get("id", ""))
    ts = str(container.get("message_ts") or (payload.get("message") or {}).get("ts", ""))
    ref, channel = str(act.get("value", "")), str(channel)
    if kind == "ack":
        return Ack(ref=ref, by=by, via="slack", channel=channel, message_ts=ts)
    if kind == "resolve":
        return Resolve(ref=ref, by=by, via="slack", channel=channel, message_ts=ts)
    return SilenceAlert(ref=ref, by=by, via="slack", channel=channel, message_ts=ts)


def verify_twilio(url: str, params: Mapping[str, str], signature: str | None,
                  auth_token: str) -> bool:
    """Whether an inbound webhook was signed by Twilio with our auth token."""
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def parse_sms_reply(params: Mapping[str, str]) -> SmsCommand | None:
    """``ACK K3F7QZ`` (or ``RESOLVE K3F7QZ``) from an inbound SMS's ``Body``."""
    m = _SMS.match(params.get("Body", ""))
    if not m:
        return None
    kind: Literal["ack", "resolve"] = "resolve" if m.group(1).upper() == "RESOLVE" else "ack"
    return SmsCommand(kind=kind, code=m.group(2).upper(), phone=params.get("From", ""),
                      message_sid=params.get("MessageSid", ""))
