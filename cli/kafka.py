"""``logwarden kafka up|down|status``: the local Kafka the project runs itself, one node or
a KRaft cluster of several (``--brokers 3``) on loopback."""

from __future__ import annotations

import time

import typer
from rich.console import Console

from cli.common import settings
from devstack.kafka import LocalKafka, default_cache_dir
from devstack.kafka_cluster import LocalKafkaCluster
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


def local_cluster(brokers: int = 3) -> LocalKafkaCluster:
    """The local cluster: ``<data dir>/kafka-cluster``, client ports from
    LOGWARDEN_KAFKA_LOCAL_PORT in steps of two."""
    s = settings()
    return LocalKafkaCluster(s.data_dir / "kafka-cluster", brokers=brokers,
                             port=s.kafka.local_port,
                             cache_dir=s.kafka.cache_dir or default_cache_dir())


def _cluster_brokers() -> int:
    """The size of the local cluster started before (0: none)."""
    path = settings().data_dir / "kafka-cluster"
    return len(list(path.glob("node-*"))) if (path / "cluster.id").exists() else 0


def _up_cluster(brokers: int, timeout: float) -> None:
    cluster = local_cluster(brokers)
    started = time.monotonic()
    try:
        with err.status(f"starting {brokers} Kafka nodes on {cluster.bootstrap} "
                        f"(logs: {cluster.dir}/node-*/kafka.log)"):
            status = cluster.start(timeout=timeout)
    except SetupError as e:
        raise _fail(str(e)) from e
    err.print(f"Kafka cluster up: {status.running} brokers, replication "
              f"{cluster.nodes[0].replication}, in {time.monotonic() - started:.1f} s; "
              f"point workers at it with LOGWARDEN_KAFKA_BOOTSTRAP={status.bootstrap}")
    typer.echo(status.bootstrap)


@kafka_app.command("up")
def up(
    timeout: float = typer.Option(90.0, help="Seconds to wait for the broker to answer."),
    brokers: int = typer.Option(
        1, min=1, max=9, help="Nodes: 1 is the single broker; 3 is a KRaft cluster whose "
        "topics get replication 3 and min.insync.replicas 2 (any one node may fail)."),
) -> None:
    """Start the local broker (fetching its jars on first use); print its bootstrap address."""
    if brokers > 1:
        if _external() is not None:
            raise _fail("LOGWARDEN_KAFKA_BOOTSTRAP is set: unset it to start a local cluster")
        _up_cluster(brokers, max(timeout, 180.0))
        return
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
        n = _cluster_brokers()
        nodes = local_cluster(n).stop(timeout=timeout) if n else 0
    if nodes:
        err.print(f"Kafka cluster stopped ({nodes} nodes)")
    err.print("Kafka stopped" if stopped else "the local Kafka was not running")


@kafka_app.command("status")
def status() -> None:
    """Show whether the broker runs and answers; exit code 1 if it does not answer."""
    external = _external()
    if external is not None:
        healthy = is_healthy(external, 5.0, settings().kafka.librdkafka())
        typer.echo(f"external cluster {external}: {'healthy' if healthy else 'not answering'}")
    elif _cluster_brokers():
        c = local_cluster(_cluster_brokers()).status()
        healthy = c.healthy
        for node in c.nodes:
            state = f"running, pid {node.pid}" if node.running else "stopped"
            typer.echo(f"local Kafka node on {node.bootstrap}: {state}, "
                       f"{'healthy' if node.healthy else 'not answering'}")
        typer.echo(f"local cluster {c.bootstrap}: {c.running} of {len(c.nodes)} running")
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
