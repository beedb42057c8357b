"""``logwarden run``, ``worker`` and ``migrate``: start the pipeline, or prepare its store."""

from __future__ import annotations

import gc

import typer

from cli.common import ensure_cli_token, settings
from devstack.kafka import LocalKafka
from schemas.errors import LogwardenError
from streams.settings import Settings
from streams.topics import prepare_topics, resolve_replication, wait_for_kafka


def start_worker(s: Settings, loglevel: str) -> None:
    """Open the runtime and run the Faust worker until it is stopped (Ctrl-C / SIGTERM)."""
    from streams.app import create_app
    from streams.logging import configure
    from streams.runtime import open_runtime
    from streams.worker import GracefulWorker

    configure(loglevel)
    if s.otlp.enabled:
        try:
            s.otlp.check()
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
    wait_for_kafka(s.kafka.bootstrap_servers(), timeout=60, security=s.kafka.librdkafka())
    s = resolve_replication(s)  # "auto": min(3, brokers)
    prepare_topics(s)
    runtime = open_runtime(s)
    tune_gc(s.stream.gc_threshold)
    app = create_app(runtime)
    worker = GracefulWorker(app, s.stream.grace_s, loglevel=loglevel.lower(), quiet=True,
                            redirect_stdouts=False,
                            override_logging=False)  # keep our structlog set-up
    try:
        worker.execute_from_commandline()
    finally:
        runtime.close(timeout=s.stream.stop_timeout_s)


def tune_gc(threshold: int) -> None:
    """Collect the young generation every ``threshold`` allocations (0: Python's default),
    the older ones every 20 of those, and leave what start-up built to the permanent
    generation (``gc.freeze``): a stream worker allocates per event and holds large,
    long-lived state, which the collector's frequent passes scanned again and again."""
    if threshold:
        gc.freeze()
        gc.set_threshold(threshold, 20, 20)


def register(cli: typer.Typer) -> None:
    """Attach ``run``, ``worker`` and ``migrate``."""

    @cli.command()
    def run(loglevel: str = typer.Option("INFO", help="Log level of the worker.")) -> None:
        """All-in-one: start the local Kafka (unless LOGWARDEN_KAFKA_BOOTSTRAP is set) and a
        worker running every stage on the embedded ClickHouse (unless LOGWARDEN_CLICKHOUSE_URL
        is set), serving the API on LOGWARDEN_STREAM_WEB_PORT."""
        s = settings()
        if ensure_cli_token(s):  # SQL through the API needs a token: the local user gets one
            typer.echo(f"api token for `logwarden query`: {s.cli_token_path()}", err=True)
        try:
            if s.kafka.embedded:
                status = LocalKafka.from_settings(s).start()
                typer.echo(f"kafka: {status.bootstrap}", err=True)
            start_worker(s, loglevel)
        except LogwardenError as exc:
            raise SystemExit(f"error: {exc}") from None

    @cli.command()
    def worker(loglevel: str = typer.Option("INFO", help="Log level of the worker.")) -> None:
        """A stream worker for cluster mode: joins the consumer group on
        LOGWARDEN_KAFKA_BOOTSTRAP; add workers (and partitions) to scale out."""
        s = settings()
        try:
            start_worker(s, loglevel)
        except LogwardenError as exc:
            raise SystemExit(f"error: {exc}") from None

    @cli.command()
    def migrate() -> None:
        """Create or upgrade the ClickHouse schema (also done at every worker start)."""
        from sinks.clickhouse.client import connect
        from sinks.clickhouse.migrate import migrate as apply

        s = settings()
        try:
            applied = apply(connect(s.clickhouse, s.data_dir), s.clickhouse)
        except (LogwardenError, RuntimeError) as exc:
            raise SystemExit(f"error: {exc}") from None
        for m in applied:
            typer.echo(f"applied {m}")
        typer.echo(f"schema up to date ({len(applied)} applied)")
