"""Security detectors on authentication events, in event time: auth events in, signals out.

One ``SecurityDetector`` holds, per rule and group (an address, a user, a service ...), the
matching events of the rule's sliding window. A rule fires on the event that crosses its
threshold, so the alert's time is the event time of that event: a replay at any speed
gives the same alerts, and the delay after an attack starts is the attack's own pace (a
dozen attempts a second from a few addresses crosses a threshold of 8 users in about 3 s).

Signals are the alert manager's (``alerting.lifecycle.Signal``): labels ``alertname``,
``severity`` (critical by default), ``category: security`` and the group's fields; the
evidence lists the addresses, the users and the counts, with sample messages. A firing
alert is refreshed at most every ``REFRESH_S`` of event time while hits go on, and resolved
``resolve_after`` after its last hit (``advance``, called by the worker's timer).

State is bounded: ``max_groups`` groups per rule (least recently used dropped), at most
``MAX_EVENTS`` events per group, ``max_addresses`` addresses per privileged user.

>>> from alerting.security_rules import CountRule, SecurityConfig
>>> rule = CountRule(kind="count", name="stuffing", where={"result": "failure"},
...                  group_by=["ip"], distinct="user", window=60, min=3)
>>> det = SecurityDetector(SecurityConfig(rules=[rule]))
>>> ev = lambda i: {"ts": 1000 * i, "service": "shop", "event_id": str(i), "user": f"u{i}",
...                 "ip": "203.0.113.7", "result": "failure", "kind": "login"}
>>> [len(det.observe(ev(i))) for i in range(4)]
[0, 0, 1, 0]
>>> det.observe(ev(2))  # a duplicate (same event id) is ignored
[]
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerting.lifecycle import Evidence, Signal
from alerting.security_rules import (
    CountRule,
    MatchRule,
    NewAddressRule,
    SecurityConfig,
    SecurityRule,
    SequenceRule,
)

MAX_EVENTS = 5000  # per group: a window holds at most this many events
REFRESH_S = 60.0  # a firing alert's evidence is re-sent at most this often (event time)
EVIDENCE_VALUES = 10  # addresses / users listed in full
SAMPLE_LINES = 5
SEEN_IDS = 200_000  # event ids remembered against duplicates (two generations)


@dataclass
class _Group:
    events: deque[dict[str, Any]] = field(default_factory=deque)
    active: bool = False
    last_hit: int = 0
    last_sent: int = 0
    labels: dict[str, str] = field(default_factory=dict)


def _top(values: list[str]) -> tuple[str, int]:
    """'a (5), b (3), ...' of the most common non-empty values, and how many distinct."""
    c = Counter(v for v in values if v)
    shown = ", ".join(f"{v} ({n})" for v, n in c.most_common(EVIDENCE_VALUES))
    more = len(c) - EVIDENCE_VALUES
    return (f"{shown}, +{more} more" if more > 0 else shown), len(c)


class SecurityDetector:
    """All security rules over one stream of auth events (see the module docstring)."""

    def __init__(self, config: SecurityConfig) -> None:
        self.config = config
        self.groups: dict[str, OrderedDict[tuple[str, ...], _Group]] = {
            r.name: OrderedDict() for r in config.rules}
        # user -> the addresses they logged in from successfully (the address book)
        self.known: OrderedDict[str, OrderedDict[str, int]] = OrderedDict()
        self.first_ts: int | None = None
        self.seeded = False  # the address book was seeded from history: no learning period
        self.watermark = 0  # the latest event time seen (ms)
        self._young: set[str] = set()
        self._old: set[str] = set()
        self.counts: Counter[str] = Counter()

    def reconfigure(self, config: SecurityConfig) -> None:
        """New rules: state of rules that kept their name is kept."""
        self.config = config
        self.groups = {r.name: self.groups.get(r.name, OrderedDict()) for r in config.rules}

    def learn_address(self, user: str, ip: str, ts: int = 0) -> bool:
        """Remember that ``user`` logged in from ``ip``; True if it was new for them. Also how
        the worker seeds the book from stored history at start."""
        if not user or not ip:
            return False
        seen = self.known.get(user)
        if seen is None:
            seen = self.known[user] = OrderedDict()
            if len(self.known) > self.config.max_users:
                self.known.popitem(last=False)
        else:
            self.known.move_to_end(user)
        new = ip not in seen
        seen[ip] = max(ts, seen.get(ip, 0))
        seen.move_to_end(ip)
        while len(seen) > self.config.max_addresses:
            seen.popitem(last=False)
        return new

    def seed_addresses(self, pairs: Iterable[tuple[str, str, int]]) -> int:
        """Seed the address book with (user, ip, ts ms) of past successful logins."""
        n = sum(1 for user, ip, ts in pairs if self.learn_address(user, ip, ts))
        self.seeded = True
        return n

    def is_known(self, user: str, ip: str) -> bool:
        """Whether ``user`` logged in from ``ip`` before."""
        seen = self.known.get(user)
        return seen is not None and ip in seen

    def _duplicate(self, event_id: str) -> bool:
        if not event_id:
            return False
        if event_id in self._young or event_id in self._old:
            return True
        self._young.add(event_id)
        if len(self._young) >= SEEN_IDS // 2:
            self._old, self._young = self._young, set()
        return False

    def _group(self, rule: SecurityRule, key: tuple[str, ...]) -> _Group:
        groups = self.groups[rule.name]
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group()
            if len(groups) > self.config.max_groups:
                groups.popitem(last=False)
                self.counts["groups_dropped"] += 1
        else:
            groups.move_to_end(key)
        return g

    def observe(self, e: dict[str, Any]) -> list[Signal]:
        """One auth event (``schemas.auth_events`` document) -> the signals it causes."""
        if self._duplicate(str(e.get("event_id", ""))):
            self.counts["duplicates"] += 1
            return []
        ts = int(e["ts"])
        self.counts["events"] += 1
        if self.first_ts is None:
            self.first_ts = ts
        self.watermark = max(self.watermark, ts)
        out: list[Signal] = []
        success = e.get("result") == "success" and e.get("kind") == "login"
        new_address = success and not self.is_known(str(e.get("user", "")),
                                                    str(e.get("ip", "")))
        for r in self.config.rules:
            if isinstance(r, CountRule):
                out += self._count(r, e, ts)
            elif isinstance(r, SequenceRule):
                out += self._sequence(r, e, ts, new_address)
            elif isinstance(r, NewAddressRule):
                out += self._new_address(r, e, ts, new_address)
            elif r.matches(e):
                out += self._match(r, e, ts)
        if success:
            self.learn_address(str(e.get("user", "")), str(e.get("ip", "")), ts)
        self.counts["signals"] += len(out)
        return out

    @staticmethod
    def _key(group_by: Sequence[str], e: dict[str, Any]) -> tuple[str, ...] | None:
        key = tuple(str(e.get(f, "") or "") for f in group_by)
        return None if any(not k for k in key) else key

    def _count(self, r: CountRule, e: dict[str, Any], ts: int) -> list[Signal]:
        if not r.matches(e):
            return []
        key = self._key(r.group_by, e)
        if key is None:
            return []
        g = self._group(r, key)
        g.events.append(e)
        lo = ts - int(r.window * 1000)
        while g.events and (int(g.events[0]["ts"]) < lo or len(g.events) > MAX_EVENTS):
            g.events.popleft()
        if g.active:
            g.last_hit = max(g.last_hit, ts)
            if ts - g.last_sent < REFRESH_S * 1000:
                return []
        n = len({x.get(r.distinct, "") for x in g.events} - {""}) if r.distinct \
            else len(g.events)
        if n < r.min:
            return []
        what = f"distinct {r.distinct}s" if r.distinct else "events"
        return [self._fire(r, g, key, r.group_by, list(g.events), ts, float(n),
                           f"{n} {what} in {r.window:g} s")]

    def _sequence(self, r: SequenceRule, e: dict[str, Any], ts: int,
                  new_address: bool) -> list[Signal]:
        fail, then = r.is_failure(e), r.is_then(e)
        if not (fail or then):
            return []
        key = self._key(r.group_by, e)
        if key is None:
            return []
        g = self._group(r, key)
        lo = ts - int(r.within * 1000)
        while g.events and (int(g.events[0]["ts"]) < lo or len(g.events) > MAX_EVENTS):
            g.events.popleft()
        if fail:
            g.events.append(e)
            return []
        n = len(g.events)
        if n < r.min_failures or (r.new_address_only and not new_address):
            return []
        if r.same_source and str(e.get("ip")) not in {str(f.get("ip")) for f in g.events}:
            return []  # the run goes on: its guesser has not got in
        evs = [*g.events, e]
        g.events.clear()
        return [self._fire(r, g, key, r.group_by, evs, ts, float(n),
                           f"success after {n} failures in {r.within:g} s")]

    def _new_address(self, r: NewAddressRule, e: dict[str, Any], ts: int,
                     new_address: bool) -> list[Signal]:
        if not new_address or not r.matches(e):
            return []
        if not self.seeded and (self.first_ts is None or ts - self.first_ts < r.learn * 1000):
            return []  # still learning (when the book was not seeded from history)
        user, ip = str(e["user"]), str(e["ip"])
        key = (user, ip)
        g = self._group(r, key)
        known = len(self.known.get(user, ()))
        return [self._fire(r, g, key, ["user", "ip"], [e], ts, float(known),
                           f"privileged user {user} from new address {ip} ({known} known)")]

    def _match(self, r: MatchRule, e: dict[str, Any], ts: int) -> list[Signal]:
        key = self._key(r.group_by, e) or tuple("?" for _ in r.group_by)
        g = self._group(r, key)
        g.events.append(e)
        while len(g.events) > EVIDENCE_VALUES:
            g.events.popleft()
        if g.active and ts - g.last_sent < REFRESH_S * 1000:
            g.last_hit = max(g.last_hit, ts)
            return []
        what = e.get("action") or e.get("kind") or "event"
        return [self._fire(r, g, key, r.group_by, list(g.events), ts, float(len(g.events)),
                           f"{what} by {e.get('user') or '?'} from {e.get('ip') or '?'}")]

    def _fire(self, r: SecurityRule, g: _Group, key: tuple[str, ...], group_by: Sequence[str],
              evs: list[dict[str, Any]], ts: int, value: float, what: str) -> Signal:
        if not g.active:
            labels = {"alertname": r.name, "severity": r.severity, "category": "security",
                      **dict(zip(group_by, key, strict=True)), **r.labels}
            labels.setdefault("service", str(evs[-1].get("service", "")))
            g.labels = labels
        g.active, g.last_hit, g.last_sent = True, ts, ts
        addresses, n_ip = _top([str(x.get("ip", "")) for x in evs])
        users, n_user = _top([str(x.get("user", "")) for x in evs])
        head = ", ".join(f"{f} {v}" for f, v in zip(group_by, key, strict=True))
        summary = f"{r.name} ({head}): {what}"
        lines = [f"addresses ({n_ip}): {addresses or '-'}", f"users ({n_user}): {users or '-'}",
                 f"count: {what}"]
        lines += [f"{x.get('service', '')} {x.get('user', '') or '-'}@{x.get('ip', '') or '-'} "
                  f"{x.get('action', '') or x.get('kind', '')} {x.get('result', '')}: "
                  f"{str(x.get('message', ''))[:120]}" for x in evs[-SAMPLE_LINES:]]
        ann = {"summary": summary, "addresses": addresses, "users": users,
               "count": str(int(value)), "description": r.description or what}
        return Signal(status="firing", rule=r.name, labels=g.labels, annotations=ann,
                      value=value, ts=ts / 1000,
                      evidence=Evidence(field="count", series=[(ts / 1000, value)],
                                        log_lines=lines))

    def advance(self, now_ms: int | None = None) -> list[Signal]:
        """Resolve alerts quiet for ``resolve_after`` and forget empty groups (event time:
        ``now_ms`` defaults to the watermark)."""
        now = self.watermark if now_ms is None else now_ms
        out: list[Signal] = []
        for r in self.config.rules:
            keep = int(max(r.resolve_after, getattr(r, "window", 0.0),
                           getattr(r, "within", 0.0)) * 1000)
            groups = self.groups[r.name]
            for key in list(groups):
                g = groups[key]
                if g.active and now - g.last_hit >= r.resolve_after * 1000:
                    g.active = False
                    out.append(Signal(status="resolved", rule=r.name, labels=g.labels,
                                      ts=now / 1000))
                if not g.active and (not g.events or now - int(g.events[-1]["ts"]) > keep):
                    del groups[key]
        return out
