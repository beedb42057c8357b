"""The ``logwarden`` command line. Builds ``Settings`` once and passes parts down."""

from __future__ import annotations

import typer

from cli import register_all

cli = typer.Typer(
    name="logwarden",
    help="Monitoring and alerting pipeline for the logs and metrics of a fleet of services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
register_all(cli)


def main() -> None:
    """Console entry point."""
    cli()


if __name__ == "__main__":
    main()
