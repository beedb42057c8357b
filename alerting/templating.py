"""Text templates of rules, annotations and runbook steps: ``{service} {value:.1%}``, with
plain names only (no attribute or index access) and ``?`` for a missing name."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any


class _SafeFormatter(string.Formatter):
    """``str.format`` with plain names only: no attribute or index access, missing -> ``?``."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field_name):
            raise ValueError(f"only plain names are allowed in templates: {{{field_name}}}")
        return kwargs.get(field_name, "?"), field_name


_FORMATTER = _SafeFormatter()


def check_template(text: str) -> None:
    """Raise ValueError when ``text`` is not a valid template."""
    for _lit, name, _spec, _conv in _FORMATTER.parse(text):
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"only plain names are allowed in templates: {{{name}}}")


def render(text: str, values: Mapping[str, Any]) -> str:
    """Fill ``{name}`` / ``{value:.1%}`` placeholders; never raises on user data."""
    try:
        return _FORMATTER.vformat(text, (), dict(values))
    except (ValueError, TypeError, KeyError):
        return _FORMATTER.vformat(re.sub(r":[^{}]*}", "}", text), (), dict(values))
