"""Project exceptions."""

from __future__ import annotations


class LogwardenError(Exception):
    """Base of every error logwarden raises on purpose."""


class InvalidEvent(LogwardenError):
    """An input message that does not parse or validate; it goes to the dead-letter topic."""

    def __init__(self, reason: str, *, stage: str = "ingest") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage


class ConfigError(LogwardenError):
    """A configuration file that does not validate; names file, line and field."""


class StoreUnavailable(LogwardenError):
    """ClickHouse could not be reached or refused to open."""


class SetupError(LogwardenError):
    """A missing prerequisite (Java, Maven, a running worker) with what to do about it."""
