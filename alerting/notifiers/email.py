"""Email over SMTP (aiosmtplib): a multipart/alternative message with plain text and HTML."""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from alerting.config import SmtpSettings
from alerting.notifiers.base import Message, PermanentError, TransientError

_COLOURS = {"critical": "#b00020", "high": "#d35400", "warning": "#b7950b", "info": "#2e86c1"}


def header_value(text: str, limit: int = 900) -> str:
    r"""A header value from anything (a route, a log line): CR, LF and other control
    characters become spaces, so it can neither fail to render nor add a header.

    >>> header_value("GET /a\r\nBcc: x@evil.test")
    'GET /a Bcc: x@evil.test'
    """
    flat = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
                   for c in text)
    return " ".join(flat.split())[:limit]


Links = Callable[[Message, str], Mapping[str, str]]  # (message, recipient) -> verdict -> URL
_VERDICT_LABELS = {"useful": "Useful", "false_alarm": "False alarm"}


def render_email(msg: Message, sender: str, to: list[str],
                 links: Mapping[str, str] | None = None) -> EmailMessage:
    """The MIME message: subject with status and severity, text and HTML parts, and the
    signed verdict links (``alerting/verdicts.py``) when there are any."""
    em = EmailMessage()
    em["Subject"] = header_value(f"[{msg.status.upper()}][{msg.severity}] {msg.title}")
    em["From"] = header_value(sender)
    em["To"] = header_value(", ".join(to))
    em["Message-ID"] = make_msgid(domain="logwarden")
    em["X-Logwarden-Id"] = header_value(msg.id)
    lines = [msg.title, "", msg.text, ""]
    lines += [f"{k}: {v}" for k, v in msg.fields.items()]
    if msg.evidence:
        lines += ["", "Evidence:", *[f"  {e}" for e in msg.evidence]]
    if msg.code:
        lines += ["", f"Alert code: {msg.code}"]
    if msg.url:
        lines += [msg.url]
    if links:
        lines += ["", "Was this alert useful?"]
        lines += [f"  {_VERDICT_LABELS.get(k, k)}: {u}" for k, u in links.items()]
    em.set_content("\n".join(lines))
    verdicts = " | ".join(f"<a href='{html.escape(u)}'>{html.escape(_VERDICT_LABELS.get(k, k))}"
                          "</a>" for k, u in (links or {}).items())
    colour = _COLOURS.get(msg.severity, "#555")
    rows = "".join(f"<tr><th align=left>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in msg.fields.items())
    ev = "".join(f"<li><code>{html.escape(e)}</code></li>" for e in msg.evidence)
    body = (f"<html><body><h2 style='color:{colour}'>{html.escape(msg.title)}</h2>"
            f"<p>{html.escape(msg.text)}</p><table>{rows}</table>"
            + (f"<h3>Evidence</h3><ul>{ev}</ul>" if ev else "")
            + (f"<p>Alert code: <b>{html.escape(msg.code)}</b></p>" if msg.code else "")
            + (f"<p><a href='{html.escape(msg.url)}'>Open</a></p>" if msg.url else "")
            + (f"<p>Was this alert useful? {verdicts}</p>" if verdicts else "")
            + "</body></html>")
    em.add_alternative(body, subtype="html")
    return em


class EmailChannel:
    """Sends to fixed recipients through one SMTP server."""

    kind = "email"

    def __init__(self, name: str, settings: SmtpSettings, to: list[str],
                 links: Links | None = None) -> None:
        self.name = name
        self.settings = settings
        self.to = to
        self.links = links

    async def send(self, msg: Message) -> str:
        """Deliver; the Message-ID is the provider id. 5xx replies are permanent."""
        s = self.settings
        links = self.links(msg, ",".join(self.to)) if self.links else None
        em = render_email(msg, s.sender, self.to, links)
        password = s.password.get_secret_value()
        try:
            await aiosmtplib.send(em, hostname=s.host, port=s.port,
                                  username=s.username or None,
                                  password=password if s.username else None,
                                  use_tls=s.use_tls, start_tls=s.starttls,
                                  validate_certs=s.validate_certs, timeout=s.timeout_s)
        except aiosmtplib.SMTPResponseException as e:
            err = PermanentError if 500 <= e.code < 600 else TransientError
            raise err(f"SMTP {e.code} {e.message}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            raise TransientError(f"SMTP {type(e).__name__}: {e}") from None
        return str(em["Message-ID"])
