"""``make bench``: the cost of the latency bands on the evidence pack's query, as a ratio
measured in one run. One evidence pack reads ``pattern_counts`` over its window and a
6-hour baseline; the bench stores 6 hours of a 20-service fleet's log rows in embedded
ClickHouse (every request an access line and an outbound call with their latencies, and an
application line), then times the query with and without the ``L:``/``S:`` rows,
alternated (A B A B ...), wall time. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sinks.clickhouse.client import connect
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.queries.incidents import pattern_counts
from sinks.clickhouse.settings import ClickHouseSettings

PER_MINUTE = int(os.environ.get("LOGWARDEN_BENCH_EVIDENCE_PER_MINUTE", "1000"))  # requests
ROUNDS = int(os.environ.get("LOGWARDEN_BENCH_EVIDENCE_ROUNDS", "5"))
MINUTES = 6 * 60
SERVICES = [f"svc-{i:02d}" for i in range(20)]
COLS = ["ts", "service", "level", "message", "logger", "http_route", "http_status",
        "http_duration_ms", "peer_service", "peer_operation", "peer_ok", "peer_duration_ms",
        "event_id"]


def rows(start_ms: int, minute: int, rng: random.Random) -> list[list[Any]]:
    """One minute of the fleet: per request an access line, a call and a log line."""
    out: list[list[Any]] = []
    for k in range(PER_MINUTE):
        t = start_ms + minute * 60_000 + k * 60_000 // PER_MINUTE
        ts = datetime.fromtimestamp(t / 1000, UTC)
        a, b = rng.sample(SERVICES, 2)
        call = rng.lognormvariate(2.5, 0.6)
        out += [[ts, a, "INFO", "GET /x", "", "/x", 200, call + 3, "", "", None, None, f"h{t}"],
                [ts, a, "INFO", "call", "", "", 0, None, b, "GET /y", 1, call, f"p{t}"],
                [ts, b, "INFO", "served", f"{b}#12", "", 0, None, "", "", None, None, f"l{t}"]]
    return out


def run() -> dict[str, Any]:
    """Store the fleet's 6 hours, time both queries; the ratio of their medians."""
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        store = connect(ClickHouseSettings(), tmp)
        db = f"bench_{uuid.uuid4().hex[:8]}"
        migrate(store, ClickHouseSettings(database=db))
        start = (int(time.time() * 1000) - MINUTES * 60_000) // 60_000 * 60_000
        for m in range(0, MINUTES, 30):
            batch = [r for mm in range(m, min(m + 30, MINUTES)) for r in rows(start, mm, rng)]
            store.insert(f"{db}.logs", batch, column_names=COLS)
        end = start + MINUTES * 60_000
        times: dict[bool, list[float]] = {False: [], True: []}
        got: dict[bool, int] = {}
        for _ in range(ROUNDS):
            for latency in (False, True):
                t0 = time.perf_counter()
                got[latency] = len(pattern_counts(store, db, start, end, latency=latency))
                times[latency].append(time.perf_counter() - t0)
        store.close()
    plain, banded = (statistics.median(times[k]) for k in (False, True))
    return {"bench": "evidence_query", "log_rows": MINUTES * PER_MINUTE * 3,
            "rows_without_bands": got[False], "rows_with_bands": got[True],
            "seconds_without_bands": round(plain, 3), "seconds_with_bands": round(banded, 3),
            "bands_cost": round(banded / plain - 1, 3)}


if __name__ == "__main__":
    print(json.dumps(run()))
