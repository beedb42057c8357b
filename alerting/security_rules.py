"""Security rules: ``deploy/config/security.yaml`` and the Sigma rules of ``sigma/`` next to it.

Kinds (evaluated in event time by ``alerting/security.py``):

- ``count``: events matching ``where`` (a Sigma selection), grouped by ``group_by``, counted
  (or their distinct ``distinct`` values) over a sliding ``window``; fires at ``min``.
  Failure bursts, credential stuffing, brute force and rate-limit storms are count rules.
- ``sequence``: at least ``min_failures`` events matching ``failures`` within ``within``,
  then one matching ``then`` for the same group (success after a run of failures), from an
  address the failures came from (``same_source``) that the user never succeeded from
  (``new_address_only``).
- ``new_address``: an event matching ``where`` by a privileged user (``users``, full-match
  regexes) from an address that user was not seen on; addresses are learnt silently for the
  first ``learn`` of event time.
- ``match``: every matching event fires (role and permission changes).

Sigma files (``*.yml``, ``*.yaml``) become ``match`` rules, or ``count`` rules when their
condition has a ``| count(...)`` aggregation (``alerting/sigma.py`` documents the subset).
Every alert is keyed by the rule and its group, carries ``category: security`` and resolves
``resolve_after`` (event time) after its last hit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from alerting.sigma import (
    FIELDS,
    LEVELS,
    Matcher,
    SigmaError,
    field_name,
    parse_aggregation,
    parse_condition,
    parse_timeframe,
    selection_matcher,
)
from alerting.yamlfile import Duration, load_yaml_model, register_union_tags
from schemas.common import Regex
from schemas.errors import ConfigError

GroupField = Literal["user", "ip", "service", "route", "action"]


def _compile(sel: dict[str, Any], where: str) -> Matcher:
    try:
        return selection_matcher(sel)
    except SigmaError as e:
        raise ValueError(f"at {where}: {e}") from None


def _compile_condition(where: dict[str, Any], selections: dict[str, Any],
                       condition: str) -> Matcher:
    """``where`` alone, or a Sigma ``condition`` over named ``selections``."""
    if not condition:
        return _compile(where, "where")
    try:
        sels = {str(k): selection_matcher(v) for k, v in selections.items()}
        return parse_condition(condition, sels)
    except SigmaError as e:
        raise ValueError(f"at condition: {e}") from None


class _SecRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    severity: Literal["critical", "high", "warning", "info"] = "critical"
    description: str = ""
    labels: dict[str, str] = {}
    resolve_after: Duration = 300.0  # event time without a hit before the alert resolves
    source: str = ""  # the Sigma file it came from, if any
    # instead of ``where`` (count and match rules): a Sigma condition over named selections
    selections: dict[str, Any] = {}
    condition: str = ""


class CountRule(_SecRule):
    """Fires when a group's matching events (or distinct values) in ``window`` reach ``min``."""

    kind: Literal["count"]
    where: dict[str, Any] = {}
    group_by: list[GroupField] = ["ip"]
    distinct: Literal["", "user", "ip", "route", "action"] = ""  # '' counts events
    window: Duration = 60.0
    min: int = Field(ge=1)
    _match: Matcher = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> CountRule:
        self._match = _compile_condition(self.where, self.selections, self.condition)
        return self

    def matches(self, e: dict[str, Any]) -> bool:
        """Whether an event counts for this rule."""
        return self._match(e)


class SequenceRule(_SecRule):
    """Fires on a ``then`` event after ``min_failures`` ``failures`` of the same group."""

    kind: Literal["sequence"]
    failures: dict[str, Any] = {"kind": "login", "result": "failure"}
    then: dict[str, Any] = {"kind": "login", "result": "success"}
    group_by: list[GroupField] = ["user"]
    min_failures: int = Field(default=8, ge=1)
    within: Duration = 600.0
    # fire only when the success comes from an address the user never succeeded from
    # (a person who forgot a password logs in from home; an attacker from elsewhere)
    new_address_only: bool = True
    # ... and from an address the failures came from: the guesser got in. Elastic's
    # "Potential Successful SSH Brute Force" and Splunk's "Brute Force Access Behavior" pair
    # the failures and the success by source; the account's owner logging in from their own
    # device while someone else hammers it is not a break-in
    same_source: bool = True
    _fail: Matcher = PrivateAttr()
    _then: Matcher = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> SequenceRule:
        self._fail = _compile(self.failures, "failures")
        self._then = _compile(self.then, "then")
        return self

    def is_failure(self, e: dict[str, Any]) -> bool:
        return self._fail(e)

    def is_then(self, e: dict[str, Any]) -> bool:
        return self._then(e)


class NewAddressRule(_SecRule):
    """Fires when a privileged user succeeds from an address not seen for them before."""

    kind: Literal["new_address"]
    users: list[Regex] = Field(min_length=1)
    where: dict[str, Any] = {"kind": "login", "result": "success"}
    learn: Duration = 3600.0  # event time after the first event spent learning addresses
    _match: Matcher = PrivateAttr()
    _users: re.Pattern[str] = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> NewAddressRule:
        self._match = _compile(self.where, "where")
        self._users = re.compile("|".join(f"(?:{u})" for u in self.users))
        return self

    def matches(self, e: dict[str, Any]) -> bool:
        return bool(e.get("user")) and bool(e.get("ip")) and self._match(e) \
            and self._users.fullmatch(str(e["user"])) is not None


class MatchRule(_SecRule):
    """Every matching event fires (keyed by ``group_by``)."""

    kind: Literal["match"]
    where: dict[str, Any] = {}
    group_by: list[GroupField] = ["user"]
    _match: Matcher = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> MatchRule:
        if not self.condition and not self.where:
            raise ValueError("at where: a match rule needs a selection")
        self._match = _compile_condition(self.where, self.selections, self.condition)
        return self

    def matches(self, e: dict[str, Any]) -> bool:
        return self._match(e)


SecurityRule = Annotated[CountRule | SequenceRule | NewAddressRule | MatchRule,
                         Field(discriminator="kind")]
register_union_tags("count", "sequence", "new_address", "match")


class SecurityConfig(BaseModel):
    """``security.yaml``: the rules and where Sigma rules are read from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sigma_dir: str = "sigma"  # relative to the file; '' reads none
    max_groups: int = Field(default=200_000, ge=100)  # tracked groups per rule (oldest dropped)
    max_users: int = Field(default=500_000, ge=100)  # users whose addresses are remembered
    max_addresses: int = Field(default=16, ge=1)  # addresses remembered per user (oldest go)
    rules: list[SecurityRule] = []

    @model_validator(mode="after")
    def _unique(self) -> SecurityConfig:
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate rule names: {dup}")
        return self


class SigmaRule(BaseModel):
    """One Sigma file (the subset of ``alerting/sigma.py``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    title: str = Field(min_length=1)
    id: str = ""
    level: Literal["critical", "high", "medium", "low", "informational"] = "medium"
    description: str = ""
    logsource: dict[str, str]
    detection: dict[str, Any]

    @model_validator(mode="after")
    def _supported(self) -> SigmaRule:
        src = {k: v.lower() for k, v in self.logsource.items()}
        if src.get("category") not in (None, "authentication") or \
                src.get("product") not in (None, "logwarden") or not src:
            raise ValueError("at logsource: only category 'authentication' (or product "
                             "'logwarden') is evaluated")
        if "condition" not in self.detection:
            raise ValueError("at detection.condition: missing")
        self.compile("check")
        return self

    def compile(self, source: str) -> CountRule | MatchRule:
        """The rule this file describes, named after its title."""
        det = dict(self.detection)
        cond, timeframe = str(det.pop("condition")), det.pop("timeframe", None)
        try:
            sels = {str(k): selection_matcher(v) for k, v in det.items()}
            expr, _, agg = cond.partition("|")
            parse_condition(expr, sels)  # raises here, with the Sigma wording
            name = re.sub(r"[^A-Za-z0-9_.:-]+", "_", self.title).strip("_")
            common = {"name": name, "severity": LEVELS[self.level], "source": source,
                      "description": self.description or self.title, "selections": det,
                      "condition": expr.strip()}
            if not agg.strip():
                rule: CountRule | MatchRule = MatchRule(kind="match", **common)
            else:
                distinct, by, n = parse_aggregation(agg)
                if timeframe is None:
                    raise SigmaError("an aggregation needs a timeframe")
                groups = [field_name(b) for b in by] or ["service"]
                bad = [g for g in groups if g not in ("user", "ip", "service", "route",
                                                      "action")]
                if bad or distinct not in ("", "user", "ip", "route", "action"):
                    raise SigmaError(f"group/count fields must be among user, ip, service, "
                                     f"route, action (fields: {', '.join(FIELDS)})")
                rule = CountRule(kind="count", group_by=groups, distinct=distinct,
                                 window=parse_timeframe(str(timeframe)), min=n, **common)
        except SigmaError as e:
            raise ValueError(f"at detection: {e}") from None
        return rule


def load_security(path: Path) -> SecurityConfig:
    """``security.yaml`` and its Sigma rules; ConfigError names file, line and field."""
    cfg = load_yaml_model(path, SecurityConfig)
    if not cfg.sigma_dir:
        return cfg
    rules = list(cfg.rules)
    sigma_dir = path.parent / cfg.sigma_dir
    for f in sorted([*sigma_dir.glob("*.yml"), *sigma_dir.glob("*.yaml")]):
        rules.append(load_yaml_model(f, SigmaRule).compile(str(f)))
    names = [r.name for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{sigma_dir}: rule names (Sigma titles) used twice: {dup}")
    return cfg.model_copy(update={"rules": rules})
