"""Build the web part's options (token file, on-call schedules, publisher) from Settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from alerting.config import load_alerting
from alerting.oncall import Schedule
from streams.settings import Settings
from web.site import WebOptions

log = structlog.get_logger(__name__)


def schedules_loader(path: Path) -> Callable[[], list[Schedule]]:
    """On-call schedules from the alerting YAML, re-read when the file changes."""
    cache: dict[str, object] = {"mtime": None, "schedules": []}

    def load() -> list[Schedule]:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return []
        if mtime != cache["mtime"]:
            try:
                cache["schedules"] = load_alerting(path).schedules
            except Exception as exc:  # a broken file must not break the dashboards
                log.warning("oncall_config_unreadable", path=str(path), error=str(exc))
                cache["schedules"] = []
            cache["mtime"] = mtime
        schedules: list[Schedule] = cache["schedules"]  # type: ignore[assignment]
        return schedules

    return load


def web_options(s: Settings, publish: Callable[[str, bytes, str], None] | None = None
                ) -> WebOptions:
    """Options for the worker's or `logwarden api`'s web routes."""
    return WebOptions(settings=s.web, tokens_path=s.web.token_path(s.data_dir),
                      schedules=schedules_loader(s.alerting.config_file), publish=publish)
