"""YAML files into pydantic models, with errors that name file, line and field; durations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError

from schemas.errors import ConfigError, yaml_line_of

M = TypeVar("M", bound=BaseModel)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_AT = re.compile(r"^(?:Value error, )?at ([\w.]+): (.*)$", re.DOTALL)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_duration(v: Any) -> float:
    """Seconds from ``90``, ``"30s"``, ``"5m"``, ``"1h"``, ``"2d"`` or ``"1w"``."""
    if isinstance(v, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(v, int | float):
        if v < 0:
            raise ValueError("a duration cannot be negative")
        return float(v)
    m = _DURATION.match(str(v))
    if not m:
        raise ValueError(f"not a duration: {v!r} (use e.g. 30s, 5m, 1h, 2d)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Read a YAML file into ``model``; a bad file raises ConfigError naming file, line, field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    return parse_yaml_model(text, model, source=str(path))


def parse_yaml_model(text: str, model: type[M], *, source: str = "<string>") -> M:
    """Validate YAML text into ``model``; every error names ``source``, its line and field."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = (mark.line + 1) if mark is not None else 1
        raise ConfigError(f"{source}:{line}: not valid YAML: {getattr(e, 'problem', e)}") from None
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        lines = []
        for err in e.errors()[:5]:
            loc: list[int | str] = [p for p in err["loc"] if not _is_union_tag(p)]
            msg = err["msg"]
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc.append(str((err.get("ctx") or {}).get("discriminator", "")).strip("'"))
            at = _AT.match(msg)
            if at:  # a model validator naming the path it refers to
                loc = [int(p) if p.isdigit() else p for p in at.group(1).split(".")]
                msg = at.group(2)
            field = ".".join(str(p) for p in loc) or "(top)"
            lines.append(f"{source}:{yaml_line_of(node, loc)}: {field}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def _is_union_tag(p: int | str) -> bool:
    """Pydantic puts the discriminator value (e.g. ``threshold``) into error paths."""
    return isinstance(p, str) and p in _UNION_TAGS


_UNION_TAGS: set[str] = set()


def register_union_tags(*tags: str) -> None:
    """Tell error reporting which path parts are union tags, not YAML keys."""
    _UNION_TAGS.update(tags)
