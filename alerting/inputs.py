"""What the alert manager reads: one typed message per kind, told apart by ``type``.

The manager's topics (alert signals, alert actions) carry these as JSON; ``decode_input`` is
the one place bytes become a message, and the manager only ever sees the typed union. Every
time here is epoch **seconds** as a float (``ts``, ``start``, ``end``): producers that count
in milliseconds convert at their edge.

People's actions carry ``by``: the authenticated principal, set by the API from the caller's
token (or the Slack user of a signed interaction, or the paged user whose phone replied),
never taken from a request body.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from alerting.lifecycle import Signal
from alerting.silences import Silence

Via = Literal["api", "slack", "sms", "cli"]


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SignalInput(_Input):
    """A rule's verdict from the evaluator."""

    type: Literal["signal"] = "signal"
    signal: Signal


class Tick(_Input):
    """The manager's timer: composites, flushes, escalations, retries, dead-man."""

    type: Literal["tick"] = "tick"
    ts: float | None = None  # epoch s the timer fired (informational: ``now`` is the clock)


class Ack(_Input):
    """Someone took the alert (``ref``: fingerprint or short code)."""

    type: Literal["ack"] = "ack"
    ref: str
    by: str
    via: Via = "api"
    channel: str = ""  # Slack channel of the message to update, when it came from Slack
    message_ts: str = ""


class Resolve(_Input):
    """Someone resolved the alert by hand."""

    type: Literal["resolve"] = "resolve"
    ref: str
    by: str
    via: Via = "api"
    channel: str = ""
    message_ts: str = ""


class SilenceAlert(_Input):
    """Mute this alert's rule on its service for ``duration_s`` (Slack's button)."""

    type: Literal["silence_alert"] = "silence_alert"
    ref: str
    by: str
    via: Via = "slack"
    duration_s: float = 3600.0
    channel: str = ""
    message_ts: str = ""


class AddSilence(_Input):
    """A new silence; its ``created_by`` is the principal that asked for it."""

    type: Literal["add_silence"] = "add_silence"
    silence: Silence
    via: Via = "api"


class ExpireSilence(_Input):
    """End a silence now."""

    type: Literal["expire_silence"] = "expire_silence"
    id: str
    by: str
    via: Via = "api"


class SmsReply(_Input):
    """An inbound SMS ``ACK <code>`` / ``RESOLVE <code>`` from a known user's phone.

    ``code`` is a one-time code the manager issued for this phone; it checks and spends it.
    """

    type: Literal["sms_reply"] = "sms_reply"
    kind: Literal["ack", "resolve"]
    code: str
    phone: str
    by: str  # the user whose phone it is
    message_sid: str = ""


class CanarySent(_Input):
    """The worker sent a canary log line at ``ts``."""

    type: Literal["canary_sent"] = "canary_sent"
    ts: float


class CanarySeen(_Input):
    """A window ``[start, end)`` of the canary service reached alerting."""

    type: Literal["canary_seen"] = "canary_seen"
    start: float
    end: float


ManagerInput = Annotated[
    SignalInput | Tick | Ack | Resolve | SilenceAlert | AddSilence | ExpireSilence | SmsReply
    | CanarySent | CanarySeen,
    Field(discriminator="type")]
Action = Ack | Resolve | SilenceAlert | AddSilence | ExpireSilence | SmsReply

_ADAPTER: TypeAdapter[ManagerInput] = TypeAdapter(ManagerInput)


def decode_input(raw: bytes) -> ManagerInput:
    """Bytes of a manager topic as a typed message; raises ``pydantic.ValidationError``."""
    return _ADAPTER.validate_json(raw)


def encode_input(msg: ManagerInput) -> bytes:
    """The JSON a manager topic carries for ``msg``."""
    return msg.model_dump_json().encode()
