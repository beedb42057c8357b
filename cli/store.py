"""``logwarden store serve``: the embedded ClickHouse (chDB) behind ClickHouse's HTTP
interface, so several worker processes on one machine share one store."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import typer

from cli.common import settings

store_app = typer.Typer(help="Serve the embedded ClickHouse store to several processes.",
                        no_args_is_help=True)


@store_app.command("serve")
def serve_store(
    port: int = typer.Option(8123, help="HTTP port (ClickHouse's default is 8123)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default: "
                             "there are no users or TLS)."),
    path: Path | None = typer.Option(None, help="chDB data directory "
                                     "[default: <LOGWARDEN_DATA_DIR>/clickhouse]."),
) -> None:
    """Open the chDB store and serve it over ClickHouse's HTTP interface until Ctrl-C or
    SIGTERM. Point every worker at it with LOGWARDEN_CLICKHOUSE_URL=http://HOST:PORT (a
    development and test store: deployments use a ClickHouse server)."""
    from devstack.chdb_server import serve

    directory = path or settings().data_dir / "clickhouse"

    def stop(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        serve(directory, host, port, ready=lambda s: typer.echo(
            f"serving {directory} on {s.url}: set LOGWARDEN_CLICKHOUSE_URL={s.url}", err=True))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        sys.exit(f"error: cannot listen on {host}:{port}: {e}")
    except RuntimeError as e:  # chDB refuses a directory another process holds
        sys.exit(f"error: cannot open the store at {directory}: {e}")


def register(cli: typer.Typer) -> None:
    """Attach ``logwarden store``."""
    cli.add_typer(store_app, name="store")
