"""Escalation policies: ordered steps (notify users / schedules / channels, wait N minutes),
repeated K times; ack stops escalation, resolve closes it and tells everyone paged.

The state machine is pure: ``start``, ``tick(now)``, ``acknowledge`` and ``resolve`` return
the new state and the pages to send. The worker keeps ``EscalationState`` in a Faust table
keyed by fingerprint and, on every tick, SENDS the pages first and WRITES the state after:
a kill -9 in between re-sends that step once (at most one duplicate, never a lost page);
each page has a stable ``key`` the notifications table can dedup on. Steps missed while the
worker was down are all paged on the next tick, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alerting.yamlfile import Duration


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["user", "schedule", "channel"]
    name: str


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    notify: list[Target] = Field(min_length=1)
    wait: Duration = 600.0  # before the next step


class EscalationPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    steps: list[Step] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0)  # run the whole policy this many more times


class Page(BaseModel):
    """One message to one recipient (``user:alice`` or ``channel:ops-slack``)."""

    model_config = ConfigDict(frozen=True)

    key: str  # stable: fingerprint, cycle, step, kind, recipient
    fingerprint: str
    kind: Literal["page", "resolved"]
    recipient: str
    step: int
    cycle: int
    at: float


class EscalationState(BaseModel):
    fingerprint: str
    policy: str
    status: Literal["active", "acknowledged", "resolved", "exhausted"] = "active"
    step: int = 0
    cycle: int = 0
    next_at: float
    started_at: float
    paged: list[str] = []  # recipients told so far (they hear the resolve)
    acked_by: str = ""


Resolver = Callable[[Target, float], list[str]]  # a target at a time -> recipients


def _pages(policy: EscalationPolicy, st: EscalationState, at: float,
           resolve: Resolver) -> list[Page]:
    out = []
    for t in policy.steps[st.step].notify:
        people = resolve(t, at) if t.kind == "schedule" else [t.name]
        prefix = "channel" if t.kind == "channel" else "user"
        for p in people:
            r = f"{prefix}:{p}"
            out.append(Page(key=f"{st.fingerprint}:{st.cycle}:{st.step}:page:{r}",
                            fingerprint=st.fingerprint, kind="page", recipient=r,
                            step=st.step, cycle=st.cycle, at=at))
    return out


def _remember(st: EscalationState, pages: list[Page]) -> EscalationState:
    seen = list(st.paged)
    seen += [p.recipient for p in pages if p.recipient not in seen]
    return st.model_copy(update={"paged": seen})


def start(policy: EscalationPolicy, fingerprint: str, now: float,
          resolve: Resolver) -> tuple[EscalationState, list[Page]]:
    """Begin escalating: step 0 is paged at once."""
    st = EscalationState(fingerprint=fingerprint, policy=policy.name, started_at=now,
                         next_at=now + policy.steps[0].wait)
    pages = _pages(policy, st, now, resolve)
    return _remember(st, pages), pages


def tick(st: EscalationState, policy: EscalationPolicy, now: float,
         resolve: Resolver) -> tuple[EscalationState, list[Page]]:
    """Advance through every step whose time has come."""
    pages: list[Page] = []
    while st.status == "active" and now >= st.next_at:
        step, cycle = st.step + 1, st.cycle
        if step >= len(policy.steps):
            if cycle >= policy.repeat:
                st = st.model_copy(update={"status": "exhausted"})
                break
            step, cycle = 0, cycle + 1
        due = st.next_at
        st = st.model_copy(update={"step": step, "cycle": cycle,
                                   "next_at": due + policy.steps[step].wait})
        new = _pages(policy, st, due, resolve)
        st = _remember(st, new)
        pages += new
    return st, pages


def acknowledge(st: EscalationState, by: str, now: float) -> EscalationState:
    """Someone took it: no further steps."""
    if st.status not in ("active", "exhausted"):
        return st
    return st.model_copy(update={"status": "acknowledged", "acked_by": by})


def resolve(st: EscalationState, now: float) -> tuple[EscalationState, list[Page]]:
    """Close it: everyone who was paged hears it is resolved (once)."""
    if st.status == "resolved":
        return st, []
    pages = [Page(key=f"{st.fingerprint}:resolved:{r}", fingerprint=st.fingerprint,
                  kind="resolved", recipient=r, step=st.step, cycle=st.cycle, at=now)
             for r in st.paged]
    return st.model_copy(update={"status": "resolved"}), pages
