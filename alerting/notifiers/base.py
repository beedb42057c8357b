"""Delivery: retries with exponential backoff and jitter, per-channel rate limits, failover to
the next channel when one keeps failing, and one record per attempt for the notifications
table (outcome, latency, delay from the triggering event).

A channel raises ``TransientError`` (timeouts, connection refused, 5xx, 429: retry) or
``PermanentError`` (4xx, bad address: record, no retry, fail over); anything else it raises is
a bug in that channel, logged and treated as permanent, so the next channel still gets the
message. Time and sleep are
injected so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field

log = structlog.get_logger(__name__)


class TransientError(Exception):
    """Worth retrying."""


class PermanentError(Exception):
    """Retrying will not help."""


class Message(BaseModel):
    """What to say, rendered per channel by the channel."""

    model_config = ConfigDict(frozen=True)

    id: str  # idempotency key (notification id or page key)
    fingerprint: str = ""
    code: str = ""  # the alert's short code (``logwarden alert ack <code>``)
    reply_code: str = ""  # one-time code an SMS reply must carry (``alerting/replycodes.py``)
    status: Literal["firing", "resolved", "acknowledged", "test"] = "firing"
    severity: str = "warning"
    title: str
    text: str = ""  # plain text body
    fields: dict[str, str] = {}
    evidence: list[str] = []  # sample log lines / series values
    url: str = ""
    trigger_ts: float = 0.0  # epoch s of the triggering event


class Channel(Protocol):
    name: str
    kind: str

    async def send(self, msg: Message) -> str:
        """Deliver; return the provider's id (message ts, SID, Message-ID)."""


class DeliveryRecord(BaseModel):
    """One attempt: a row of the notifications table."""

    message_id: str
    fingerprint: str
    channel: str
    kind: str
    attempt: int
    outcome: Literal["sent", "retry", "failed", "rate_limited", "skipped"]
    error: str = ""
    provider_id: str = ""
    started_at: float
    latency_ms: float
    delay_s: float | None = None  # trigger -> delivered, on success


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    attempts: int = Field(default=4, ge=1)
    base_s: float = Field(default=1.0, ge=0)
    max_s: float = Field(default=30.0, ge=0)
    timeout_s: float = Field(default=10.0, gt=0)
    open_after: int = Field(default=3, ge=1)  # consecutive failed deliveries -> skip channel
    open_for_s: float = 60.0


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
    return rng.uniform(0, min(policy.max_s, policy.base_s * 2 ** (attempt - 1)))


@dataclass
class RateLimiter:
    """Token bucket: ``rate`` sends per second, bursts of ``burst``."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def wait_s(self, now: float) -> float:
        """0 and take a token if one is available, else how long until one is."""
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class ChannelHealth:
    """Consecutive failed deliveries per channel; a channel that keeps failing is skipped."""

    failures: dict[str, int] = field(default_factory=dict)
    open_until: dict[str, float] = field(default_factory=dict)

    def usable(self, name: str, now: float) -> bool:
        return now >= self.open_until.get(name, 0.0)

    def record(self, name: str, ok: bool, now: float, policy: RetryPolicy) -> None:
        if ok:
            self.failures[name] = 0
            self.open_until.pop(name, None)
            return
        self.failures[name] = self.failures.get(name, 0) + 1
        if self.failures[name] >= policy.open_after:
            self.open_until[name] = now + policy.open_for_s


@dataclass
class Delivery:
    """The outcome of one message over a failover chain."""

    delivered_via: str | None
    records: list[DeliveryRecord]


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:200]}"


@dataclass
class Deliverer:
    """Sends messages over failover chains with retries, rate limits and health."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limits: dict[str, RateLimiter] = field(default_factory=dict)  # by channel name
    health: ChannelHealth = field(default_factory=ChannelHealth)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    max_rate_wait_s: float = 30.0

    async def deliver(self, msg: Message, chain: Sequence[Channel]) -> Delivery:
        """Try each channel in turn (with retries) until one succeeds."""
        records: list[DeliveryRecord] = []
        for ch in chain:
            if not self.health.usable(ch.name, self.clock()):
                records.append(self._rec(msg, ch, 0, "skipped", self.clock(), 0.0,
                                         "channel failing, skipped"))
                continue
            ok = await self._try(msg, ch, records)
            self.health.record(ch.name, ok, self.clock(), self.policy)
            if ok:
                return Delivery(ch.name, records)
        return Delivery(None, records)

    async def _try(self, msg: Message, ch: Channel, records: list[DeliveryRecord]) -> bool:
        limiter = self.limits.get(ch.name)
        for attempt in range(1, self.policy.attempts + 1):
            if limiter is not None:
                wait = limiter.wait_s(self.clock())
                if wait > self.max_rate_wait_s:
                    records.append(self._rec(msg, ch, attempt, "rate_limited", self.clock(), 0))
                    return False
                if wait > 0:
                    await self.sleep(wait)
                    limiter.wait_s(self.clock())
            t0 = self.clock()
            p0 = time.perf_counter()
            try:
                pid = await asyncio.wait_for(ch.send(msg), self.policy.timeout_s)
            except (TransientError, TimeoutError) as e:
                last = attempt == self.policy.attempts
                records.append(self._rec(msg, ch, attempt, "failed" if last else "retry", t0,
                                         (time.perf_counter() - p0) * 1000, _short(e)))
                if not last:
                    await self.sleep(backoff(attempt, self.policy, self.rng))
                continue
            except PermanentError as e:
                records.append(self._rec(msg, ch, attempt, "failed", t0,
                                         (time.perf_counter() - p0) * 1000, _short(e)))
                return False
            except Exception as e:  # a channel's bug (say, rendering): fail over, don't raise
                log.exception("channel_send_bug", stage="alerting", channel=ch.name,
                              message=msg.id)
                records.append(self._rec(msg, ch, attempt, "failed", t0,
                                         (time.perf_counter() - p0) * 1000, _short(e)))
                return False
            rec = self._rec(msg, ch, attempt, "sent", t0, (time.perf_counter() - p0) * 1000)
            done = self.clock()
            records.append(rec.model_copy(update={
                "provider_id": pid,
                "delay_s": done - msg.trigger_ts if msg.trigger_ts else None}))
            return True
        return False

    @staticmethod
    def _rec(msg: Message, ch: Channel, attempt: int, outcome: str, t0: float,
             latency_ms: float, error: str = "") -> DeliveryRecord:
        return DeliveryRecord(message_id=msg.id, fingerprint=msg.fingerprint, channel=ch.name,
                              kind=ch.kind, attempt=attempt, outcome=outcome,
                              error=error, started_at=t0, latency_ms=latency_ms)
