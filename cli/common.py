"""Shared helpers for CLI commands: settings, the `eval` sub-group."""

from __future__ import annotations

from functools import lru_cache

import typer

from streams.settings import Settings

# `logwarden eval ...`: evaluation commands from several modules hang here.
eval_app = typer.Typer(help="Evaluate categorisation and detection on labelled data.",
                       no_args_is_help=True)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings, read once from the environment."""
    return Settings()
