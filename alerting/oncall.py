"""On-call schedules: rotation layers (daily/weekly turns, hand-off time, time zone,
restrictions) and overrides; ``who_is_on_call(schedule, at)``.

Layers are listed bottom to top: at any instant the highest layer with someone on call wins
(as in PagerDuty), and an override beats every layer. Turns are counted in the schedule's
local calendar, so a 09:00 hand-off stays at 09:00 across daylight-saving changes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerting.silences import DAYS

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Restriction(BaseModel):
    """The layer is on only in this local-time window (end before start: past midnight)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Day] = list(DAYS)  # type: ignore[arg-type]
    start: time
    end: time

    def contains(self, local: datetime) -> bool:
        """Whether a local time is inside the window."""
        day, t = DAYS[local.weekday()], local.time().replace(tzinfo=None)
        if self.start < self.end:
            return day in self.days and self.start <= t < self.end
        yesterday = DAYS[(local - timedelta(days=1)).weekday()]
        return (day in self.days and t >= self.start) or (yesterday in self.days and t < self.end)


class Layer(BaseModel):
    """Users taking turns of ``length`` days or weeks, handing off at ``handoff`` local time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "layer"
    users: list[str] = Field(min_length=1)
    rotation: Literal["daily", "weekly"] = "weekly"
    length: int = Field(default=1, ge=1)
    start: date  # the first turn (users[0]) begins on this date at ``handoff``
    handoff: time = time(9, 0)
    restrictions: list[Restriction] = []

    def on_call(self, local: datetime) -> str | None:
        """Who this layer has on call at a local time, or None (before start / restricted)."""
        if self.restrictions and not any(r.contains(local) for r in self.restrictions):
            return None
        days = (local.date() - self.start).days
        if local.time().replace(tzinfo=None) < self.handoff:
            days -= 1  # before today's hand-off: still yesterday's turn
        if days < 0:
            return None
        turn_days = self.length * (7 if self.rotation == "weekly" else 1)
        return self.users[(days // turn_days) % len(self.users)]


class Override(BaseModel):
    """``user`` takes the schedule between ``start`` and ``end``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> Override:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("override times need a UTC offset, e.g. 2025-01-01T09:00:00+01:00")
        if self.end <= self.start:
            raise ValueError("override ends before it starts")
        return self


class Schedule(BaseModel):
    """A named on-call schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    tz: str = "UTC"
    layers: list[Layer] = Field(min_length=1)
    overrides: list[Override] = []

    @field_validator("tz")
    @classmethod
    def _known_tz(cls, v: str) -> str:
        ZoneInfo(v)
        return v


def who_is_on_call(schedule: Schedule, at: datetime) -> list[str]:
    """The people on call at the aware instant ``at`` (empty: nobody)."""
    if at.tzinfo is None:
        raise ValueError("'at' must be timezone-aware")
    for o in reversed(schedule.overrides):  # the latest override wins
        if o.start <= at < o.end:
            return [o.user]
    local = at.astimezone(ZoneInfo(schedule.tz))
    for layer in reversed(schedule.layers):
        user = layer.on_call(local)
        if user is not None:
            return [user]
    return []


def on_call_at(schedules: dict[str, Schedule], name: str, ts: float) -> list[str]:
    """``who_is_on_call`` by schedule name and epoch seconds (unknown schedule: nobody)."""
    s = schedules.get(name)
    return who_is_on_call(s, datetime.fromtimestamp(ts, tz=UTC)) if s else []
