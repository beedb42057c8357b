"""Alert rules: YAML models, validation with file/line/field errors, templated text, reload.

Kinds: ``threshold`` (a window field against a value, held ``for`` a duration),
``anomaly`` (detector score), ``absence`` (a series went quiet), ``rate_of_change`` (a
field moved by more than X% over a span), ``template`` (new / spiking / vanished log
templates, by level or category) and ``composite`` (other rules firing together for the
same service). Evaluation lives in ``alerting/evaluate.py``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerting.yamlfile import Duration, load_yaml_model, register_union_tags
from schemas.common import Regex
from schemas.errors import ConfigError

Op = Literal[">", ">=", "<", "<="]
FIELDS = ("count", "error_count", "error_rate", "rate_per_s", "p50", "p95", "p99",
          "min", "max", "mean", "last", "sum")
Field_ = Literal["count", "error_count", "error_rate", "rate_per_s", "p50", "p95", "p99",
                 "min", "max", "mean", "last", "sum"]


def compare(op: Op, x: float, y: float) -> bool:
    """``x op y``; NaN never compares true."""
    if x != x:
        return False
    return {">": x > y, ">=": x >= y, "<": x < y, "<=": x <= y}[op]


class Selector(BaseModel):
    """Which series a rule watches; every given field is a full-match regex."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Literal["service", "route", "metric", "template"] = "service"
    service: Regex = ".*"
    route: Regex = ".*"
    name: Regex = ".*"
    window: Duration = 60.0  # which window length (WindowStats.window_s) to read

    def matches(self, scope: str, service: str, route: str = "", name: str = "") -> bool:
        """Whether a series with these keys is watched."""
        return (scope == self.scope and re.fullmatch(self.service, service) is not None
                and re.fullmatch(self.route, route) is not None
                and re.fullmatch(self.name, name) is not None)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    severity: Literal["critical", "high", "warning", "info"] = "warning"
    for_: Duration = Field(default=0.0, alias="for")
    keep_firing_for: Duration = 0.0  # a cleared condition resolves only after this long
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}

    @field_validator("labels", "annotations")
    @classmethod
    def _templates_parse(cls, v: dict[str, str]) -> dict[str, str]:
        for text in v.values():
            check_template(text)
        return v


class ThresholdRule(_Rule):
    """Fires while ``field op value`` holds on every window for ``for``."""

    kind: Literal["threshold"]
    select: Selector = Selector()
    field: Field_
    op: Op = ">"
    value: float
    min_count: int = 0  # ignore windows with fewer events (an error rate of 1 event)


class AnomalyRule(_Rule):
    """Fires when the anomaly score of a watched series reaches ``min_score``."""

    kind: Literal["anomaly"]
    select: Selector = Selector()
    min_score: float = Field(default=0.99, gt=0, le=1)
    resolve_after: Duration = 600.0  # no alarm for this long resolves


class AbsenceRule(_Rule):
    """Fires when a watched series that produced data has none for ``for``."""

    kind: Literal["absence"]
    select: Selector = Selector()

    @model_validator(mode="after")
    def _needs_for(self) -> AbsenceRule:
        if self.for_ <= 0:
            raise ValueError("an absence rule needs a 'for' duration > 0")
        return self


class RateOfChangeRule(_Rule):
    """Fires when ``field`` changed by more than ``percent`` over ``over``."""

    kind: Literal["rate_of_change"]
    select: Selector = Selector()
    field: Field_
    over: Duration = 600.0
    percent: float = Field(gt=0)  # |relative change| in percent
    direction: Literal["up", "down", "both"] = "up"


class TemplateRule(_Rule):
    """Fires on template events: a new template, a spike, a vanished one."""

    kind: Literal["template"]
    events: list[Literal["new", "spike", "vanished"]] = ["new"]
    service: Regex = ".*"
    levels: list[str] = []  # e.g. [ERROR, CRITICAL]; empty = any
    categories: list[str] = []  # e.g. [security]; empty = any
    resolve_after: Duration = 3600.0


class CompositeRule(_Rule):
    """Fires when the listed rules fire for the same service (``all``) or any of them."""

    kind: Literal["composite"]
    all: list[str] = []
    any: list[str] = []

    @model_validator(mode="after")
    def _has_parts(self) -> CompositeRule:
        if not self.all and not self.any:
            raise ValueError("a composite rule needs 'all' or 'any'")
        return self


Rule = Annotated[ThresholdRule | AnomalyRule | AbsenceRule | RateOfChangeRule | TemplateRule
                 | CompositeRule, Field(discriminator="kind")]
register_union_tags("threshold", "anomaly", "absence", "rate_of_change", "template",
                    "composite")


class RuleSet(BaseModel):
    """One rules file: ``rules: [...]`` with unique names, composites naming known rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = []

    @model_validator(mode="after")
    def _consistent(self) -> RuleSet:
        names = [r.name for r in self.rules]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate rule names: {sorted(dup)}")
        for i, r in enumerate(self.rules):
            if isinstance(r, CompositeRule):
                unknown = [n for n in r.all + r.any if n not in names or n == r.name]
                if unknown:
                    part = "all" if set(unknown) & set(r.all) else "any"
                    raise ValueError(f"at rules.{i}.{part}: composite {r.name!r} names "
                                     f"unknown rules {unknown}")
        return self

    def by_name(self) -> dict[str, Rule]:
        """The rules keyed by name."""
        return {r.name: r for r in self.rules}


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


def load_rules(path: Path) -> RuleSet:
    """Read a rules file; a bad file raises ConfigError naming file, line and field."""
    return load_yaml_model(path, RuleSet)


class RulesHolder:
    """The rules in force: a reload that fails keeps the last good set."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.rules = RuleSet()
        self.last_error: str | None = None

    def reload(self) -> str | None:
        """Re-read every file; on any error keep the old rules and return the error."""
        merged: list[Any] = []
        try:
            for p in self.paths:
                merged.extend(load_rules(p).rules)
            self.rules = RuleSet.model_validate({"rules": [r.model_dump(by_alias=True)
                                                           for r in merged]})
        except (ConfigError, ValueError) as e:
            self.last_error = str(e)
            return self.last_error
        self.last_error = None
        return None
