"""``make bench``: the cost of PII redaction on the ingest stage, as a ratio measured in one
run: the same payloads through the same categorised ingest processor with and without the
redactor of deploy/config/privacy.yaml, alternated (A B A B ...) and timed in CPU seconds of
this process, so that a machine busy with something else slows both alike and time spent
waiting for a core does not count. Prints one JSON line.

The payloads mix what services log: plain request lines (most), lines with timestamps
and ids (digit runs: the numeric screen lets them through to the number rules), login
events with ``user`` fields, and lines holding e-mails, IPs, tokens, keys, phones, cards.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import orjson

from privacy.redact import Redactor
from privacy.settings import load_privacy
from schemas import topics

N_EVENTS = int(os.environ.get("LOGWARDEN_BENCH_PRIVACY_EVENTS", "100000"))
# Events of the end-to-end passes (a real worker, Kafka -> ClickHouse); 0 skips them.
N_E2E = int(os.environ.get("LOGWARDEN_BENCH_PRIVACY_E2E_EVENTS", "1000000"))
ROUNDS = int(os.environ.get("LOGWARDEN_BENCH_PRIVACY_ROUNDS", "3"))
# Rounds of the end-to-end passes (each: one worker without redaction, one with).
E2E_ROUNDS = int(os.environ.get("LOGWARDEN_BENCH_PRIVACY_E2E_ROUNDS", "3"))
SERVICES = [f"svc-{i:02d}" for i in range(20)]
ROUTES = ["/cart", "/pay", "/search", "/users/{id}", "/items/{id}", "/login"]
# Share of each kind of line (the rest: plain request lines).
MIX = {"numeric": 0.15, "login": 0.10, "email": 0.05, "ip": 0.05, "secret": 0.03,
       "phone_card": 0.02}


def message(kind: str, rng: random.Random) -> str:
    """One log message of ``kind``."""
    n = rng.randrange(10_000)
    if kind == "numeric":
        return (f"2026-11-{rng.randrange(1, 29):02d}T10:{rng.randrange(60):02d}:00Z job "
                f"{rng.randrange(10**8)} finished in {rng.randrange(900)} ms (batch {n})")
    if kind == "login":
        return f"login {'ok' if rng.random() < 0.9 else 'failed'} for account {n}"
    if kind == "email":
        return f"sent receipt to user{n}@example.com for order {rng.randrange(10**6)}"
    if kind == "ip":
        return f"connection from 10.{n % 256}.{rng.randrange(256)}.{rng.randrange(256)} closed"
    if kind == "secret":
        return f"retrying with api_key={uuid.uuid4().hex} after 401"
    if kind == "phone_card":
        return (f"sms to +1 415 555 {n:04d} queued" if rng.random() < 0.5 else
                "charge 4111 1111 1111 1111 declined")
    return (f"GET {ROUTES[n % len(ROUTES)]} user={n} status=200 "
            f"took {rng.randrange(1, 900)}ms")


def events(n: int, seed: int = 1, mix: dict[str, float] | None = None) -> list[bytes]:
    """``n`` log events of ``mix`` (default ``MIX``), over the last five minutes."""
    rng = random.Random(seed)
    start = int(time.time() * 1000) - 300_000
    mix = MIX if mix is None else mix
    kinds, weights = [*mix, "plain"], [*mix.values(), 1 - sum(mix.values())]
    out = []
    for i in range(n):
        kind = rng.choices(kinds, weights)[0]
        svc = SERVICES[i % len(SERVICES)]
        e: dict[str, object] = {
            "ts": start + i * 300_000 // n, "service": svc, "level": "INFO",
            "message": message(kind, rng), "host": f"{svc}-{rng.randrange(4)}",
            "event_id": uuid.uuid4().hex}
        if kind == "login":
            e["user"] = {"id": f"user{rng.randrange(5000)}",
                         "ip": f"192.0.2.{rng.randrange(256)}", "action": "login",
                         "outcome": "success"}
        else:
            route = ROUTES[rng.randrange(len(ROUTES))]
            e["http"] = {"method": "GET", "route": route, "status": 200,
                         "duration_ms": round(rng.lognormvariate(3, 0.7), 2)}
        out.append(orjson.dumps(e))
    return out


def stage_seconds(payloads: list[bytes], redactor: Redactor | None) -> float:
    """Seconds the categorised ingest stage takes over ``payloads`` (a fresh processor)."""
    from categorisation.settings import load_categorisation
    from streams.categorise import Categoriser
    from streams.ingest import IngestProcessor, Record
    from streams.settings import Settings

    s = Settings().categorise
    proc = IngestProcessor(categorise=Categoriser(load_categorisation(s), s),
                           redact=redactor.event if redactor else None,
                           redact_raw=redactor.raw if redactor else None)
    recs = [Record(topics.LOGS, 0, i, None, p) for i, p in enumerate(payloads)]
    t0 = time.process_time()
    for i in range(0, len(recs), 5000):
        proc.process(recs[i:i + 5000])
    return time.process_time() - t0


def main() -> None:
    """Run the redaction cost benchmark and print its JSON line."""
    from streams.settings import Settings

    cfg_path = Settings().privacy.config_file
    config = load_privacy(cfg_path)

    def fresh() -> Redactor:  # a new one per round: its caches start cold, as a worker's do
        return Redactor(config, b"bench-key-0123456789abcdef")

    payloads = events(N_EVENTS)
    stage_seconds(events(5000, seed=9), fresh())  # warm the imports
    plain, redacted = [], []
    redactor = fresh()  # the last round's: its matches per rule are reported
    for r in range(ROUNDS):
        print(f"round {r + 1}/{ROUNDS}…", file=sys.stderr)
        plain.append(stage_seconds(payloads, None))
        redactor = fresh()
        redacted.append(stage_seconds(payloads, redactor))
    ratios = [p / q for p, q in zip(plain, redacted, strict=True)]  # throughput ratio
    # The same on lines without personal data (the plain request lines only): the cost of
    # the screens alone.
    clean = events(N_EVENTS // 2, seed=2, mix={})
    clean_ratios = [stage_seconds(clean, None) / stage_seconds(clean, fresh())
                    for _ in range(ROUNDS)]
    lines = sum(1 for p in payloads if any(
        w in p for w in (b"@", b"api_key", b"+1 415", b"4111", b"10.", b'"user"')))
    figures = {
        "bench": "privacy", "events": N_EVENTS, "rounds": ROUNDS,
        "config": str(cfg_path), "lines_with_pii": lines,
        "ingest_per_s_without": round(N_EVENTS / statistics.median(plain)),
        "ingest_per_s_with": round(N_EVENTS / statistics.median(redacted)),
        "throughput_ratio_median": round(statistics.median(ratios), 3),
        "throughput_ratio_worst": round(min(ratios), 3),
        "cost_pct_median": round(100 * (1 - statistics.median(ratios)), 1),
        "cost_pct_worst": round(100 * (1 - min(ratios)), 1),
        "cost_pct_lines_without_pii_median": round(100 * (1 - statistics.median(clean_ratios)),
                                                   1),
        "matches_per_rule": dict(sorted(redactor.counts.items())),
        "compiled_ingest": bool(_compiled()),
    }
    print(f"redaction costs {figures['cost_pct_median']}% of ingest throughput (worst round "
          f"{figures['cost_pct_worst']}%)", file=sys.stderr)
    if N_E2E:
        figures.update(end_to_end(N_E2E))
        print(f"end to end: {figures['e2e_per_s_with']:,} events/s per worker with "
              f"redaction, {figures['e2e_per_s_without']:,} without (cost "
              f"{figures['e2e_cost_pct']}%)", file=sys.stderr)
    print(json.dumps(figures))


def end_to_end(n: int, rounds: int = E2E_ROUNDS) -> dict[str, object]:
    """The bench mix through a real worker (its own Kafka, a fresh consumer group and chDB
    per pass), without and with the redactor, alternated: events/s each (median of the
    rounds) and the throughput ratio. A worker also pays for Kafka, decoding and the
    ClickHouse insert, so redaction's share of its cost is smaller than of the stage's."""
    import tempfile

    from bench.ingest import produce, run_worker_bench
    from devstack.kafka import throwaway_kafka
    from streams.topics import ensure_topics

    rates: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}  # main thread µs an event
    with tempfile.TemporaryDirectory(prefix="logwarden-bench-privacy-") as d:
        tmp = Path(d)
        with throwaway_kafka(os.environ.get("LOGWARDEN_KAFKA_BOOTSTRAP"), tmp) as bootstrap:
            ensure_topics(bootstrap, dict.fromkeys(topics.INGEST_TOPICS, 4))
            print(f"producing {n:,} events for the end-to-end passes…", file=sys.stderr)
            produce(bootstrap, events(n, seed=3))
            for r in range(rounds):
                for on in (False, True):
                    print(f"worker pass {r + 1}/{rounds}, redaction "
                          f"{'on' if on else 'off'}…", file=sys.stderr)
                    run = tmp / f"pass-{r}-{int(on)}"
                    run.mkdir()
                    result = run_worker_bench(bootstrap, run, n, {
                        "LOGWARDEN_PRIVACY_ENABLED": "true" if on else "false"})
                    rates[on].append(float(result["events_per_s"]))
                    cpu[on].append(float(result["worker_main_thread_cpu_us_per_event"]))
    without, with_ = statistics.median(rates[False]), statistics.median(rates[True])
    cpu_without, cpu_with = statistics.median(cpu[False]), statistics.median(cpu[True])
    return {"e2e_events": n, "e2e_rounds": rounds, "e2e_per_s_without": round(without),
            "e2e_per_s_with": round(with_),
            "e2e_cost_pct": round(100 * (1 - with_ / without), 1),
            "e2e_passes_per_s": {"without": rates[False], "with": rates[True]},
            # the ingest loop's CPU per event: what a busy machine disturbs least
            "e2e_main_thread_us_without": round(cpu_without, 2),
            "e2e_main_thread_us_with": round(cpu_with, 2),
            "e2e_cost_pct_cpu": round(100 * (1 - cpu_without / cpu_with), 1)}


def _compiled() -> list[str]:
    from schemas.native import compiled

    return [m for m in compiled() if Path(m).stem == "ingest"]


if __name__ == "__main__":
    main()
