"""Verdicts where people work: "useful" or "false alarm" on an alert or an incident, from a
Slack button, a signed link in an e-mail, an SMS reply or the alerts page, as feedback.

Every verdict becomes a ``logwarden.feedback.v1`` message (``schemas.changes.Feedback``:
``useful`` is verdict ``true``, ``false alarm`` is ``false``) with the channel in
``attrs.via``. That topic is what the false-alert budget (``detectors/alert_budget.py``, via
``sinks/clickhouse/queries/quality.py``: a verdict on an alert counts for the anomaly that
fired it, one on an incident for each of its anomalies) and detector quality already read,
so nothing downstream changes.

Who gave it always comes from how the request was authenticated: the API token's name, the
Slack user of a signed interaction, the user whose registered phone sent the SMS, the
address an e-mail link was made for.

E-mail links carry a token: ``base64url(JSON claim) "." base64url(HMAC-SHA256)`` keyed by
``LOGWARDEN_ALERTING_VERDICT_SECRET``, with an expiry. Opening the link (GET) only shows a
confirmation page, since mail scanners fetch links; the button on it (POST) records.

>>> tok = link_token(LinkClaim(kind="alert", target="0123abcd", verdict="useful",
...                            by="ops@example.test", exp=2000), "k")
>>> read_link_token(tok, "k", now=1000).verdict
'useful'
>>> read_link_token(tok, "other", now=1000) is None, read_link_token(tok, "k", now=3000) is None
(True, True)
>>> parse_sms_verdict({"Body": "false alarm k3f7qz", "From": "+1555"}).verdict
'false_alarm'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import parse_qs, quote

from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.changes import Feedback

Kind = Literal["alert", "incident"]
VerdictName = Literal["useful", "false_alarm"]
VERDICTS: tuple[str, ...] = ("useful", "false_alarm")
FEEDBACK_VERDICT = {"useful": "true", "false_alarm": "false"}
LABELS = {"useful": "Useful", "false_alarm": "False alarm"}
SLACK_ACTIONS = {"verdict_useful": "useful", "verdict_false": "false_alarm"}
_SMS = re.compile(r"^\s*(USEFUL|FALSE(?:[\s_-]*ALARM)?)\s+([A-Z2-7]{6})\b", re.IGNORECASE)
_NAMES = {"useful": "useful", "true": "useful", "false": "false_alarm",
          "false alarm": "false_alarm"}


class VerdictInput(BaseModel):
    """A verdict as a person gave it, before it becomes feedback."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind = "alert"
    target: str  # alert fingerprint or incident id
    verdict: VerdictName
    by: str
    via: Literal["api", "slack", "email", "sms", "page"]
    comment: str = ""
    nonce: str = ""  # makes a re-sent copy of one request the same feedback event


def verdict_name(text: str) -> str | None:
    """``useful`` / ``false_alarm`` from what people write (``false``, ``False alarm``)."""
    return _NAMES.get(re.sub(r"[\s_-]+", " ", text.strip().lower()))


def to_feedback(v: VerdictInput, now_ms: int) -> Feedback:
    """The feedback message for a verdict (``useful`` -> ``true``, ``false_alarm`` -> ``false``).

    Its event id is derived from the verdict and its nonce, so the same signed request
    handled twice is one feedback row (the table folds rows by event id)."""
    key = f"{v.via}|{v.kind}|{v.target}|{v.by}|{v.verdict}|{v.nonce or now_ms}"
    return Feedback(ts=now_ms, target_kind=v.kind, target_id=v.target,
                    verdict=FEEDBACK_VERDICT[v.verdict], user=v.by[:256] or "anonymous",
                    comment=v.comment[:4096],
                    event_id="v-" + hashlib.sha256(key.encode()).hexdigest()[:30],
                    attrs={"via": v.via, "verdict": v.verdict})


# -- e-mail links --

class LinkClaim(BaseModel):
    """What a signed e-mail link says: which verdict on what, for whom, until when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    target: str
    verdict: VerdictName
    by: str  # the recipient address the link was made for
    exp: float  # epoch s


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def link_token(claim: LinkClaim, secret: str) -> str:
    """The signed token of a verdict link."""
    body = _b64(json.dumps(claim.model_dump(), separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def read_link_token(token: str, secret: str, now: float) -> LinkClaim | None:
    """The claim of a valid, unexpired token; None when forged, altered or expired."""
    if not secret or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    want = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(want, _unb64(mac)):
            return None
        claim = LinkClaim.model_validate_json(_unb64(body))
    except (ValueError, ValidationError):
        return None
    return claim if claim.exp > now else None


def verdict_links(public_url: str, kind: Kind, target: str, recipient: str, secret: str,
                  now: float, ttl_s: float) -> dict[str, str]:
    """``{"useful": url, "false_alarm": url}`` for one recipient ({} without a secret)."""
    if not secret or not target:
        return {}
    base = public_url.rstrip("/")
    return {v: f"{base}/verdicts/" + quote(link_token(
        LinkClaim(kind=kind, target=target, verdict=v, by=recipient,
                  exp=now + ttl_s), secret), safe="")
        for v in VERDICTS}


# -- Slack --

class SlackVerdict(BaseModel):
    """A verdict button pressed in Slack."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    target: str
    verdict: VerdictName
    by: str


def slack_value(kind: Kind, target: str) -> str:
    """The button value naming what the verdict is about."""
    return f"{kind}:{target}"


def parse_slack_verdict(body: bytes) -> SlackVerdict | None:
    """The verdict button of a ``block_actions`` payload; None for any other action."""
    try:
        payload = json.loads(parse_qs(body.decode())["payload"][0])
    except (KeyError, IndexError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return None
    acts = payload.get("actions") or []
    if not acts or acts[0].get("action_id") not in SLACK_ACTIONS:
        return None
    kind, _, target = str(acts[0].get("value", "")).partition(":")
    if kind not in ("alert", "incident") or not target:
        return None
    user = payload.get("user") or {}
    by = str(user.get("username") or user.get("name") or user.get("id", ""))
    return SlackVerdict(kind=kind, target=target,
                        verdict=SLACK_ACTIONS[acts[0]["action_id"]],
                        by=by)


# -- SMS --

class SmsVerdict(BaseModel):
    """``USEFUL K3F7QZ`` / ``FALSE K3F7QZ``: the alert's code, from a phone."""

    model_config = ConfigDict(frozen=True)

    verdict: VerdictName
    code: str
    phone: str
    message_sid: str = ""


def parse_sms_verdict(params: Mapping[str, str]) -> SmsVerdict | None:
    """A verdict reply from an inbound SMS's ``Body`` (None for anything else)."""
    m = _SMS.match(params.get("Body", ""))
    if not m:
        return None
    word = m.group(1).upper()
    return SmsVerdict(verdict="useful" if word == "USEFUL" else "false_alarm",
                      code=m.group(2).upper(), phone=params.get("From", ""),
                      message_sid=params.get("MessageSid", ""))
