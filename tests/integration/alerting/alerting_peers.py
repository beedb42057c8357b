"""Local protocol peers: an SMTP server (aiosmtpd) and an HTTP server speaking the Slack Web
API (chat.postMessage, chat.update) and Twilio's Messages endpoint, recording requests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as MimeMessage
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self) -> None:
        self.mails: list[MimeMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.content))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, _Handler]]:
    handler = _Handler()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port, handler
    finally:
        ctl.stop()


@dataclass
class Peer:
    """The fake Slack + Twilio server: ``mode`` makes it fail on purpose."""

    port: int = 0
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    mode: str = "ok"  # ok | 500 | slow | 400
    fail_first: int = 0  # fail this many requests (500) then succeed
    ts: int = 0

    @property
    def slack_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def twilio_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
            return web.json_response({"ok": True, "channel": body["channel"],
                                      "ts": f"1700000000.{self.ts:06d}",
                                      "message": {"text": body.get("text")}})
        if method == "chat.update":
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
        return web.json_response({"sid": f"SM{len(self.requests):032d}", "account_sid": sid,
                                  "to": form["To"], "from": form["From"],
                                  "body": form["Body"], "status": "queued"}, status=201)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer(port=free_port())
    app = web.Application()
    app.router.add_post("/api/{method}", p.slack)
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", p.twilio)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", p.port)
    await site.start()
    try:
        yield p
    finally:
        await runner.cleanup()
