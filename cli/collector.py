"""``logwarden collector``: the OTLP/HTTP receiver on its own, writing to the Kafka topics."""

from __future__ import annotations

import asyncio
import signal

import typer

from cli.common import settings
from schemas.errors import LogwardenError
from streams.settings import Settings
from streams.topics import prepare_topics, wait_for_kafka


async def _serve(s: Settings) -> None:
    from streams.otlp_sink import run_collector

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_collector(s, stop)


def register(cli: typer.Typer) -> None:
    """Attach ``collector``."""

    @cli.command()
    def collector(
        host: str = typer.Option(None, help="Listen address (default LOGWARDEN_OTLP_HOST, "
                                 "127.0.0.1; 0.0.0.0 in a container)."),
        port: int = typer.Option(None, help="Port (default LOGWARDEN_OTLP_PORT, 4318)."),
        loglevel: str = typer.Option("INFO", help="Log level."),
    ) -> None:
        """Receive OpenTelemetry logs and metrics over OTLP/HTTP (POST /v1/logs,
        /v1/metrics; protobuf or JSON) and write them to the Kafka ingest topics.

        Senders authenticate with Authorization: Bearer $LOGWARDEN_OTLP_TOKEN. When Kafka
        is slow the receiver answers 429 with Retry-After instead of buffering without
        bound. See docs/otlp.md."""
        from streams.logging import configure

        s = settings()
        changes = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        if changes:
            s = s.model_copy(update={"otlp": s.otlp.model_copy(update=changes)})
        try:
            s.otlp.check()
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
        configure(loglevel)
        try:
            wait_for_kafka(s.kafka.bootstrap_servers(), timeout=60,
                           security=s.kafka.librdkafka())
            prepare_topics(s)
            asyncio.run(_serve(s))
        except LogwardenError as exc:
            raise SystemExit(f"error: {exc}") from None
        except OSError as exc:  # the port is taken, the address is not ours
            raise SystemExit(f"error: cannot listen on {s.otlp.host}:{s.otlp.port}: "
                             f"{exc}") from None
