"""Event patterns of a service, counted per minute: the raw material of root-cause ranking.

Nezha (Yu et al., FSE 2023) finds root causes by comparing the *event patterns* of a fault
period with those of a normal period: which log statements, calls and responses became more
or less frequent than usual. We keep the same idea with patterns every log row already has:

- ``T:<statement>:<level>`` an application log statement: its source location when the
  line carries one (a logger ending in a line number, ``c.s.ContactsServiceImpl#31`` or
  ``cart/views.py:88``: ``STATEMENT``), else the template the miner found, else its
  logger. A location is the statement itself; a mined template is an estimate that
  splits lines carrying payloads (Nezha's ``[trips: [Trip(id=..., ...)]]``) into many
  sparse templates, whose counts are noise to the ranking;
- ``H:<route>:<status>`` a served request (access line);
- ``P:<callee>:<operation>:<ok>`` an outbound call (``peer``), which also gives the call
  graph edge caller -> callee;
- ``L:<callee>:<band>`` the same call's latency, in bands of a quarter octave
  (``latency_band``): how long the caller waited for that callee;
- ``S:<band>`` a served request's latency: how long the service itself took.

The ranking compares a window's latency bands with the baseline's, to find calls slower
than usual and whether the callee's own serving explains them (Nezha turns trace latencies
into events the same way); they are not patterns of their own.

A service's counts live in one-minute buckets (``PatternCounts``); a window is the sum of
its buckets. Both the live engine (from ClickHouse) and the evaluation (from a replayed
file) build them with ``pattern_of``, so they rank from the same features.

>>> pattern_of({"service": "a", "level": "ERROR", "logger": "A#3", "message": "x",
...             "template_id": "t-9"})
'T:A#3:ERROR'
>>> pattern_of({"service": "a", "level": "INFO", "logger": "a.app", "template_id": "t-9"})
'T:t-9:INFO'
>>> pattern_of({"service": "a", "level": "INFO", "message": "m",
...             "peer": {"service": "b", "operation": "GET /x", "ok": False}})
'P:b:GET /x:0'
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

BUCKET_MS = 60_000  # pattern counts are kept per minute
BANDS_PER_OCTAVE = 4  # latency bands: a quarter octave (19 % apart), unit-free
# a logger that names a source line (``Class#31``, ``views.py:88``); the logs query says
# the same in RE2 (``sinks.clickhouse.queries.incidents.STATEMENT``)
STATEMENT = re.compile(r"[#:][0-9]+$")


def pattern_of(event: Mapping[str, Any]) -> str:
    """The pattern key of one log event (ingest-contract dict or a logs-table row)."""
    http = event.get("http")
    if http:
        return f"H:{http.get('route', '')}:{int(http.get('status') or 0)}"
    peer = event.get("peer")
    if peer:
        ok = peer.get("ok")
        return f"P:{peer.get('service', '')}:{peer.get('operation', '')}:{int(ok is not False)}"
    logger = str(event.get("logger") or "")
    key = logger if STATEMENT.search(logger) else event.get("template_id") or logger
    return f"T:{key}:{str(event.get('level', '')).upper()}"


def latency_band(duration_ms: float) -> int:
    """The band of a call's latency: ``floor(4 * log2(ms))``, so a band spans 19 % and a
    doubling is 4 bands (the ClickHouse query computes the same).

    >>> latency_band(1.0), latency_band(10.0), latency_band(200.0)
    (0, 13, 30)
    """
    return math.floor(BANDS_PER_OCTAVE * math.log2(duration_ms))


def latency_patterns(event: Mapping[str, Any]) -> list[str]:
    """The latency bands of one event: ``L:<callee>:<band>`` for an outbound call and
    ``S:<band>`` for a served request, when they carry a latency.

    >>> latency_patterns({"peer": {"service": "db", "duration_ms": 200.0}})
    ['L:db:30']
    >>> latency_patterns({"http": {"route": "/x", "status": 200, "duration_ms": 10.0}})
    ['S:13']
    >>> [latency_patterns({"peer": {"service": "db", "duration_ms": ms}})
    ...  for ms in (None, 0, -3.0, float("nan"), float("inf"))]
    [[], [], [], [], []]
    """
    out = []
    peer, http = event.get("peer"), event.get("http")
    if peer and peer.get("service") and _positive(peer.get("duration_ms")):
        out.append(f"L:{peer['service']}:{latency_band(float(peer['duration_ms']))}")
    if http and int(http.get("status") or 0) > 0 and _positive(http.get("duration_ms")):
        out.append(f"S:{latency_band(float(http['duration_ms']))}")
    return out


def _positive(ms: Any) -> bool:
    return ms is not None and 0 < float(ms) < math.inf


def callee_of(event: Mapping[str, Any]) -> str | None:
    """The service an outbound-call line calls, else None."""
    peer = event.get("peer")
    return str(peer["service"]) if peer and peer.get("service") else None


def _per_service() -> defaultdict[str, Counter[str]]:
    return defaultdict(Counter)


class PatternCounts:
    """Per-minute pattern counts per service, plus the call edges seen (caller, callee)."""

    def __init__(self) -> None:
        self.buckets: dict[int, dict[str, Counter[str]]] = defaultdict(_per_service)
        self.edges: set[tuple[str, str]] = set()

    def add(self, ts_ms: int, service: str, pattern: str, n: int = 1) -> None:
        """Count ``n`` occurrences of ``pattern`` at ``ts_ms``."""
        self.buckets[ts_ms // BUCKET_MS][service][pattern] += n

    def add_event(self, event: Mapping[str, Any], ts_ms: int) -> None:
        """Count one log event (and remember its call edge)."""
        service = str(event["service"])
        self.add(ts_ms, service, pattern_of(event))
        for band in latency_patterns(event):
            self.add(ts_ms, service, band)
        callee = callee_of(event)
        if callee:
            self.edges.add((service, callee))

    def window(self, start_ms: int, end_ms: int,
               exclude: Iterable[tuple[int, int]] = ()) -> dict[str, Counter[str]]:
        """Summed counts per service of the buckets overlapping [start_ms, end_ms),
        skipping buckets that overlap any excluded (start, end) span."""
        spans = list(exclude)
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for b, per in self.buckets.items():
            lo, hi = b * BUCKET_MS, (b + 1) * BUCKET_MS
            if hi <= start_ms or lo >= end_ms:
                continue
            if any(lo < e and s < hi for s, e in spans):
                continue
            for service, c in per.items():
                out[service].update(c)
        return out

    def baseline(self, start_ms: int, end_ms: int,
                 exclude: Mapping[str, Iterable[tuple[int, int]]] | None = None
                 ) -> dict[str, Counter[str]]:
        """``window(start_ms, end_ms)`` without, per service, the buckets of the spans in
        ``exclude`` (the earlier incidents it was a suspect of: a fault must not become
        normal). A bucket leaves once, however many spans overlap it."""
        out = self.window(start_ms, end_ms)
        for service, spans in (exclude or {}).items():
            if service not in out:
                continue
            gone: set[int] = set()
            for lo, hi in spans:
                lo, hi = max(lo, start_ms), min(hi, end_ms)
                if lo < hi:
                    gone.update(range(lo // BUCKET_MS, (hi - 1) // BUCKET_MS + 1))
            for b in gone:
                out[service].subtract(self.buckets.get(b, {}).get(service, Counter()))
            out[service] = +out[service]
        return out

    def prune(self, before_ms: int) -> None:
        """Forget buckets older than ``before_ms`` (bounded memory)."""
        for b in [b for b in self.buckets if (b + 1) * BUCKET_MS <= before_ms]:
            del self.buckets[b]
