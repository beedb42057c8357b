"""Dead-man's switch: a canary that must keep arriving.

The worker sends a heartbeat notification through the normal path every ``interval``
(``heartbeat_due``); an outside watcher (or a second worker) raises an alarm when the last
heartbeat it received is older than ``interval * grace`` (``overdue``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from alerting.notifiers.base import Message

MAX_PENDING_CANARIES = 100  # canaries remembered while none of them is proven


class HeartbeatState(BaseModel):
    """The ``deadman`` entry of the manager's meta table (times in epoch s)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    last: float | None = None  # when the last heartbeat went out


class CanaryState(BaseModel):
    """The ``canary`` entry of the manager's meta table (times in epoch s)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sent: float | None = None  # the latest canary sent
    sends: list[float] = []  # canaries not yet proven by a closed window (oldest first)
    seen: float = 0.0  # end of the latest closed window that proved a canary
    seen_sent: float = 0.0  # the latest canary proven
    alarmed: bool = False
    alarmed_for: float | None = None  # the canary the last alarm was about

    def pending(self) -> list[float]:
        """Canaries sent and not proven yet."""
        return [x for x in self.sends if x > self.seen_sent]

    def on_sent(self, ts: float) -> CanaryState:
        """A canary went out at ``ts``."""
        sends = [*self.pending(), ts][-MAX_PENDING_CANARIES:]
        return self.model_copy(update={"sent": ts, "sends": sends, "alarmed": False})

    def on_seen(self, start: float, end: float, now: float) -> tuple[CanaryState, float | None]:
        """A canary-service window ``[start, end)`` reached alerting at ``now``: the new state
        and the latest canary it proves (None: it proves nothing).

        It proves the canaries sent within it once it is closed (``end <= now``): a window
        flushed early (an idle service's open window or rollup) may predate a canary's
        arrival. Any outstanding canary counts, not only the latest: the next canary is often
        sent before the window of the previous one closes."""
        covered = [x for x in self.sends if start <= x < end]
        if not covered or end > now:
            return self, None
        proved = max(covered)
        return self.model_copy(update={"seen": max(self.seen, end),
                                       "seen_sent": max(self.seen_sent, proved)}), proved

    def missing(self, now: float, grace_s: float) -> float | None:
        """The oldest unproven canary older than ``grace_s`` not yet alarmed about."""
        pending = self.pending()
        sent = min(pending) if pending else None
        if sent is None or self.alarmed_for == sent or now - sent <= grace_s:
            return None
        return sent


def heartbeat_due(last_sent: float | None, now: float, interval_s: float) -> bool:
    """Whether the next canary should go out now."""
    return last_sent is None or now - last_sent >= interval_s


def heartbeat_message(now: float) -> Message:
    """The canary message (idempotent per interval start)."""
    return Message(id=f"deadman@{int(now)}", status="test", severity="info",
                   title="logwarden heartbeat", text="The alerting pipeline is alive.",
                   trigger_ts=now)


def overdue(last_seen: float | None, now: float, interval_s: float, grace: float = 2.0) -> bool:
    """Whether the canary is missing: the pipeline (or a channel) is broken."""
    return last_seen is None or now - last_seen > interval_s * grace
