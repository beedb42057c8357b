"""``logwarden kafka up|down|status``: the local single-node Kafka the project runs itself."""

from __future__ import annotations

import time

import typer
from rich.console import Console

from cli.common import settings
from devstack.kafka import LocalKafka
from schemas.errors import SetupError
from streams.topics import is_healthy

kafka_app = typer.Typer(
    help="Start, stop and check the local Kafka broker "
    "(not used when LOGWARDEN_KAFKA_BOOTSTRAP is set).",
    no_args_is_help=True,
)
err = Console(stderr=True)


def _external() -> str | None:
    """The configured cluster's bootstrap address, None when the local broker is meant."""
    return settings().kafka.bootstrap or None


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


@kafka_app.command("up")
def up(
    timeout: float = typer.Option(90.0, help="Seconds to wait for the broker to answer."),
) -> None:
    """Start the local broker (fetching its jars on first use); print its bootstrap address."""
    external = _external()
    if external is not None:
        err.print(f"LOGWARDEN_KAFKA_BOOTSTRAP is set: using the cluster at {external}, "
                  "starting nothing")
        if not is_healthy(external, 10.0, settings().kafka.librdkafka()):
            raise _fail(f"no broker answered at {external}")
        typer.echo(external)
        return
    kafka = LocalKafka.from_settings(settings())
    started = time.monotonic()
    try:
        with err.status("checking Java and the Kafka jars"):
            if not kafka.has_jars():
                err.print(f"fetching the Kafka jars with Maven into {kafka.libs_dir} (first run)")
            already = kafka.status(timeout=2.0).healthy
        if already:
            err.print(f"the local Kafka already runs on {kafka.bootstrap}")
        else:
            with err.status(f"starting Kafka on {kafka.bootstrap} (log: {kafka.log_file})"):
                status = kafka.start(timeout=timeout)
            err.print(f"Kafka up on {status.bootstrap}, pid {status.pid}, "
                      f"in {time.monotonic() - started:.1f} s")
    except SetupError as e:
        raise _fail(str(e)) from e
    typer.echo(kafka.bootstrap)


@kafka_app.command("down")
def down(timeout: float = typer.Option(30.0, help="Seconds to wait before SIGKILL.")) -> None:
    """Stop the local broker (SIGTERM, then SIGKILL after --timeout); its data stays."""
    external = _external()
    if external is not None:
        err.print(f"LOGWARDEN_KAFKA_BOOTSTRAP is set ({external}): nothing local to stop")
        return
    kafka = LocalKafka.from_settings(settings())
    with err.status("stopping Kafka"):
        stopped = kafka.stop(timeout=timeout)
    err.print("Kafka stopped" if stopped else "the local Kafka was not running")


@kafka_app.command("status")
def status() -> None:
    """Show whether the broker runs and answers; exit code 1 if it does not answer."""
    external = _external()
    if external is not None:
        healthy = is_healthy(external, 5.0, settings().kafka.librdkafka())
        typer.echo(f"external cluster {external}: {'healthy' if healthy else 'not answering'}")
    else:
        s = LocalKafka.from_settings(settings()).status()
        healthy = s.healthy
        state = f"running, pid {s.pid}" if s.running else "not started by logwarden"
        typer.echo(f"local Kafka on {s.bootstrap}: {state}, "
                   f"{'healthy' if s.healthy else 'not answering'}")
    if not healthy:
        raise typer.Exit(1)


def register(cli: typer.Typer) -> None:
    """Attach ``logwarden kafka``."""
    cli.add_typer(kafka_app, name="kafka")
