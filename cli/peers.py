"""``logwarden peers``: local SMTP + Slack/Twilio-speaking servers that record what alerting
sends, so ``make run`` can page without real accounts."""

from __future__ import annotations

import asyncio
import contextlib

import typer


def register(cli: typer.Typer) -> None:
    """Attach ``peers``."""

    @cli.command("peers")
    def peers(http_port: int = typer.Option(8026, help="Slack and Twilio API port."),
              smtp_port: int = typer.Option(8025, help="SMTP port.")) -> None:
        """Serve local stand-ins for SMTP, Slack and Twilio until Ctrl-C; what they receive
        is printed and listed at GET /_peer/requests. Point the worker at them with
        LOGWARDEN_ALERTING_SLACK='{"token": "xoxb-local", "base_url":
        "http://127.0.0.1:8026/api/"}' and LOGWARDEN_ALERTING_TWILIO='{"account_sid": "AC0",
        "auth_token": "local", "from_number": "+15550000000", "base_url":
        "http://127.0.0.1:8026"}' (SMTP defaults to 127.0.0.1:8025)."""
        try:
            from devstack.peers import Peer, start_http, start_smtp
        except ImportError as e:
            raise SystemExit(f"error: {e} (pip install 'logwarden[dev]')") from None

        class Printing(Peer):
            def record(self, channel: str, to: str, text: str) -> None:
                super().record(channel, to, text)
                typer.echo(f"{channel} -> {to}: {text}")

        async def main() -> None:
            peer = Printing(port=http_port)
            runner = await start_http(peer)
            smtp = start_smtp(peer, smtp_port)
            typer.echo(f"peers: slack/twilio http://127.0.0.1:{http_port}, "
                       f"smtp 127.0.0.1:{smtp_port}", err=True)
            try:
                await asyncio.Event().wait()
            finally:
                smtp.stop()
                await runner.cleanup()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
