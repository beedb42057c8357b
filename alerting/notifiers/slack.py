"""Slack through slack-sdk: a Block Kit message with Acknowledge / Resolve / Silence buttons,
updated in place (chat.update) when someone acts on it.

Everything we put in ``mrkdwn`` text (and the message's ``text``) comes from logs, labels and
people, so it is escaped as Slack's formatting rules ask (``&``, ``<``, ``>``): a log line
holding ``<!channel>`` or ``<http://x|y>`` shows as that text, it notifies nobody and links
nowhere. ``plain_text`` objects (the header) are shown as they are and need no escaping."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from alerting.config import SlackSettings
from alerting.notifiers.base import Message, PermanentError, TransientError

_EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:",
          "acknowledged": ":eyes:", "test": ":bird:"}


def escape(text: str) -> str:
    """Text for Slack ``mrkdwn``: ``&``, ``<`` and ``>`` as entities, nothing else.

    >>> escape("<!channel> see <http://x|y> & more")
    '&lt;!channel&gt; see &lt;http://x|y&gt; &amp; more'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """Escape, then cut to ``limit`` without splitting an entity."""
    out = escape(text)
    if len(out) <= limit:
        return out
    out = out[:limit]
    amp = out.rfind("&")
    return out[:amp] if amp >= 0 and ";" not in out[amp:] else out


def blocks(msg: Message, note: str = "") -> list[dict[str, Any]]:
    """Block Kit layout: header, text, fields, evidence, and buttons while it is open."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": f"{_EMOJI.get(msg.status, '')} {msg.title}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(msg.text, 2900) or " "}},
    ]
    if msg.fields:
        out.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{_cut(k, 100)}*\n{_cut(v, 1790)}"}
            for k, v in list(msg.fields.items())[:10]]})
    if msg.evidence:
        ev = "\n".join(msg.evidence[:8])
        out.append({"type": "section", "text": {"type": "mrkdwn",
                                                "text": f"```{_cut(ev, 2800)}```"}})
    if note:
        out.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                     "text": _cut(note, 2900)}]})
    if msg.status == "firing":
        value = msg.fingerprint or msg.id
        out.append({"type": "actions", "block_id": "alert_actions", "elements": [
            {"type": "button", "action_id": "ack", "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": "Acknowledge"}},
            {"type": "button", "action_id": "resolve", "value": value,
             "text": {"type": "plain_text", "text": "Resolve"}},
            {"type": "button", "action_id": "silence", "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": "Silence 1h"}},
        ]})
    if msg.fingerprint and msg.status in ("firing", "acknowledged", "resolved"):
        out.append(verdict_block("alert", msg.fingerprint))
    return out


def approval_blocks(action_id: str, title: str, plan: str, url: str = "") -> list[dict[str, Any]]:
    """A runbook action awaiting approval: what it will do, Approve / Reject buttons."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{_cut(plan, 2800)}```"}},
    ]
    if url:
        out.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                     "text": "runbook: " + _cut(url, 2900)}]})
    out.append({"type": "actions", "block_id": "runbook_approval", "elements": [
        {"type": "button", "action_id": "action_approve", "style": "primary",
         "value": action_id, "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": "action_reject", "style": "danger",
         "value": action_id, "text": {"type": "plain_text", "text": "Reject"}},
    ]})
    return out


def verdict_block(kind: str, target: str) -> dict[str, Any]:
    """Useful / False alarm buttons (``alerting/verdicts.py``); they stay after an ack."""
    value = f"{kind}:{target}"
    return {"type": "actions", "block_id": "verdict_actions", "elements": [
        {"type": "button", "action_id": "verdict_useful", "value": value,
         "text": {"type": "plain_text", "text": "Useful"}},
        {"type": "button", "action_id": "verdict_false", "value": value,
         "text": {"type": "plain_text", "text": "False alarm"}},
    ]}


class SlackChannel:
    """Posts to one Slack channel; provider id is ``channel:ts`` for later updates."""

    kind = "slack"

    def __init__(self, name: str, settings: SlackSettings, channel: str) -> None:
        self.name = name
        self.settings = settings
        self.channel = channel

    def _client(self) -> AsyncWebClient:
        s = self.settings
        # our Deliverer retries; the client's own retry handlers would hide attempts
        return AsyncWebClient(token=s.token.get_secret_value(), base_url=s.base_url,
                              timeout=int(max(1, s.timeout_s)), retry_handlers=[])

    async def send(self, msg: Message) -> str:
        """chat.postMessage; returns ``channel:ts``."""
        # ``text`` is what notifications and screen readers show: lead with the status
        resp = await self._call("chat_postMessage", channel=self.channel,
                                text=escape(f"[{msg.status}] {msg.title}"),
                                blocks=blocks(msg))
        return f"{resp['channel']}:{resp['ts']}"

    async def post(self, text: str, blocks: list[dict[str, Any]]) -> str:
        """chat.postMessage of ready blocks (runbook approvals); returns ``channel:ts``."""
        resp = await self._call("chat_postMessage", channel=self.channel, text=escape(text),
                                blocks=blocks)
        return f"{resp['channel']}:{resp['ts']}"

    async def update(self, provider_id: str, msg: Message, note: str = "") -> None:
        """chat.update the posted message (acknowledged / resolved, buttons removed)."""
        channel, ts = provider_id.split(":", 1)
        await self._call("chat_update", channel=channel, ts=ts, text=escape(msg.title),
                         blocks=blocks(msg, note))

    async def _call(self, method: str, **kw: Any) -> Any:
        client = self._client()
        try:
            resp = await getattr(client, method)(**kw)
        except SlackApiError as e:
            status = e.response.status_code
            err = e.response.get("error") if isinstance(e.response.data, dict) else None
            if status >= 500 or status == 429 or err in ("ratelimited", "internal_error",
                                                         "service_unavailable"):
                raise TransientError(f"slack {method} {status} {err}") from None
            raise PermanentError(f"slack {method} {status} {err}") from None
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            raise TransientError(f"slack {method} {type(e).__name__}") from None
        finally:
            if client.session is not None:
                await client.session.close()
        return resp
