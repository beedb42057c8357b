"""Project exceptions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


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


def yaml_line_of(node: Any, loc: Sequence[int | str]) -> int:
    """The 1-based line of the deepest YAML node on a validation error's path."""
    line = 1 if node is None else int(node.start_mark.line) + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
                and 0 <= key < len(node.value):
            node = node.value[key]
        else:
            node = None
        if node is None:
            break
        line = int(node.start_mark.line) + 1
    return line


class StoreUnavailable(LogwardenError):
    """ClickHouse could not be reached or refused to open."""


class SetupError(LogwardenError):
    """A missing prerequisite (Java, Maven, a running worker) with what to do about it."""


class OtlpRequestError(LogwardenError):
    """An OTLP request refused whole: HTTP ``status`` (400 malformed, 413 too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
