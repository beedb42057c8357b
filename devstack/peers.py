"""Local protocol peers for demos and tests: an SMTP server (aiosmtpd) and an HTTP server
speaking the Slack Web API (chat.postMessage, chat.update) and Twilio's Messages endpoint.
They record what they receive (``GET /_peer/requests`` lists it) instead of delivering.

``logwarden peers`` runs them; ``PeerThread`` runs them beside synchronous tests.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as MimeMessage
from typing import Any

from aiohttp import web


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailHandler:
    """aiosmtpd handler keeping every mail."""

    def __init__(self, on_mail: Any = None) -> None:
        self.mails: list[MimeMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.on_mail = on_mail

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content)
        self.mails.append(mail)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.on_mail is not None:
            self.on_mail(mail, list(envelope.rcpt_tos))
        return "250 OK"


@dataclass
class Peer:
    """The fake Slack + Twilio server: ``mode`` makes it fail on purpose."""

    port: int = 0
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)  # all channels, with time
    mode: str = "ok"  # ok | 500 | slow | 400
    fail_first: int = 0  # fail this many requests (500) then succeed
    ts: int = 0

    @property
    def slack_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def twilio_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, channel: str, to: str, text: str) -> None:
        """Remember one delivered message (what tests and the bench read)."""
        self.received.append({"at": time.time(), "channel": channel, "to": to, "text": text})

    async def _fail(self) -> web.Response | None:
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        if self.mode == "500":
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        if self.mode == "slow":
            await asyncio.sleep(5)
        return None

    async def slack(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = dict(await request.post())
        self.requests.append((method, body, dict(request.headers)))
        failed = await self._fail()
        if failed is not None:
            return failed
        if not request.headers.get("Authorization", "").startswith("Bearer xoxb-"):
            return web.json_response({"ok": False, "error": "not_authed"})
        if self.mode == "400" or not body.get("channel"):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if method == "chat.postMessage":
            self.ts += 1
            self.record("slack", str(body["channel"]), str(body.get("text", "")))
            return web.json_response({"ok": True, "channel": body["channel"],
                                      "ts": f"1700000000.{self.ts:06d}",
                                      "message": {"text": body.get("text")}})
        if method == "chat.update":
            self.record("slack-update", str(body["channel"]), str(body.get("text", "")))
            return web.json_response({"ok": True, "channel": body["channel"],
                                      "ts": body["ts"], "text": body.get("text")})
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)

    async def twilio(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        sid = request.match_info["sid"]
        self.requests.append(("Messages.json", {"sid": sid, **form}, dict(request.headers)))
        failed = await self._fail()
        if failed is not None:
            return web.json_response({"code": 20500, "message": "Internal Server Error",
                                      "status": 500}, status=500)
        if self.mode == "400":
            return web.json_response({"code": 21211, "message": "Invalid 'To' Phone Number",
                                      "status": 400}, status=400)
        self.record("sms", str(form["To"]), str(form["Body"]))
        return web.json_response({"sid": f"SM{len(self.requests):032d}", "account_sid": sid,
                                  "to": form["To"], "from": form["From"],
                                  "body": form["Body"], "status": "queued"}, status=201)

    async def listing(self, request: web.Request) -> web.Response:
        since = float(request.query.get("since", "0"))
        return web.json_response([r for r in self.received if r["at"] >= since])

    def app(self) -> web.Application:
        """The aiohttp application serving both APIs and the listing."""
        app = web.Application()
        app.router.add_post("/api/{method}", self.slack)
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.twilio)
        app.router.add_get("/_peer/requests", self.listing)
        return app


async def start_http(peer: Peer, host: str = "127.0.0.1") -> web.AppRunner:
    """Serve ``peer`` on its port; stop with ``await runner.cleanup()``."""
    runner = web.AppRunner(peer.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, peer.port).start()
    return runner


def start_smtp(peer: Peer, port: int, host: str = "127.0.0.1") -> Any:
    """An aiosmtpd controller whose mails land in ``peer.received`` (stop with ``.stop()``)."""
    from aiosmtpd.controller import Controller  # a dev/demo dependency

    def on_mail(mail: MimeMessage, to: list[str]) -> None:
        peer.record("email", ",".join(to), str(mail.get("Subject", "")))

    ctl = Controller(MailHandler(on_mail), hostname=host, port=port)
    ctl.start()
    return ctl


class PeerThread:
    """Both peers on a background thread (for synchronous tests and benchmarks)."""

    def __init__(self, http_port: int = 0, smtp_port: int = 0) -> None:
        self.peer = Peer(port=http_port or free_port())
        self.smtp_port = smtp_port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._smtp: Any = None

    def __enter__(self) -> PeerThread:
        self._thread.start()
        self._runner = asyncio.run_coroutine_threadsafe(start_http(self.peer),
                                                        self._loop).result(10)
        self._smtp = start_smtp(self.peer, self.smtp_port)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._smtp is not None:
            self._smtp.stop()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def received(self) -> list[dict[str, Any]]:
        """A copy of what the peers got so far."""
        return list(self.peer.received)

    def alerting_env(self) -> dict[str, str]:
        """``LOGWARDEN_ALERTING_*`` variables pointing a worker's channels at these peers."""
        return {
            "LOGWARDEN_ALERTING_SMTP": f'{{"host": "127.0.0.1", "port": {self.smtp_port}}}',
            "LOGWARDEN_ALERTING_SLACK": f'{{"token": "xoxb-local", "base_url": '
                                        f'"{self.peer.slack_url}", "signing_secret": "local"}}',
            "LOGWARDEN_ALERTING_TWILIO": f'{{"account_sid": "AC0local", "auth_token": '
                                         f'"local", "from_number": "+15550000000", '
                                         f'"base_url": "{self.peer.twilio_url}"}}',
        }
