"""Property-based fuzzing of every decoder of the ingest contract: whatever the bytes, a
decoder returns a valid model or raises ``InvalidEvent`` with a reason, nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas.base import decode
from schemas.changes import Change, Feedback
from schemas.common import parse_ts
from schemas.errors import InvalidEvent
from schemas.fastpath import fast_log, normalise_log
from schemas.logs import LogEvent
from schemas.metrics import MetricPoint

NOW_MS = 1_780_000_000_000
FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Timestamps of every shape a producer gets wrong: huge, tiny, negative, non-finite floats
# (they reach parse_ts from Python callers; JSON has no NaN), strings, the wrong types.
timestamps = st.one_of(
    st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=NOW_MS - 10**10, max_value=NOW_MS + 10**9),
    st.sampled_from([1e300, -1e300, 10**30, -(10**30), 2**63, 0, "2026-01-05T00:00:00Z",
                     "yesterday", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", ""]),
    st.text(max_size=40), st.booleans(), st.none(), st.lists(st.integers(), max_size=2))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=30), st.text(max_size=300, alphabet="x"))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _objects(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of ``fields`` (often valid-looking values) and stray extras."""
    return st.fixed_dictionaries({}, optional={**fields, "extra": json_values,
                                               "attrs": json_values})


log_events = _objects({
    "ts": timestamps, "service": st.one_of(st.sampled_from(["api", "a.b-c_9", "-x", ""]),
                                           scalars),
    "level": st.one_of(st.sampled_from(["INFO", "warning", "err", "LOUD"]), scalars),
    "message": scalars, "event_id": scalars, "host": scalars,
    "http": st.one_of(json_values, _objects({
        "method": scalars, "route": scalars, "status": scalars, "duration_ms": scalars})),
    "peer": st.one_of(json_values, _objects({"service": scalars, "ok": scalars,
                                             "duration_ms": scalars})),
    "user": st.one_of(json_values, _objects({"id": scalars, "outcome": scalars})),
})
metric_points = _objects({
    "ts": timestamps, "service": st.sampled_from(["api", "bad name"]), "value": scalars,
    "name": st.one_of(st.sampled_from(["cpu", "http.requests_total", "9bad"]), scalars),
    "kind": st.sampled_from(["gauge", "counter", "histogram"]),
    "labels": st.one_of(json_values, st.dictionaries(st.text(max_size=5),
                                                     st.text(max_size=5), max_size=40)),
})
changes = _objects({"ts": timestamps, "service": st.sampled_from(["api", "x y"]),
                    "kind": st.sampled_from(["deploy", "Bad", ""]), "description": scalars})
feedbacks = _objects({"ts": timestamps, "target_kind": st.sampled_from(["alert", "nope"]),
                      "target_id": scalars, "verdict": st.sampled_from(["true", "False"]),
                      "category": scalars})
raw_bytes = st.one_of(st.binary(max_size=200), st.just(b"{"), st.just(b"[]"),
                      st.just(b"null"), st.just(b"1e400"), st.just(b'{"ts": 1e300}'))

DECODERS: list[tuple[type[BaseModel], st.SearchStrategy[dict[str, Any]]]] = [
    (LogEvent, log_events), (MetricPoint, metric_points), (Change, changes),
    (Feedback, feedbacks)]


def _decoded_or_refused(model: type[BaseModel], raw: bytes) -> None:
    try:
        m = decode(model, raw, stage="fuzz")
    except InvalidEvent as exc:
        assert exc.reason and exc.stage == "fuzz"
    else:
        assert isinstance(m, model)
        m.model_dump_json()  # what was accepted serialises back


@pytest.mark.parametrize(("model", "objects"), DECODERS, ids=lambda v: getattr(v, "__name__", ""))
def test_decoders_accept_or_refuse_objects_with_a_reason(
        model: type[BaseModel], objects: st.SearchStrategy[dict[str, Any]]) -> None:
    @FUZZ
    @given(objects)
    def check(obj: dict[str, Any]) -> None:
        # stdlib json: it writes ints past 64 bits (and NaN) that orjson would not
        _decoded_or_refused(model, json.dumps(obj).encode())

    check()


@pytest.mark.parametrize("model", [m for m, _ in DECODERS], ids=lambda m: m.__name__)
def test_decoders_accept_or_refuse_any_bytes(model: type[BaseModel]) -> None:
    @FUZZ
    @given(raw_bytes)
    def check(raw: bytes) -> None:
        _decoded_or_refused(model, raw)

    check()


@FUZZ
@given(timestamps)
def test_parse_ts_returns_a_sane_time_or_raises_value_error(value: Any) -> None:
    try:
        ts = parse_ts(value)
    except ValueError as exc:
        assert str(exc)
    else:
        assert ts.tzinfo is not None and ts.year >= 2000


@FUZZ
@given(log_events)
def test_fast_path_never_raises_and_never_accepts_what_pydantic_refuses(
        obj: dict[str, Any]) -> None:
    fast = fast_log(dict(obj), NOW_MS)
    if fast is None:
        return
    slow = normalise_log(LogEvent.model_validate(obj))  # raises if the fast path was wrong
    assert fast["ts"] == slow["ts"] and fast["level"] == slow["level"]


def test_the_1e300_timestamp_is_refused_with_a_reason() -> None:
    """Regression (#11): ``"ts": 1e300`` raised OverflowError out of parse_ts."""
    for raw in (b'{"ts": 1e300, "service": "api", "level": "INFO", "message": "m"}',
                b'{"ts": 100000000000000000000000000000, "service": "api", "level": "INFO",'
                b' "message": "m"}'):
        with pytest.raises(InvalidEvent, match=r"ts: .*out of range"):
            decode(LogEvent, raw)
        with pytest.raises(InvalidEvent, match="out of range"):
            decode(MetricPoint, raw.replace(b'"level"', b'"name": "cpu", "value": 1, "x"'))
