"""Template rates on synthetic timelines (time is a parameter): new, spike, vanished."""

from __future__ import annotations

import doctest
import random

import categorisation.rates as rates_mod
from categorisation.rates import (
    NewTemplate,
    RatesConfig,
    TemplateEvent,
    TemplateRates,
    TemplateSpike,
    TemplateVanished,
)

CFG = RatesConfig(window_s=60, warmup_s=1800, min_history=10, vanish_windows=5)
T0 = 1_699_999_980.0  # minute-aligned epoch seconds


def run(r: TemplateRates, minutes: range, per_minute: dict[str, int],
        rnd: random.Random, service: str = "web") -> list[TemplateEvent]:
    """Feed ``per_minute`` lines of each template, jittered ±30 %, spread over each minute."""
    events: list[TemplateEvent] = []
    for m in minutes:
        for tid, n in per_minute.items():
            k = max(0, round(n * rnd.uniform(0.7, 1.3)))
            for i in range(k):
                events += r.add(service, tid, T0 + 60 * m + 59 * i / max(k, 1), f"tmpl {tid}")
    return events


def test_steady_noisy_fleet_raises_nothing() -> None:
    r = TemplateRates(CFG)
    rnd = random.Random(1)
    events = run(r, range(240), {"get": 50, "post": 8, "login": 3}, rnd)
    events += run(r, range(240, 480), {"get": 50, "post": 8, "login": 3, "rare": 0}, rnd)
    assert events == []


def test_new_template_only_after_warmup() -> None:
    r = TemplateRates(CFG)
    rnd = random.Random(2)
    events = list(r.add("web", "boot", T0 + 1, "web started"))
    events += run(r, range(20), {"get": 20}, rnd)  # first 20 min: warm-up
    assert events == []
    events = run(r, range(20, 40), {"get": 20}, rnd)
    events += r.add("web", "oops", T0 + 60 * 40 + 5, "NullPointerException at <*>")
    assert events == [NewTemplate("web", "oops", "NullPointerException at <*>", T0 + 2405)]
    # Another service has its own warm-up.
    assert r.add("api", "boot", T0 + 2410, "api started") == ()
    assert r.add("web", "oops", T0 + 2420) == ()  # reported once


def test_spike_reported_once_at_onset_with_baseline() -> None:
    r = TemplateRates(CFG)
    rnd = random.Random(3)
    events = run(r, range(60), {"get": 40, "err": 2}, rnd)
    events += run(r, range(60, 63), {"get": 40, "err": 80}, rnd)  # 3 minutes of errors
    events += run(r, range(63, 90), {"get": 40, "err": 2}, rnd)
    spikes = [e for e in events if isinstance(e, TemplateSpike)]
    assert len(spikes) == 1
    s = spikes[0]
    assert (s.template_id, s.ts) == ("err", T0 + 61 * 60)
    assert s.count >= 56 and 1 <= s.baseline <= 3 and s.score >= CFG.spike_z
    assert not any(isinstance(e, TemplateVanished) for e in events)


def test_a_doubling_busy_template_is_no_spike() -> None:
    r = TemplateRates(CFG)
    rnd = random.Random(4)
    events = run(r, range(60), {"get": 100}, rnd)
    events += run(r, range(60, 70), {"get": 200}, rnd)  # traffic grows: not 3x
    assert events == []


def test_steady_template_vanishes_while_service_logs() -> None:
    r = TemplateRates(CFG)
    rnd = random.Random(5)
    events = run(r, range(60), {"get": 30, "heartbeat": 4}, rnd)
    events += run(r, range(60, 80), {"get": 30}, rnd)  # heartbeat stops at minute 60
    events += r.tick(T0 + 80 * 60)
    assert [(e.kind, e.template_id) for e in events] == [("vanished", "heartbeat")]
    v = events[0]
    assert isinstance(v, TemplateVanished)
    assert v.ts == T0 + 65 * 60 and 3 <= v.baseline <= 5 and v.last_seen < T0 + 60 * 60
    # It comes back and vanishes again later: reported again.
    events = run(r, range(80, 120), {"get": 30, "heartbeat": 4}, rnd)
    events += run(r, range(120, 130), {"get": 30}, rnd)
    assert [(e.kind, e.template_id) for e in events] == [("vanished", "heartbeat")]


def test_sporadic_template_or_silent_service_is_not_vanished() -> None:
    r = TemplateRates(CFG)
    rnd = random.Random(6)
    events: list[TemplateEvent] = []
    for m in range(60):  # "cron" every 7 minutes is not steady
        events += run(r, range(m, m + 1), {"get": 30, "cron": 1 if m % 7 == 0 else 0}, rnd)
    events += run(r, range(60, 90), {"get": 30}, rnd)
    assert events == []
    events = run(r, range(90, 150), {"beat": 5}, rnd, service="worker")
    events += r.tick(T0 + 200 * 60)  # the whole worker service goes quiet
    assert not any(e.template_id == "beat" for e in events)


def test_long_gap_is_replayed_cheaply_and_late_lines_count_now() -> None:
    r = TemplateRates(CFG)
    rnd = random.Random(7)
    run(r, range(30), {"get": 10}, rnd)
    r.add("web", "err", T0 + 30 * 60 + 1)
    for _ in range(99):  # the open window before a gap is judged, not lost
        r.add("web", "get", T0 + 30 * 60 + 2)
    events = r.tick(T0 + 86_400 * 30)  # then a month of nothing: a bounded replay
    assert [(e.kind, e.template_id, e.ts) for e in events] == [("spike", "get", T0 + 31 * 60)]
    assert r.add("web", "get", T0 + 5) == ()  # a late line counts in the open window


def test_series_are_bounded() -> None:
    r = TemplateRates(RatesConfig(max_series=100, warmup_s=0))
    for i in range(300):
        r.add("web", f"t{i}", T0 + i)  # every line a new template, 5 minutes long
    r.tick(T0 + 3600)
    assert len(r) <= 100 and r.forgotten >= 200


def test_snapshot_restore_continues_the_same() -> None:
    r = TemplateRates(CFG)
    rnd = random.Random(8)
    run(r, range(60), {"get": 30, "heartbeat": 4}, rnd)
    twin = TemplateRates(CFG)
    twin.restore(r.snapshot())
    tail = [("web", "get", T0 + 60 * m + s) for m in range(60, 70) for s in range(0, 60, 2)]
    a = [e for svc, tid, ts in tail for e in r.add(svc, tid, ts)]
    b = [e for svc, tid, ts in tail for e in twin.add(svc, tid, ts)]
    assert a == b and [e.kind for e in a] == ["vanished"]


def test_doctests() -> None:
    assert doctest.testmod(rates_mod).failed == 0
