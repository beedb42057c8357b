"""Alert rules: YAML models, validation with file/line/field errors, templated text, reload.

Kinds: ``threshold`` (a window field against a value, held ``for`` a duration),
``anomaly`` (detector score), ``absence`` (a series went quiet), ``rate_of_change`` (a
field moved by more than X% over a span), ``template`` (new / spiking / vanished log
templates, by level or category) and ``composite`` (other rules firing together for the
same service). Evaluation lives in ``alerting/evaluate.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerting.runbooks import Runbook
from alerting.templating import check_template
from alerting.templating import render as render  # re-exported: rules render templates
from alerting.yamlfile import Duration, load_yaml_model, register_union_tags
from schemas.common import Regex
from schemas.errors import ConfigError

Op = Literal[">", ">=", "<", "<="]
Scope_ = Literal["service", "route", "edge", "metric", "template", "instance"]
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

    # one scope or a list of them: ``scope: [service, route, edge, instance]``
    scope: Scope_ | list[Scope_] = "service"
    service: Regex = ".*"
    route: Regex = ".*"
    name: Regex = ".*"
    window: Duration = 60.0  # which window length (WindowStats.window_s) to read

    def matches(self, scope: str, service: str, route: str = "", name: str = "") -> bool:
        """Whether a series with these keys is watched."""
        scopes = self.scope if isinstance(self.scope, list) else [self.scope]
        return (scope in scopes and re.fullmatch(self.service, service) is not None
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
    runbook: Runbook | None = None  # a link and steps, some automated (alerting/runbooks.py)

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
    min_count: int = 0  # windows with fewer events do not fire, nor resolve a firing alert


class AnomalyRule(_Rule):
    """Fires when an anomaly of a watched series passes every filter: score, feature,
    the detector's severity and the direction of the move.

    ``resolve_after`` is event time: the alert resolves once the stream's watermark is that
    far past the last matching anomaly (``alerting/watermark.py``).
    """

    kind: Literal["anomaly"]
    select: Selector = Selector()
    min_score: float = Field(default=0.99, gt=0, le=1)
    features: list[str] = []  # e.g. [error_rate, p95]; empty = any
    severities: list[Literal["critical", "warning", "info"]] = []  # detector's; empty = any
    direction: Literal["up", "down", "both"] = "both"
    resolve_after: Duration = 600.0  # no matching anomaly for this long resolves

    def accepts(self, feature: str, severity: str, direction: str, score: float) -> bool:
        """Whether one anomaly passes this rule's filters (not its selector)."""
        return (score >= self.min_score
                and (not self.features or feature in self.features)
                and (not self.severities or severity in self.severities)
                and (self.direction == "both" or direction == self.direction))


class AbsenceRule(_Rule):
    """Fires when a watched series that produced data has none for ``for``.

    Event time: the silence is measured between the series' windows of ``select.window``
    and against the fleet watermark (minus a settle margin), never the wall clock, so a
    replay at full speed fires exactly what living through it would.
    """

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
