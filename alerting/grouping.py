"""Aggregation groups: group wait / group interval / repeat interval -> notification decisions.

Like Alertmanager's dispatcher, as pure functions of (group state, event, now): a new group
waits ``group_wait`` to collect its alerts, then flushes every ``group_interval``; a flush
notifies when an alert is new or resolved, and otherwise repeats unacknowledged firing
alerts every ``repeat_interval``. A resolve is never lost: an alert the receiver was told is
firing is later told resolved even if a silence or an inhibition muted it in between.
Suppressed alerts ride along in the notification with the reason, for the UI.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from alerting.lifecycle import Alert, AlertState
from alerting.routing import RouteMatch


class GroupState(BaseModel):
    """One aggregation group (a Faust table value keyed by ``key``)."""

    key: str
    route: RouteMatch
    labels: dict[str, str]
    alerts: dict[str, Alert] = {}
    created_at: float
    next_flush: float
    last_notified: float | None = None
    notified_firing: list[str] = []  # fingerprints the receiver has been told are firing


class Suppressed(BaseModel):
    model_config = ConfigDict(frozen=True)

    fingerprint: str
    reason: str


class Notification(BaseModel):
    """What a receiver is told at one flush."""

    model_config = ConfigDict(frozen=True)

    id: str  # idempotency key: group key + flush time
    group_key: str
    receiver: str
    group_labels: dict[str, str]
    firing: list[Alert] = []
    acknowledged: list[Alert] = []
    resolved: list[Alert] = []
    suppressed: list[Suppressed] = []
    repeat: bool = False
    ts: float
    trigger_ts: float  # earliest trigger among what is new: for the delivery-delay metric

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"


def add_alert(state: GroupState | None, route: RouteMatch, alert: Alert,
              now: float) -> GroupState:
    """Put a new or changed alert into its group (creating the group: flush after group_wait)."""
    if state is None:
        labels = {k: alert.labels.get(k, "") for k in route.group_by if k != "..."}
        state = GroupState(key=route.group_key(alert.labels), route=route, labels=labels,
                           created_at=now, next_flush=now + route.group_wait)
    if alert.state is AlertState.RESOLVED and alert.fingerprint not in state.alerts:
        return state  # never seen firing here: nothing to tell
    return state.model_copy(update={"alerts": {**state.alerts, alert.fingerprint: alert},
                                    "route": route})


def due(state: GroupState, now: float) -> bool:
    """Whether the group should flush now."""
    return now >= state.next_flush


def flush(state: GroupState, now: float,
          suppressed: Mapping[str, str]) -> tuple[GroupState | None, Notification | None]:
    """Decide what to tell; returns the new state (None: the group is empty) and a notification.

    ``suppressed`` maps fingerprints to why they are muted (silence, inhibition, flapping).
    """
    told = set(state.notified_firing)
    live = [a for a in state.alerts.values() if a.active]
    firing = [a for a in live if a.state is AlertState.FIRING and a.fingerprint not in suppressed]
    acked = [a for a in live if a.state is AlertState.ACKNOWLEDGED
             and a.fingerprint not in suppressed]
    muted = [Suppressed(fingerprint=a.fingerprint, reason=suppressed[a.fingerprint])
             for a in live if a.fingerprint in suppressed]
    resolved = [a for a in state.alerts.values() if not a.active and a.fingerprint in told]
    new = [a for a in firing if a.fingerprint not in told]
    repeat_due = bool(firing) and state.last_notified is not None \
        and now - state.last_notified >= state.route.repeat_interval
    notify = bool(new or resolved or repeat_due)
    keep = {fp: a for fp, a in state.alerts.items() if a.active}
    after = (told | {a.fingerprint for a in new}) - {a.fingerprint for a in resolved}
    after &= set(keep)
    nxt = state.model_copy(update={
        "alerts": keep, "next_flush": now + state.route.group_interval,
        "notified_firing": sorted(after),
        "last_notified": now if notify else state.last_notified})
    note = None
    if notify:
        fresh = new or resolved or firing
        note = Notification(
            id=f"{state.key}@{now:.3f}", group_key=state.key, receiver=state.route.receiver,
            group_labels=state.labels, firing=sorted(firing, key=_order),
            acknowledged=sorted(acked, key=_order), resolved=sorted(resolved, key=_order),
            suppressed=muted, repeat=not (new or resolved), ts=now,
            trigger_ts=min(a.trigger_ts for a in fresh))
    return (nxt if keep else None), note


def _order(a: Alert) -> tuple[float, str]:
    return a.starts_at, a.fingerprint
