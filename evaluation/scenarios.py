"""The demo scenario as an evaluation: replay the generator through the worker's own
ingest windows and scorer, in-process and without Kafka, and score the anomalies against
the incidents it injected (`evaluation.incidents`).

Runs are repeated over seeds and start times (the demo's events depend on both): one start
time can flatter a detector.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import orjson

from demo.incidents import Incident
from demo.traffic import DemoConfig, event_time_ms, generate
from detectors.feedback import ChangeLog
from detectors.scoring import WindowScorer
from detectors.settings import DetectionSettings
from evaluation.incidents import evaluate
from schemas.topics import CHANGES, LOGS
from schemas.windows import WindowStats
from streams.ingest import IngestProcessor, Record


def read_labels(path: Path) -> list[dict[str, Any]]:
    """The demo's labels file: one incident per JSON line."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def demo_config(labels: list[dict[str, Any]], seed: int, rate: float,
                duration_s: float | None) -> DemoConfig:
    """The demo run that produced ``labels`` (incidents are evenly spaced from the start)."""
    starts = [int(i["start_ms"]) for i in labels]
    if len(starts) < 2:
        raise ValueError("need at least two labelled incidents to infer the demo's timing")
    spacing = (starts[1] - starts[0]) / 1000
    start_ms = starts[0] - int(spacing * 1000)
    end_ms = max(int(i["end_ms"]) for i in labels)
    duration = duration_s or (end_ms - start_ms) / 1000 + spacing / 2
    return DemoConfig(start_ms=start_ms, seed=seed, duration_s=duration, rate=rate,
                      incident_every_s=spacing)


def replay(cfg: DemoConfig, detect: DetectionSettings,
           progress: Callable[[int], None] = lambda t: None,
           on_incident: Callable[[Incident], None] = lambda i: None) -> list[dict[str, Any]]:
    """Run the demo through ingest windows and the scorer; every anomaly, as dicts."""
    clock = [cfg.start_ms / 1000]
    proc = IngestProcessor(clock=lambda: clock[0])
    changes = ChangeLog()
    scorer = WindowScorer(detect, changes)
    out: list[dict[str, Any]] = []
    batch: list[Record] = []
    # the demo stops mid-window: a window past its end is partial (a fake traffic drop)
    stop_s = (cfg.start_ms + (cfg.duration_s or math.inf) * 1000) / 1000

    def score(windows: list[WindowStats]) -> None:
        whole = [w for w in windows if w.end.timestamp() <= stop_s]
        out.extend(a.model_dump() for a in scorer.score_batch(whole))

    def flush() -> None:
        result = proc.process(batch)
        batch.clear()
        score(result.windows)

    for offset, (topic, event) in enumerate(generate(cfg, on_incident)):
        if topic == CHANGES:
            changes.add(event_time_ms(event), event["service"], event["kind"],
                        event["description"])
        elif topic == LOGS and event.get("peer"):
            changes.add_edge(event["service"], event["peer"]["service"])
        batch.append(Record(topic, 0, offset, event["service"].encode(),
                            orjson.dumps(event)))
        if len(batch) >= 5000:
            clock[0] = event_time_ms(event) / 1000
            flush()
            progress(int(clock[0] * 1000))
    flush()
    clock[0] += 3600.0
    score(proc.flush_idle())
    return out


# The start times of the development set in the README (seeds 0-4 at each).
DEV_STARTS = ("2026-11-20T03:17:00Z", "2026-11-22T21:33:00Z", "2026-11-24T14:05:00Z",
              "2026-11-27T08:48:00Z")


FIGURES = ("anomalies", "false_alarms", "critical_within_60s", "criticals", "detected",
           "incidents")


def parse_seeds(text: str) -> list[int]:
    """``0-4`` or ``1,3,7`` (or both: ``0-2,9``) -> the seeds.

    >>> parse_seeds("0-2,9")
    [0, 1, 2, 9]
    """
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if m is None or int(m[2] or m[1]) < int(m[1]):
            raise ValueError(f"{text!r} is not a list of seeds such as 0-4 or 1,3,7")
        out += range(int(m[1]), int(m[2] or m[1]) + 1)
    return out


def run_scenario(cfg: DemoConfig, detect: DetectionSettings) -> dict[str, Any]:
    """One demo run replayed and scored: the champion's figures (``FIGURES``)."""
    labels: list[dict[str, Any]] = []
    rows = replay(cfg, detect, on_incident=lambda inc: labels.append(inc.label()))
    r = evaluate(rows, labels, (cfg.duration_s or 0) / 3600)["champion"]
    return {"seed": cfg.seed, "start_ms": cfg.start_ms, **{k: r[k] for k in FIGURES[:4]},
            "detected": sum(i["detected"] for i in r["incidents"]),
            "incidents": len(r["incidents"])}


def sweep(configs: Iterable[DemoConfig], detect: DetectionSettings, jobs: int,
          done: Callable[[dict[str, Any]], None] = lambda r: None) -> list[dict[str, Any]]:
    """``run_scenario`` for every config, ``jobs`` at a time; results in config order."""
    todo = list(configs)
    if jobs <= 1:
        out = []
        for cfg in todo:
            out.append(run_scenario(cfg, detect))
            done(out[-1])
        return out
    results: dict[int, dict[str, Any]] = {}
    with ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(run_scenario, cfg, detect): i for i, cfg in enumerate(todo)}
        for f in as_completed(futures):
            results[futures[f]] = f.result()
            done(results[futures[f]])
    return [results[i] for i in range(len(todo))]


def span_hours(rows: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> float:
    """Hours spanned by the anomalies and incidents (at least a minute)."""
    times = [int(r["ts"]) for r in rows] + [int(i["start_ms"]) for i in incidents] + [
        int(i["end_ms"]) for i in incidents]
    return max((max(times) - min(times)) / 3_600_000, 1 / 60) if times else 1.0
