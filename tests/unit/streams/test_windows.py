"""Event-time windows: aggregates checked against values computed independently."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from schemas.windows import WindowStats
from streams.windows import WindowAggregator

T0 = 1_800_000_000_000  # a multiple of 60 s


def feed(agg: WindowAggregator, events: list[tuple[int, str, str, float]]) -> None:
    for ts, route, level, dur in events:
        agg.add_log("api", route, ts_ms=ts, level=level, duration_ms=dur)


def make_events(n: int, seed: int = 1) -> list[tuple[int, str, str, float]]:
    rng = random.Random(seed)
    return [
        (T0 + rng.randrange(0, 120_000), rng.choice(["GET /a", "POST /b"]),
         rng.choice(["INFO", "INFO", "WARN", "ERROR"]), rng.lognormvariate(3, 1))
        for _ in range(n)
    ]


def test_windows_match_independent_computation() -> None:
    events = make_events(5000)
    agg = WindowAggregator(base_s=10, rollups_s=(60,), grace_s=0)
    feed(agg, sorted(events))
    out = agg.advance(T0 + 10**9)
    by_key = {(w.series, w.window_s, int(w.start.timestamp() * 1000)): w for w in out}
    for size in (10, 60):
        for start in range(T0, T0 + 120_000, size * 1000):
            for route in ("GET /a", "POST /b"):
                sel = [e for e in events if start <= e[0] < start + size * 1000 and e[1] == route]
                w = by_key[(f"api {route}", size, start)]
                assert w.count == len(sel)
                assert w.error_count == sum(e[2] == "ERROR" for e in sel)
                assert w.level_counts.get("WARN", 0) == sum(e[2] == "WARN" for e in sel)
                assert w.rate_per_s == pytest.approx(len(sel) / size)
                durs = np.array([e[3] for e in sel])
                for q, got in ((0.5, w.p50), (0.95, w.p95), (0.99, w.p99)):
                    # DDSketch guarantees 1 % relative error against a rank-q value.
                    lo = np.quantile(durs, max(0.0, q - 1.5 / len(durs)), method="lower")
                    hi = np.quantile(durs, min(1.0, q + 1.5 / len(durs)), method="higher")
                    assert lo * 0.99 <= got <= hi * 1.01
            svc = by_key[("api", size, start)]
            assert svc.count == sum(start <= e[0] < start + size * 1000 for e in events)



def test_percentiles_count_the_timed_requests_behind_them() -> None:
    agg = WindowAggregator(base_s=10, rollups_s=(), grace_s=0)
    for i in range(30):  # 10 timed requests (one of 0 ms), 20 lines without a duration
        dur = None if i % 3 else float(i % 9)
        agg.add_log("api", "GET /a" if dur is not None else "", T0 + i, "INFO", dur)
    by_series = {w.series: w for w in agg.advance(T0 + 10**9)}
    assert (by_series["api"].count, by_series["api"].samples) == (30, 10)
    assert (by_series["api GET /a"].count, by_series["api GET /a"].samples) == (10, 10)
    assert by_series["api"].p50 == by_series["api GET /a"].p50
def test_order_of_arrival_does_not_change_windows() -> None:
    events = make_events(2000, seed=7)
    a = WindowAggregator(grace_s=200)
    b = WindowAggregator(grace_s=200)
    feed(a, sorted(events))
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    feed(b, shuffled)
    def key(w: WindowStats) -> tuple[object, ...]:  # float sums differ in the last bit only
        return (w.series, w.window_s, w.start, w.count, w.error_count, w.p99, round(w.sum, 6))

    assert sorted(map(key, a.advance(T0 + 10**9))) == sorted(map(key, b.advance(T0 + 10**9)))


def test_late_events_within_grace_count_and_beyond_are_dropped() -> None:
    agg = WindowAggregator(base_s=10, rollups_s=(), grace_s=5)
    agg.add_log("api", "", T0 + 1000, "INFO")
    agg.add_log("api", "", T0 + 14_000, "INFO")  # watermark 14 s: window [0,10) still open
    agg.add_log("api", "", T0 + 2000, "INFO")  # late but within grace
    assert agg.advance() == []  # 10 + 5 > 14
    agg.add_log("api", "", T0 + 16_000, "INFO")
    closed = agg.advance()
    assert [(w.count, w.start.timestamp()) for w in closed] == [(2, T0 / 1000)]
    agg.add_log("api", "", T0 + 3000, "INFO")  # beyond grace
    assert agg.late_dropped == 1
    assert agg.advance() == []


def test_an_event_in_its_series_last_window_after_it_closed_is_late() -> None:
    agg = WindowAggregator(base_s=10, rollups_s=(), grace_s=5)
    agg.add_log("api", "GET /a", T0 + 1000, "INFO")
    closed = agg.advance(T0 + 60_000)  # closes [0, 10) with no event of a later window
    assert [(w.scope, w.count) for w in closed] == [("service", 1), ("route", 1)]
    agg.add_log("api", "GET /a", T0 + 2000, "INFO")  # the same window as the last event
    assert agg.late_dropped == 1
    assert agg.flush() == []  # counted nowhere


def test_flush_emits_open_windows_and_late_data_revises_them() -> None:
    agg = WindowAggregator(base_s=10, rollups_s=(), grace_s=30)
    agg.add_log("api", "", T0 + 1000, "ERROR")
    first = agg.flush()
    assert [(w.count, w.revision) for w in first] == [(1, 0)]
    assert agg.flush() == []  # nothing changed, nothing re-emitted
    agg.add_log("api", "", T0 + 2000, "INFO")
    final = agg.advance(T0 + 60_000)
    assert [(w.count, w.error_count, w.revision) for w in final] == [(2, 1, 1)]


def test_metric_windows() -> None:
    agg = WindowAggregator(base_s=10, rollups_s=(60,), grace_s=0)
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]
    for i, v in enumerate(values):
        agg.add_metric("db/cpu", "db", "cpu", T0 + i * 10_000 + 500, v)
    out = {(w.window_s, w.start.timestamp()): w for w in agg.advance(T0 + 10**9)}
    w60 = out[(60, T0 / 1000)]
    assert (w60.count, w60.min, w60.max, w60.last) == (6, 1.0, 9.0, 9.0)
    assert w60.mean == pytest.approx(sum(values) / 6)
    w10 = out[(10, T0 / 1000)]
    assert (w10.count, w10.last) == (1, 3.0)
    assert math.isnan(w10.p95)  # no latencies in a metric series


def test_rollup_must_be_multiple_of_base() -> None:
    with pytest.raises(ValueError, match="multiple"):
        WindowAggregator(base_s=10, rollups_s=(25,))


def test_quantiles_are_ddsketch_quantiles() -> None:
    """The fast quantiles read off the buckets equal the ddsketch library's answer."""
    agg = WindowAggregator(base_s=10, rollups_s=(), grace_s=0)
    rng = random.Random(11)
    for i in range(3000):
        dur = rng.choice([0.0, rng.paretovariate(1.5)])
        agg.add_log("api", "", T0 + i, "INFO", duration_ms=dur)
    acc = next(iter(agg.open.values()))
    sk = acc.sketch()
    qs = (0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0)
    assert acc.quantiles(qs) == pytest.approx([sk.get_quantile_value(q) for q in qs])


def test_a_lagging_service_is_not_pushed_late_by_another() -> None:
    """Watermarks are per service: a service whose clock is behind another's on the same
    partition keeps its windows."""
    agg = WindowAggregator(base_s=10, rollups_s=(), grace_s=5)
    agg.add_log("fast", "", T0 + 600_000, "INFO")  # ten minutes ahead
    agg.add_log("slow", "", T0 + 1000, "INFO")
    agg.add_log("slow", "", T0 + 2000, "INFO")
    assert agg.late_dropped == 0
    agg.add_log("slow", "", T0 + 30_000, "INFO")  # closes slow's first window, not fast's
    closed = agg.advance()
    assert [(w.service, w.count) for w in closed] == [("slow", 2)]
    agg.add_log("slow", "", T0 + 3000, "INFO")  # beyond slow's own grace now
    assert agg.late_dropped == 1


def test_idle_services_are_flushed_alone() -> None:
    agg = WindowAggregator(base_s=10, rollups_s=(60,), grace_s=30)
    agg.now = 100.0
    agg.add_log("quiet", "", T0 + 1000, "ERROR")
    agg.now = 130.0
    agg.add_log("busy", "", T0 + 2000, "INFO")
    assert agg.idle_services(now=131.0, idle_s=30) == {"quiet"}
    flushed = agg.flush(agg.idle_services(now=131.0, idle_s=30))
    assert {(w.service, w.window_s, w.count) for w in flushed} == {("quiet", 10, 1),
                                                                    ("quiet", 60, 1)}


def test_a_window_flushed_while_open_is_emitted_again_when_it_closes() -> None:
    agg = WindowAggregator(base_s=10, rollups_s=(60,), grace_s=2)
    agg.add_log("api", "", T0 + 1000, "INFO")
    early = agg.flush()  # the service went quiet: provisional versions
    assert sorted((w.window_s, w.revision) for w in early) == [(10, 0), (60, 0)]
    assert all(w.partial for w in early)  # its newest event is inside: maybe cut short
    final = agg.advance(T0 + 120_000)  # closed without new events: the final versions
    assert sorted((w.window_s, w.revision, w.count) for w in final) == [(10, 1, 1), (60, 1, 1)]
    assert not any(w.partial for w in final)
    assert agg.advance(T0 + 240_000) == []


def test_only_a_window_not_ended_before_the_newest_event_is_partial() -> None:
    """Flushed open windows that ended before the newest event (of any service here) are
    whole, events coming in time order; the one holding it may have been cut short by the
    stream stopping. A service that went quiet while the others went on is not cut short."""
    agg = WindowAggregator(base_s=10, rollups_s=(), grace_s=30)
    for t in range(0, 25_000, 1000):
        agg.add_log("api", "", T0 + t, "INFO")
    agg.add_log("quiet", "", T0 + 3000, "INFO")
    flushed = agg.flush()
    assert sorted((w.service, w.start.timestamp() * 1000 - T0, w.partial) for w in flushed) == [
        ("api", 0, False), ("api", 10_000, False), ("api", 20_000, True), ("quiet", 0, False)]
