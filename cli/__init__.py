"""CLI commands, one module per command group; each exposes ``register(cli)``."""

from __future__ import annotations

import importlib

import typer

# Each module here defines ``register(cli: typer.Typer) -> None``.
COMMAND_MODULES = [
    "cli.run",  # logwarden run, worker, migrate
    "cli.kafka",  # logwarden kafka up|down|status
    "cli.categorise",  # logwarden categorise, eval loghub
    "cli.detect",  # logwarden detect replay|compare, eval nab
    "cli.scenario",  # logwarden eval scenario
    "cli.paging",  # logwarden eval paging
    "cli.produce",  # logwarden produce
    "cli.demo",  # logwarden demo
    "cli.query",  # logwarden query
    "cli.alert",  # logwarden alert ..., oncall, rules test
    "cli.peers",  # logwarden peers
    "cli.web",  # logwarden api, token create, report
    "cli.collector",  # logwarden collector (OTLP/HTTP receiver)
    "cli.store",  # logwarden store serve
    "cli.audit",  # logwarden audit verify|list
    "cli.security",  # logwarden eval security (and rules test on security.yaml / Sigma)
    "cli.incidents",  # logwarden incidents ..., eval incidents
]


def register_all(cli: typer.Typer) -> None:
    """Attach every command group to the root CLI."""
    from cli.common import eval_app

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(cli)
    cli.add_typer(eval_app, name="eval")
