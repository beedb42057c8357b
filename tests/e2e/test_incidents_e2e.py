"""End to end: a failing dependency produced to Kafka becomes one incident whose evidence
pack ranks the dependency first, served by the API and `logwarden incidents list`."""

from __future__ import annotations

import json
import random
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, start_worker  # type: ignore[import-not-found]

from schemas import topics
from sdk import Publisher

pytestmark = pytest.mark.e2e
SECONDS, BROKEN_FROM = 420, 300  # the dependency breaks 300 s into a 7-minute timeline


def timeline(shop: str, stock: str, start_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """shop calls stock for every request; from BROKEN_FROM stock throws a new exception
    on half of them and shop answers those with 500."""
    rng, out = random.Random(7), []
    for k in range(SECONDS * 4):
        ts = start_ms + k * 250
        broken = k >= BROKEN_FROM * 4 and rng.random() < 0.5
        lat = 8 + rng.random() * 4
        out.append((stock, {"ts": ts, "service": stock, "level": "ERROR" if broken else "INFO",
                            "logger": "StockRepo#88" if broken else "StockRepo#40",
                            "message": "OptimisticLockException on item 42" if broken
                            else "reserved item 42"}))
        out.append((stock, {"ts": ts + 1, "service": stock, "level": "INFO",
                            "message": f"HTTP POST /reserve -> {500 if broken else 200}",
                            "http": {"method": "POST", "route": "/reserve",
                                     "status": 500 if broken else 200, "duration_ms": lat}}))
        out.append((shop, {"ts": ts + 2, "service": shop, "level": "INFO",
                           "message": "Outbound POST /reserve",
                           "peer": {"service": stock, "operation": "POST /reserve",
                                    "duration_ms": lat + 1, "ok": not broken}}))
        out.append((shop, {"ts": ts + 3, "service": shop,
                           "level": "ERROR" if broken else "INFO",
                           "message": f"HTTP POST /checkout -> {500 if broken else 200}",
                           "http": {"method": "POST", "route": "/checkout",
                                    "status": 500 if broken else 200,
                                    "duration_ms": lat + 5}}))
    return out


def test_a_broken_dependency_is_one_incident_with_the_dependency_ranked_first(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    worker = start_worker(kafka_bootstrap, tmp_path / "worker", f"e2e-{uuid.uuid4().hex[:8]}",
                          LOGWARDEN_STREAM_MAX_FUTURE_S="900",
                          LOGWARDEN_INCIDENTS_ENABLED="true")
    try:
        start_ms = (int(time.time() * 1000) + 60_000) // 10_000 * 10_000
        tag = uuid.uuid4().hex[:6]
        shop, stock = f"e2e-shop-{tag}", f"e2e-stock-{tag}"
        pubs = {s: Publisher(kafka_bootstrap, service=s) for s in (shop, stock)}
        for service, event in timeline(shop, stock, start_ms):
            pubs[service].publish(topics.LOGS, event, key=service)
        for p in pubs.values():
            p.close(30)

        def mine() -> list[dict[str, Any]]:
            items = json.loads(worker.get("/api/incidents?since=1h"))["items"]
            return [i for i in items if {shop, stock} & set(i["services"])]

        worker.wait_for(lambda: any(i["root_cause"] for i in mine()), timeout=300,
                        what="an incident with its evidence pack")
        found = mine()
        assert len(found) == 1, found
        inc = found[0]
        assert inc["root_cause"][0] == stock
        assert inc["ts"] >= start_ms + (BROKEN_FROM - 10) * 1000
        assert inc["evidence_wall_ms"] - inc["opened_wall_ms"] <= 60_000
        top = inc["suspects"][0]["evidence"]
        # the new exception's template and the 500s it causes are the evidence
        assert any(line.startswith("ERROR log") and "expected" in line for line in top), top
        assert any("HTTP 500 on /reserve" in line for line in top), top

        out = subprocess.run([str(BIN), "incidents", "list", "--since", "1h", "--format",
                              "jsonl", "--api", worker.api], env=worker.env, timeout=120,
                             capture_output=True, check=True, text=True).stdout
        lines = [json.loads(x) for x in out.splitlines()]
        row = next(r for r in lines if r["id"] == inc["id"])
        assert row["root_cause"][0] == stock and row["ts"] == inc["ts"]
        assert set(row) >= {"id", "ts", "severity", "status", "services", "root_cause",
                            "suspect_changes", "alerts"}
    finally:
        worker.stop()
