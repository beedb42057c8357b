"""CLI commands, one module per command group; each exposes ``register(cli)``."""

from __future__ import annotations

import importlib

import typer

# Each module here defines ``register(cli: typer.Typer) -> None``.
COMMAND_MODULES = [
    "streams.commands.run",  # logwarden run, worker, migrate
    "streams.commands.kafka",  # logwarden kafka up|down|status
    "streams.commands.categorize",  # logwarden categorize, eval loghub
    "streams.commands.detect",  # logwarden detect replay|compare, eval nab
    "streams.commands.scenario",  # logwarden eval scenario
    "streams.commands.produce",  # logwarden produce
    "streams.commands.demo",  # logwarden demo
    "streams.commands.query",  # logwarden query
    "streams.commands.alert",  # logwarden alert ..., oncall, rules test
    "streams.commands.peers",  # logwarden peers
    "streams.commands.web",  # logwarden api, token create, report
]


def register_all(cli: typer.Typer) -> None:
    """Attach every command group to the root CLI."""
    from streams.commands.common import eval_app

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(cli)
    cli.add_typer(eval_app, name="eval")
