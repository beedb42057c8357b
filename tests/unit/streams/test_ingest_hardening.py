"""The ingest stage under bad input (#11): never raises, dead-letters with a reason, keeps
watermarks and series bounded. Named regressions of what was found against `logwarden run`,
and a hypothesis fuzz of the pure processor."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import topics
from streams.cardinality import OTHER, CardinalityCaps
from streams.ingest import IngestProcessor, Record

NOW_S = 1_780_000_000.0
NOW_MS = int(NOW_S * 1000)
DAY_MS = 86_400_000


def processor(**kw: Any) -> IngestProcessor:
    """A processor as a worker runs it: 5 min future bound, 14-day logs retention."""
    kw.setdefault("max_future_s", 300.0)
    kw.setdefault("retention_s", {topics.LOGS: 14 * 86_400.0, topics.METRICS: 30 * 86_400.0})
    return IngestProcessor(grace_s=30.0, clock=lambda: NOW_S, **kw)


def log(ts: Any, i: int = 0, service: str = "api", route: str = "/r") -> bytes:
    return orjson.dumps({"ts": ts, "service": service, "level": "INFO", "message": f"m{i}",
                         "event_id": f"{service}-{i}", "http": {"method": "GET",
                                                                "route": route}})


def records(values: list[bytes], topic: str = topics.LOGS, first: int = 0) -> list[Record]:
    return [Record(topic, 0, first + i, b"api", v) for i, v in enumerate(values)]


def test_regression_1e300_ts_is_dead_lettered_and_the_batch_goes_on() -> None:
    proc = processor()
    out = proc.process(records([log(NOW_MS, 1), b'{"ts": 1e300, "service": "api", '
                                b'"level": "INFO", "message": "boom"}', log(NOW_MS, 2)]))
    assert len(out.logs) == 2 and out.offsets == {(topics.LOGS, 0): 3}
    [dead] = out.dead_letters
    assert dead[3] == 1 and dead[4] == "ingest.logs" and "out of range" in dead[5]
    assert dead[6].startswith(b'{"ts": 1e300')  # the original bytes


def test_regression_150_days_of_old_ts_are_dead_lettered_past_retention() -> None:
    """150 lines over 150 past days: the 14 days within retention are stored, the rest are
    refused with the bound (the TTL would drop them at the next merge anyway), so a block
    never spans 150 table partitions (and the writer bisects one that does)."""
    proc = processor()
    out = proc.process(records([log(NOW_MS - d * DAY_MS - 1000, d) for d in range(150)]))
    assert len(out.logs) == 14 and len(out.dead_letters) == 136
    assert {d[4] for d in out.dead_letters} == {"ingest.logs"}
    assert "14-day retention" in out.dead_letters[0][5]
    assert proc.counts["dead_letter.ingest.logs"] == 136


def test_regression_one_future_ts_does_not_blind_the_service() -> None:
    """One line 23 h ahead, then 200 normal lines: the future one is dead-lettered (a wrong
    producer clock; clamping it would invent a time), and none of the 200 is late."""
    proc = processor()
    out1 = proc.process(records([log(NOW_MS + 23 * 3_600_000, 0)]))
    assert "ahead of arrival" in out1.dead_letters[0][5]
    out2 = proc.process(records([log(NOW_MS - 20_000 + i * 100, i + 1) for i in range(200)],
                                first=1))
    assert len(out2.logs) == 200 and proc.counts["late_dropped"] == 0
    wm = proc.windows[topics.LOGS, 0].watermarks["api"]
    assert wm <= NOW_MS


def test_a_line_within_the_future_bound_is_kept_but_does_not_move_the_watermark() -> None:
    proc = processor()
    proc.process(records([log(NOW_MS + 240_000, 0)]))  # 4 min ahead: within 5 min, kept
    out = proc.process(records([log(NOW_MS - 5_000 + i, i + 1) for i in range(50)], first=1))
    assert len(out.logs) == 50 and proc.counts["late_dropped"] == 0
    assert proc.windows[topics.LOGS, 0].watermarks["api"] == NOW_MS  # the arrival clock


def test_routes_past_the_cap_fold_into_other_with_a_count_and_a_sample() -> None:
    caps = CardinalityCaps(max_routes_per_service=3)
    proc = processor(caps=caps)
    out = proc.process(records([log(NOW_MS - 60_000 + i, i, route=f"/u/{i}")
                                for i in range(2000)]))
    assert len(out.logs) == 2000  # every row stored, with its real route
    assert caps.folded["route"] == 1997
    samples = [d for d in out.dead_letters if d[4] == "ingest.cardinality"]
    assert len(samples) == 2  # the first fold, then one per 1000
    assert "stream.max_routes_per_service" in samples[0][5] and samples[0][3] == 3
    proc.process(records([log(NOW_MS + 60_000, 9999)], first=2000))  # close the windows
    routes = {w.route for w in proc.flush_idle()} | {
        w.route for w in proc.windows[topics.LOGS, 0].flush()}
    assert routes <= {"", "GET /u/0", "GET /u/1", "GET /u/2", OTHER}


def test_metric_series_and_services_past_their_caps_fold() -> None:
    caps = CardinalityCaps(max_services=2, max_series_per_service=2)
    proc = processor(caps=caps)
    values = [orjson.dumps({"ts": NOW_MS - 1000, "service": s, "name": "cpu", "value": 1.0,
                            "labels": {"req": str(i)}})
              for s in ("a", "b", "c") for i in range(5)]
    out = proc.process(records(values, topic=topics.METRICS))
    assert len(out.metrics) == 15
    assert caps.folded["series"] == 3 + 3 + 3 and caps.folded["service"] == 5
    series = {w.series for w in proc.windows[topics.METRICS, 0].flush()}
    assert series == {"a/cpu{req=0}", "a/cpu{req=1}", "a/other", "b/cpu{req=0}",
                      "b/cpu{req=1}", "b/other", "other/cpu{req=0}", "other/cpu{req=1}",
                      "other/other"}


def test_an_unexpected_error_in_the_stage_is_dead_lettered_not_raised() -> None:
    def broken(*_: Any) -> tuple[str, str, str]:
        raise KeyError("categoriser bug")

    proc = processor(categorise=broken)
    out = proc.process(records([log(NOW_MS, 1)]))
    assert out.logs == [] and out.dead_letters[0][4] == "ingest.internal"
    assert "KeyError" in out.dead_letters[0][5] and proc.counts["error.internal"] == 1
    assert out.offsets == {(topics.LOGS, 0): 1}  # the batch still completes


def test_offsets_landed_before_a_crash_are_windowed_but_not_written_again() -> None:
    proc = processor()
    # offset 13 holds another event than the one stored there (a recreated topic): written
    proc.skip_landed({(topics.LOGS, 0): {10: "api-5", 11: "api-6", 12: "api-7",
                                         13: "other"}})
    out = proc.process(records([log(NOW_MS - 1000 + i, i) for i in range(20)], first=5))
    assert [r[27] for r in out.logs] == [5, 6, 7, 8, 9, *range(13, 25)]
    assert proc.counts["replayed_landed"] == 3
    assert proc.landed == {}  # past the landed offsets: forgotten
    windows = proc.windows[topics.LOGS, 0].flush()
    assert max(w.count for w in windows if w.scope == "service") == 20


# -- fuzzing ------------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                     st.text(max_size=20))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
_ts = st.one_of(st.integers(min_value=NOW_MS - 40 * DAY_MS, max_value=NOW_MS + 2 * DAY_MS),
                st.sampled_from([1e300, 10**30, -1, 0, "2026-01-05T00:00:00Z", "soon"]),
                _scalars)
_events = st.fixed_dictionaries(
    {"ts": _ts, "service": st.sampled_from(["api", "db", "a b", ""])},
    optional={"level": st.sampled_from(["INFO", "error", "LOUD"]), "message": _scalars,
              "name": st.sampled_from(["cpu", "9x"]), "value": _scalars,
              "kind": st.sampled_from(["deploy", "gauge", "X"]), "description": _scalars,
              "target_kind": st.sampled_from(["alert", "x"]), "target_id": _scalars,
              "verdict": st.sampled_from(["true", "T"]), "event_id": _scalars,
              "labels": _values, "http": _values, "peer": _values, "attrs": _values})
_raw = st.one_of(_events.map(lambda d: json.dumps(d).encode()), st.binary(max_size=60),
                 st.none())
_batches = st.lists(st.tuples(st.sampled_from([*topics.INGEST_TOPICS, "stray.topic"]), _raw),
                    max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches)
def test_fuzz_every_record_is_accepted_or_dead_lettered_with_a_reason(
        batch: list[tuple[str, bytes | None]]) -> None:
    proc = processor(caps=CardinalityCaps(max_routes_per_service=2, max_series_per_service=2))
    recs = [Record(t, 0, i, None, v) for i, (t, v) in enumerate(batch)]
    out = proc.process(recs)  # never raises
    dead = [d for d in out.dead_letters if d[4] != "ingest.cardinality"]
    assert all(d[5] for d in dead)  # a reason
    accepted = len(out.logs) + len(out.metrics) + len(out.changes) + len(out.feedback)
    assert accepted + len(dead) + proc.counts["duplicate"] == len(batch)
    assert proc.counts["error.internal"] == 0  # no input reaches an unexpected error
    for agg in proc.windows.values():
        assert all(w <= NOW_MS for w in agg.watermarks.values())


def test_metric_points_landed_before_a_crash_are_not_written_again() -> None:
    proc = processor()
    values = [orjson.dumps({"ts": NOW_MS - 1000 + i, "service": "api", "name": "cpu",
                            "value": float(i)}) for i in range(4)]
    proc.skip_landed({(topics.METRICS, 0): {1: f"api/cpu@{NOW_MS - 999}"}})
    out = proc.process(records(values, topic=topics.METRICS))
    assert [r[-1] for r in out.metrics] == [0, 2, 3]  # kafka_offset, the last column
    assert proc.counts["replayed_landed"] == 1
