"""Shared helpers for CLI commands: settings, the `eval` sub-group."""

from __future__ import annotations

import getpass
from functools import lru_cache
from pathlib import Path

import typer

from streams.settings import Settings
from web.auth import TokenStore

# `logwarden eval ...`: evaluation commands from several modules hang here.
eval_app = typer.Typer(help="Evaluate categorisation and detection on labelled data.",
                       no_args_is_help=True)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings, read once from the environment."""
    return Settings()


def save_cli_token(path: Path, token: str) -> None:
    """Write the CLI's API token, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(token + "\n")


def ensure_cli_token(s: Settings) -> bool:
    """Give the local user a responder token for the CLI if it has none (the all-in-one
    `logwarden run`); True if it made one."""
    if s.api_token() is not None:
        return False
    token = TokenStore(s.web.token_path(s.data_dir)).create(
        f"cli:{getpass.getuser()}", "responder")
    save_cli_token(s.cli_token_path(), token)
    return True


def cli_token(s: Settings, given: str | None = None) -> str:
    """The token a command sends to the worker API: ``given`` (--token), LOGWARDEN_TOKEN or
    the CLI's token file; without any, a responder token made for the local user."""
    if given is None:
        ensure_cli_token(s)
    token = s.api_token(given)
    assert token is not None  # ensure_cli_token saved one
    return token
