"""Silences: label matchers (``=``, ``!=``, ``=~``, ``!~``), expiry, weekly recurring windows.

A recurring silence (``every Sunday 02:00-04:00 Europe/Paris``) is evaluated in its own time
zone with zoneinfo, so it follows daylight-saving changes; a window whose end is before its
start runs past midnight into the next day.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerting.lifecycle import Alert

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


class Matcher(BaseModel):
    """One label condition."""

    model_config = ConfigDict(frozen=True)

    name: str
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as e:
                raise ValueError(f"bad regex {self.value!r}: {e}") from None
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfies this matcher (a missing label is the empty string)."""
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """``service=~"api.*"`` -> Matcher; raises ValueError on anything else."""
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"not a matcher: {text!r} (use name=value, !=, =~ or !~)")
    name, op, value = m.groups()
    return Matcher(name=name, op=op, value=value)


def parse_matchers(items: Iterable[str | Matcher | Mapping[str, str]]) -> list[Matcher]:
    """Matchers from strings, Matcher objects or ``{name, op, value}`` mappings."""
    out = []
    for it in items:
        if isinstance(it, Matcher):
            out.append(it)
        elif isinstance(it, str):
            out.append(parse_matcher(it))
        else:
            out.append(Matcher.model_validate(it))
    return out


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Every matcher holds."""
    return all(m.matches(labels) for m in matchers)


class Weekly(BaseModel):
    """A window repeating on given weekdays, in local time of ``tz``."""

    model_config = ConfigDict(frozen=True)

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    start: time
    end: time
    tz: str = "UTC"

    @field_validator("tz")
    @classmethod
    def _known_tz(cls, v: str) -> str:
        ZoneInfo(v)  # raises for an unknown zone
        return v

    def contains(self, at: datetime) -> bool:
        """Whether the instant ``at`` (aware) falls in a window."""
        local = at.astimezone(ZoneInfo(self.tz))
        day, t = DAYS[local.weekday()], local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return day in self.days and self.start <= t < self.end
        yesterday = DAYS[(local - timedelta(days=1)).weekday()]
        return (day in self.days and t >= self.start) or (yesterday in self.days and t < self.end)


class Silence(BaseModel):
    """Mutes matching alerts between ``starts_at`` and ``ends_at`` (epoch s)."""

    model_config = ConfigDict(frozen=True)

    id: str
    matchers: list[Matcher] = Field(min_length=1)
    starts_at: float
    ends_at: float | None = None  # None: until deleted (recurring silences)
    created_by: str = ""
    comment: str = ""
    recurring: Weekly | None = None

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse(cls, v: list[str | Matcher | Mapping[str, str]]) -> list[Matcher]:
        return parse_matchers(v)

    def expired(self, now: float) -> bool:
        """Past its end: can be dropped from the table."""
        return self.ends_at is not None and now >= self.ends_at

    def active(self, now: float) -> bool:
        """Muting right now."""
        if now < self.starts_at or self.expired(now):
            return False
        if self.recurring is None:
            return True
        return self.recurring.contains(datetime.fromtimestamp(now, tz=UTC))

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        """Active and every matcher holds."""
        return self.active(now) and matches_all(self.matchers, labels)


def silenced_by(labels: Mapping[str, str], silences: Iterable[Silence], now: float) -> list[str]:
    """Ids of the silences muting this label set now."""
    return [s.id for s in silences if s.mutes(labels, now)]


def suppressing(silence: Silence, alerts: Iterable[Alert], now: float) -> list[Alert]:
    """What a silence is muting right now (for the silence view)."""
    return [a for a in alerts if a.active and silence.mutes(a.labels, now)]


def prune(silences: Iterable[Silence], now: float) -> list[Silence]:
    """Drop expired silences."""
    return [s for s in silences if not s.expired(now)]
