"""SMS through the twilio client: a short text carrying the alert code and, when the manager
issued one, a one-time reply code; replies ``ACK <reply code>`` come back through the inbound
webhook (``alerting/webhooks.py``, ``alerting/replycodes.py``)."""

from __future__ import annotations

import asyncio

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from alerting.config import TwilioSettings
from alerting.notifiers.base import Message, PermanentError, TransientError

MAX_LEN = 160


def sms_text(msg: Message) -> str:
    """One SMS segment: status, severity, title, and how to acknowledge."""
    tail = f" Reply ACK {msg.reply_code}" if msg.reply_code and msg.status == "firing" else ""
    if msg.status == "resolved" and msg.code:  # verdicts name the alert by its code
        tail = f" Reply USEFUL {msg.code} or FALSE {msg.code}"
    head = f"{msg.status.upper()} {msg.severity}: "
    room = MAX_LEN - len(head) - len(tail)
    title = msg.title if len(msg.title) <= room else msg.title[: max(0, room - 1)] + "…"
    return head + title + tail


class SmsChannel:
    """Sends to one phone number via Twilio's Messages API (``base_url`` overridable)."""

    kind = "sms"

    def __init__(self, name: str, settings: TwilioSettings, to: str) -> None:
        self.name = name
        self.settings = settings
        self.to = to

    async def send(self, msg: Message) -> str:
        """Messages.create; returns the message SID. 5xx/429 transient, other 4xx permanent."""
        s = self.settings
        http = AsyncTwilioHttpClient()
        client = Client(s.account_sid, s.auth_token.get_secret_value(), http_client=http)
        client.api.base_url = s.base_url.rstrip("/")  # the documented paths under any host
        try:
            m = await asyncio.wait_for(
                client.api.v2010.accounts(s.account_sid).messages.create_async(
                    to=self.to, from_=s.from_number, body=sms_text(msg)),
                s.timeout_s)
        except TwilioRestException as e:
            err = TransientError if e.status >= 500 or e.status == 429 else PermanentError
            raise err(f"twilio {e.status} {e.code}") from None
        except (TwilioException, aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            raise TransientError(f"twilio {type(e).__name__}") from None
        finally:
            await http.close()
        return str(m.sid)
