"""Event-time watermarks for rule evaluation: how far the stream has got, per source and
for the whole fleet.

Rules that fire on *nothing happening* (absence) or that end on a time-out (anomaly and
template alerts' ``resolve_after``) need a clock. Wall-clock time is wrong for them: a
recorded day replayed at full speed would fire every absence rule at once, and a live
stream that lags would resolve alerts it has not seen the end of. So they read the
stream's own clock instead.

- A **source** is one service's logs, or its metrics, on one partition of the windows
  topic, and its watermark the largest window end read from it. Windows close on their
  service's own event-time watermark (``streams/windows.py``) and a partition is read in
  order, so a source's watermark is a stated "nothing earlier is still coming" from it,
  and from nothing else. The windows topic is keyed by series: each partition mixes
  windows of services read from every logs and metrics partition, and one service's
  windows (its routes, its edges) spread over all of them. Those need not keep pace: a
  worker working through a backlog (a replay at full speed, a restart) was minutes of
  event time further in some logs partitions, and in the metrics, than in others, and a
  watermark per partition or per service judged services silent whose windows were still
  on their way.
- The **fleet watermark** is the smallest source watermark among the live sources. A
  source is idle, and left out, when nothing came from it for ``idle_s`` seconds of
  *arrival* (wall-clock) time and nothing waits unread in its partition (``behind``: the
  consumer's last offset read against the broker's end of it). That is Flink's
  ``withIdleness`` with the proof that the silence is the source's own: a quiet or stopped
  service does not stop the clock for everyone, and one whose next window waits in a
  partition not yet read is behind, not quiet (for ``BEHIND_AT_MOST`` times ``idle_s`` at
  most: a consumer that never reaches a partition's end, busy as it may be, must not hold
  the clock for ever). When every source is idle the fleet watermark is the largest one:
  the stream has caught up with everything it was sent. A partition that moved to another
  worker keeps its sources here until they idle out: held back for half a minute, the
  clock is safe; without them it could run ahead of services not yet read again.
- Only windows move watermarks. Anomalies and template events are sparse and derived from
  the same events later, so they would only hold the clock back; the canary's windows are
  stamped with the worker's wall clock and are left out too.

Nothing here reads a clock: the caller passes ``now`` (arrival time) explicitly.

>>> wm = Watermarks(idle_s=30.0)
>>> wm.observe(0, ("logs", "a"), 1_000.0, now=5.0)
>>> wm.observe(1, ("logs", "b"), 1_060.0, now=5.0)
>>> wm.fleet(now=6.0)          # a's logs are the slowest live source
1000.0
>>> wm.observe(1, ("metrics", "a"), 1_300.0, now=7.0)  # its metrics are further on
>>> wm.fleet(now=7.0)          # its logs still hold the clock
1000.0
>>> wm.observe(1, ("logs", "b"), 1_120.0, now=40.0)
>>> wm.fleet(now=40.0)         # nothing of a for 35 s, and nothing unread: a is idle
1120.0
>>> wm.behind = lambda partition: partition == 0
>>> wm.fleet(now=40.0)         # partition 0 has windows unread: a may be among them
1000.0
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.windows import WindowStats

ACTIVITY_SLOT_S = 10.0  # the granularity of ``Activity`` (the base window)
ACTIVITY_KEEP_S = 6 * 3600.0  # how far back it remembers
ACTIVITY_PEER_S = 600.0  # how many services usually send: the most in a slot of this long
BEHIND_AT_MOST = 10  # x idle_s: a source not heard from this long is idle, read to the end or not
CALLS = "calls"  # ``Activity``'s record of which services were called (edge windows' callees)


def kind_of(scope: str) -> str:
    """The stream a series comes from: ``metrics`` for metric series, else ``logs``."""
    return "metrics" if scope == "metric" else "logs"


@dataclass
class Activity:
    """Which services sent data when, per stream (logs, metrics), and which were called, in
    10 s slots of event time.

    A service is down when it is silent *while the others go on*. When the fleet's logs stop
    (a log shipper or collector outage, a replayed recording with gaps), the metrics may go
    on and move the watermark, but no service's absence is news. Absence rules ask
    ``went_on``: did at least half as many services send data as the most that did in any
    slot of the ``ACTIVITY_PEER_S`` before?

    Nor is a service that nobody called down: a service logs when it is asked to, and its
    callers' traffic can stop (their requests took another path, the load moved, a caller
    failed first). So for a service that has been seen called (an edge window's callee),
    ``went_on`` also asks that someone called it while it was silent: a crashed service's
    callers go on calling it and fail. A service never seen called (an entry point, a queue
    consumer, a fleet that sends no outbound calls) is judged by the fleet alone.

    >>> act = Activity()
    >>> for t in range(1_000, 1_200, 10):
    ...     for svc in ("a", "b", "c", "d"):
    ...         act.mark("logs", float(t), svc)
    >>> act.mark("logs", 1_300.0, "a")  # only one of four goes on
    >>> act.went_on("logs", 1_250.0, 1_310.0), act.went_on("logs", 1_100.0, 1_150.0)
    (False, True)
    >>> act.mark(CALLS, 1_100.0, "b")  # "a" called "b" up to 1,100
    >>> act.went_on("logs", 1_100.0, 1_150.0, service="b", since=1_050.0)
    True
    >>> act.went_on("logs", 1_100.0, 1_150.0, service="b", since=1_100.0)  # nobody asked
    False
    >>> act.went_on("logs", 1_100.0, 1_150.0, service="c", since=1_100.0)  # never called
    True
    """

    slots: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    callees: set[str] = field(default_factory=set)  # every service seen called

    def observe(self, w: WindowStats) -> None:
        """A window arrived: a base window with data marks its service's stream, and an
        edge window's callee as called. Rollups add nothing."""
        if w.count <= 0 or w.window_s > ACTIVITY_SLOT_S:
            return
        end = w.end.timestamp()
        self.mark(kind_of(w.scope), end, w.service)
        if w.scope == "edge" and w.name:
            self.mark(CALLS, end, w.name)

    def mark(self, kind: str, end_ts: float, service: str) -> None:
        """A window of ``kind`` with data from ``service`` ended at ``end_ts`` (epoch s);
        kind ``CALLS``: someone called ``service`` in it."""
        if kind == CALLS:
            self.callees.add(service)
        got = self.slots.setdefault(kind, {})
        got.setdefault(int(end_ts // ACTIVITY_SLOT_S), set()).add(service)
        if len(got) > 2 * ACTIVITY_KEEP_S / ACTIVITY_SLOT_S:
            keep = max(got) - int(ACTIVITY_KEEP_S / ACTIVITY_SLOT_S)
            self.slots[kind] = {k: v for k, v in got.items() if k >= keep}

    def went_on(self, kind: str, after: float, upto: float, service: str = "",
                since: float = 0.0) -> bool:
        """Whether, in some slot ending in ``(after, upto]``, at least half as many services
        sent ``kind`` data as the most in one slot of the ``ACTIVITY_PEER_S`` before. Before
        it has seen anything of ``kind`` (a fresh worker), it assumes so. Given the
        ``service`` whose logs are silent since ``since``: also that someone called it in a
        slot ending in ``(since, upto]``, if it has ever been seen called."""
        if service and kind == "logs" and service in self.callees:
            calls = self.slots.get(CALLS, {})
            lo, hi = int(since // ACTIVITY_SLOT_S) + 1, int(upto // ACTIVITY_SLOT_S)
            if not any(service in calls.get(k, ()) for k in range(lo, hi + 1)):
                return False
        got = self.slots.get(kind)
        if not got:
            return True
        lo, hi = int(after // ACTIVITY_SLOT_S) + 1, int(upto // ACTIVITY_SLOT_S)
        peers = max((len(got[k]) for k in range(lo - int(ACTIVITY_PEER_S // ACTIVITY_SLOT_S),
                                                 lo) if k in got), default=0)
        return any(2 * len(got[k]) >= max(peers, 1) for k in range(lo, hi + 1) if k in got)


@dataclass
class _Source:
    event_ts: float  # the largest event time seen (epoch s)
    arrived: float  # arrival (wall-clock) time of the last message


@dataclass
class Watermarks:
    """Per-source and fleet event-time watermarks (epoch seconds)."""

    idle_s: float = 30.0  # LOGWARDEN_ALERTING_WATERMARK_IDLE_S
    sources: dict[tuple[int, Hashable], _Source] = field(default_factory=dict)
    # whether windows wait unread in a partition (the worker asks its consumer)
    behind: Callable[[int], bool] = field(default=lambda partition: False, repr=False)
    activity: Activity = field(default_factory=Activity)  # when logs / metrics had data

    def observe(self, partition: int, source: Hashable, event_ts: float, now: float) -> None:
        """A window of ``source`` (``(stream, service)``) ending at ``event_ts`` arrived on
        ``partition`` at wall-clock ``now``."""
        s = self.sources.get((partition, source))
        if s is None:
            self.sources[(partition, source)] = _Source(event_ts, now)
        else:
            s.event_ts = max(s.event_ts, event_ts)
            s.arrived = max(s.arrived, now)

    def of(self, partition: int, source: Hashable) -> float | None:
        """The watermark of one source, None before its first window."""
        s = self.sources.get((partition, source))
        return s.event_ts if s is not None else None

    def live(self, now: float) -> list[tuple[int, Hashable]]:
        """The sources that are not idle (see the module docstring)."""
        behind: dict[int, bool] = {}
        out = []
        for k, s in self.sources.items():
            quiet = now - s.arrived
            if quiet < self.idle_s:
                out.append(k)
            elif quiet < BEHIND_AT_MOST * self.idle_s:
                if k[0] not in behind:
                    behind[k[0]] = self.behind(k[0])
                if behind[k[0]]:
                    out.append(k)
        return out

    def fleet(self, now: float) -> float | None:
        """The fleet watermark (see the module docstring); None before any window."""
        if not self.sources:
            return None
        live = [self.sources[k].event_ts for k in self.live(now)]
        if live:
            return min(live)
        return max(s.event_ts for s in self.sources.values())
