"""Notifications that no channel could deliver, kept and retried.

A message whose whole failover chain failed (every channel, with the deliverer's own quick
retries) goes to the manager's ``outbox`` table instead of being dropped until the group's
``repeat_interval``. Each tick retries the items that are due, with exponential backoff and
jitter; a page that failed ``handoff_after`` times is handed to the next escalation step, and
an item nobody can take over is retried until ``give_up_after_s``. Resolves are retried the
same way: the people paged must hear the alert is over.
"""

from __future__ import annotations

import random
from collections.abc import MutableMapping

from pydantic import BaseModel, ConfigDict, Field

from alerting.notifiers.base import Message


class OutboxPolicy(BaseModel):
    """How undelivered notifications are retried (``LOGWARDEN_ALERTING_OUTBOX``)."""

    model_config = ConfigDict(frozen=True)

    base_s: float = Field(default=30.0, gt=0)  # first retry after about this long
    max_s: float = Field(default=600.0, gt=0)  # backoff ceiling
    handoff_after: int = Field(default=3, ge=1)  # failed retries before the next step pages
    give_up_after_s: float = Field(default=86400.0, gt=0)  # then it is dropped (and logged)
    max_items: int = Field(default=1000, ge=1)  # the oldest is dropped beyond this


class OutboxItem(BaseModel):
    """One undelivered message and where it was going."""

    model_config = ConfigDict(frozen=True)

    message: Message
    recipient: str  # ``user:alice`` or ``channel:<receiver>`` (recipient_chain resolves it)
    receiver: str  # how the notifications table names it
    status: str  # the notifications-table status of the message
    kind: str  # "notification", "page", "resolved" or "canary"
    failures: int = 1
    first_failed_at: float
    next_at: float
    handed_off: bool = False

    @property
    def key(self) -> str:
        """Outbox table key: one entry per message and recipient."""
        return f"{self.message.id}|{self.recipient}"


def retry_at(failures: int, now: float, policy: OutboxPolicy, rng: random.Random) -> float:
    """When to try again after ``failures`` failed deliveries (equal jitter: never at once)."""
    wait = min(policy.max_s, policy.base_s * 2.0 ** (failures - 1))
    return now + wait / 2 + rng.uniform(0, wait / 2)


def failed_again(item: OutboxItem, now: float, policy: OutboxPolicy,
                 rng: random.Random) -> OutboxItem:
    """The item after one more failed delivery."""
    n = item.failures + 1
    return item.model_copy(update={"failures": n, "next_at": retry_at(n, now, policy, rng)})


def put(outbox: MutableMapping[str, bytes], item: OutboxItem,
        max_items: int) -> list[OutboxItem]:
    """Write ``item``; the oldest items beyond ``max_items`` are removed and returned."""
    outbox[item.key] = item.model_dump_json().encode()
    extra = len(outbox) - max_items
    if extra <= 0:
        return []
    items = sorted((OutboxItem.model_validate_json(v) for v in outbox.values()),
                   key=lambda i: i.first_failed_at)
    for old in items[:extra]:
        del outbox[old.key]
    return items[:extra]
