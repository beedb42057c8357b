"""The ingest stage as a pure object: the fast validator agrees with pydantic, and a batch of
records turns into the right rows, dead letters, duplicates and windows."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import topics
from schemas.fastpath import fast_log, normalise_log
from schemas.logs import LogEvent
from sinks.clickhouse.rows import LOGS_COLUMNS
from streams.ingest import IngestProcessor, Record, SeenIds

NOW_MS = int(time.time() * 1000)
T0 = NOW_MS - 600_000


def _pick(rng: random.Random, *options: Any) -> Any:
    """The first (valid) option most of the time, any of them otherwise."""
    return options[0 if rng.random() < 0.8 else rng.randrange(len(options))]


def random_event(rng: random.Random) -> dict[str, Any]:
    """A log event that is valid most of the time and wrong in one of many ways otherwise."""
    d: dict[str, Any] = {
        "ts": _pick(rng, T0, T0 + 1, "2026-01-05T00:00:00Z", "2026-01-05T00:00:00.5+02:00",
                    NOW_MS + 2 * 86_400_000, 5, "yesterday", 1.5e12, True, None, [T0]),
        "service": _pick(rng, "api", "a.b-c_9", "-bad", "x" * 129, "", 7, None, "ok svc", [1]),
        "level": _pick(rng, "INFO", "info", "Warning", "err", " error ", "LOUD", 3, None,
                       {"a": 1}),
        "message": _pick(rng, "hello", "", "x" * 70_000, 1, None, "é ünïcode"),
    }
    for key in ("host", "logger", "env", "trace_id", "span_id", "event_id"):
        if rng.random() < 0.3:
            d[key] = _pick(rng, "h1", "y" * 257, None, 4, "")
    if rng.random() < 0.5:
        d["http"] = _pick(rng, {"method": "GET", "route": "/a", "status": 200,
                                "duration_ms": 12.5},
                          {"status": 1000}, {"duration_ms": -1}, {"status": "200"},
                          {"route": "r" * 1025}, {"extra": 1, "status": 404}, "GET /",
                          {"duration_ms": 90_000_000}, {"status": True}, None)
    if rng.random() < 0.3:
        d["peer"] = _pick(rng, {"service": "db", "ok": False, "duration_ms": 3},
                          {"service": "bad name"}, {"ok": "yes", "service": "db"}, {},
                          {"service": "db", "operation": "op" * 600}, {"service": ["db"]})
    if rng.random() < 0.3:
        d["user"] = _pick(rng, {"id": "u1", "outcome": "denied"}, {"ip": 7},
                          {"action": "z" * 300}, {"id": None}, [])
    if rng.random() < 0.3:
        d["attrs"] = _pick(rng, {"k": [1, 2]}, {}, None, "text", [1])
    if rng.random() < 0.2:
        d["unknown_field"] = _pick(rng, 1, "v", {"nested": True})
    return d


def _without_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _without_none(x) for k, x in v.items() if x is not None}
    return v


def test_fast_path_accepts_only_what_pydantic_accepts_and_normalises_alike() -> None:
    rng = random.Random(7)
    fast_hits = slow_only = 0
    for _ in range(5000):
        d = random_event(rng)
        fast = fast_log(dict(d), NOW_MS)
        try:
            slow = normalise_log(LogEvent.model_validate(d))
        except ValidationError:
            assert fast is None, d
            continue
        if fast is None:
            slow_only += 1
        else:
            fast_hits += 1
            assert _without_none(fast) == slow, d
    assert fast_hits > 100 and slow_only > 100  # both paths were exercised


def test_seen_ids_remember_recent_ids_within_capacity() -> None:
    seen = SeenIds(capacity=1000)
    assert not seen.seen("a")
    assert seen.seen("a")
    for i in range(5000):
        seen.seen(str(i))
    assert seen.seen("4999") and seen.seen("4500")  # recent ones are still known
    assert not seen.seen("a")  # long forgotten: memory stays bounded
    assert len(seen) <= 1000


def _log(i: int, **over: Any) -> bytes:
    e = {"ts": T0 + i * 100, "service": "api", "level": "ERROR" if i % 5 == 0 else "INFO",
         "message": f"GET /items/{i} took {i % 7}ms", "event_id": f"e{i}",
         "http": {"method": "GET", "route": "/items/{id}", "status": 200,
                  "duration_ms": float(1 + i % 50)}}
    e.update(over)
    return orjson.dumps(e)


def _records(values: list[bytes | None], partition: int = 0) -> list[Record]:
    return [Record(topics.LOGS, partition, i, b"api", v) for i, v in enumerate(values)]


def test_a_batch_becomes_rows_dead_letters_and_counts() -> None:
    proc = IngestProcessor(grace_s=1)
    values: list[bytes | None] = [_log(i) for i in range(200)]
    values += [_log(3), b"{not json", b"\xff\xfe garbage", b"[1, 2]", None,
               _log(9, level=5), _log(999, event_id=None)]
    out = proc.process(_records(values))
    assert len(out.logs) == 201  # 200 + the one without an id; the duplicate of e3 dropped
    assert proc.counts["duplicate"] == 1
    stages = [d[4] for d in out.dead_letters]
    assert stages == ["ingest.logs"] * 3 + ["ingest", "ingest.logs"]
    assert {d[3] for d in out.dead_letters} == {201, 202, 203, 204, 205}  # source offsets
    assert out.dead_letters[1][6] == b"\xff\xfe garbage"  # the original bytes, kept
    row = dict(zip(LOGS_COLUMNS, out.logs[0], strict=True))
    assert row["service"] == "api" and row["http_route"] == "/items/{id}"
    assert row["ts"] == T0 / 1000 and row["kafka_offset"] == 0
    no_id = dict(zip(LOGS_COLUMNS, out.logs[-1], strict=True))
    assert no_id["event_id"] == f"{topics.LOGS}:0:206"  # where it sits in Kafka


def test_windows_count_every_event_once_per_series() -> None:
    proc = IngestProcessor(grace_s=1)
    first = proc.process(_records([_log(i) for i in range(300)]))  # 30 s of events
    last = proc.process(_records([_log(10_000)]))  # moves the watermark past them all
    base = [w for w in first.windows + last.windows
            if w.window_s == 10 and w.start.timestamp() * 1000 < T0 + 30_000]
    by_scope: dict[str, int] = {}
    for w in base:
        by_scope[w.scope] = by_scope.get(w.scope, 0) + w.count
    assert by_scope == {"service": 300, "route": 300}
    errors = sum(w.error_count for w in base if w.scope == "service")
    assert errors == 60


def test_categoriser_sees_every_accepted_line() -> None:
    calls: list[tuple[Any, ...]] = []

    def categorise(*args: Any) -> tuple[str, str, str]:
        calls.append(args)
        return "t1", "timeout", "P2"

    proc = IngestProcessor(categorise=categorise)
    out = proc.process(_records([_log(1), _log(1), b"{}",
                                 _log(2, peer={"service": "db", "ok": False})]))
    assert [c[0] for c in calls] == ["api", "api"]
    assert calls[1][5] is False  # peer ok reaches triage
    row = dict(zip(LOGS_COLUMNS, out.logs[0], strict=True))
    assert (row["template_id"], row["category"], row["severity"]) == ("t1", "timeout", "P2")
    assert (row["peer_service"], row["peer_ok"], row["user_id"]) == ("", None, "")
    row = dict(zip(LOGS_COLUMNS, out.logs[1], strict=True))
    assert (row["peer_service"], row["peer_ok"], row["peer_duration_ms"]) == ("db", 0, None)
    assert (row["http_status"], row["http_duration_ms"]) == (200, 3.0)


@pytest.mark.parametrize("topic", [topics.METRICS, topics.CHANGES, topics.FEEDBACK])
def test_other_contract_topics_dead_letter_garbage(topic: str) -> None:
    proc = IngestProcessor()
    out = proc.process([Record(topic, 0, 0, None, b"\x00\x01")])
    assert len(out.dead_letters) == 1 and out.dead_letters[0][1] == topic
