"""Dead-man's switch: a canary that must keep arriving.

The worker sends a heartbeat notification through the normal path every ``interval``
(``heartbeat_due``); an outside watcher (or a second worker) raises an alarm when the last
heartbeat it received is older than ``interval * grace`` (``overdue``).
"""

from __future__ import annotations

from alerting.notifiers.base import Message


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
