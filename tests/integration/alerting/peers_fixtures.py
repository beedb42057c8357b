"""Fixtures for the local SMTP, Slack and Twilio peers (the peers live in devstack/peers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiosmtpd.controller import Controller

from devstack.peers import MailHandler, Peer, free_port, start_http


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, MailHandler]]:
    handler = MailHandler()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port, handler
    finally:
        ctl.stop()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer(port=free_port())
    runner = await start_http(p)
    try:
        yield p
    finally:
        await runner.cleanup()
