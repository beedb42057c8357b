"""Inbound acknowledgements, verified without I/O: Slack interactions (signature v0,
HMAC-SHA256 over ``v0:{timestamp}:{body}``, 5-minute tolerance against replay) and Twilio
inbound SMS (``X-Twilio-Signature`` through twilio's RequestValidator), parsed into actions.
``web/`` serves the endpoints and calls these."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict
from twilio.request_validator import RequestValidator

SLACK_TOLERANCE_S = 300.0
_SMS = re.compile(r"^\s*(ACK|RESOLVE|ACKNOWLEDGE)\s+([A-Z2-7]{6})\b", re.IGNORECASE)


class Action(BaseModel):
    """A person acting on an alert from a channel."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["ack", "resolve", "silence"]
    ref: str  # fingerprint (Slack buttons) or alert code (SMS)
    by: str
    via: Literal["slack", "sms"]
    channel: str = ""  # Slack channel id of the message, for chat.update
    message_ts: str = ""


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
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign_slack(body, timestamp, secret), signature)


def parse_slack_action(body: bytes) -> Action | None:
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
    return Action(kind=kind, ref=str(act.get("value", "")),
                  by=str(user.get("username") or user.get("name") or user.get("id", "")),
                  via="slack", channel=str(channel),
                  message_ts=str(container.get("message_ts")
                                 or (payload.get("message") or {}).get("ts", "")))


def verify_twilio(url: str, params: Mapping[str, str], signature: str | None,
                  auth_token: str) -> bool:
    """Whether an inbound webhook was signed by Twilio with our auth token."""
    if not signature or not auth_token:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def parse_sms_reply(params: Mapping[str, str]) -> Action | None:
    """``ACK K3F7QZ`` (or ``RESOLVE K3F7QZ``) from an inbound SMS's ``Body``."""
    m = _SMS.match(params.get("Body", ""))
    if not m:
        return None
    kind: Literal["ack", "resolve"] = "resolve" if m.group(1).upper() == "RESOLVE" else "ack"
    return Action(kind=kind, ref=m.group(2).upper(), by=params.get("From", ""), via="sms")
