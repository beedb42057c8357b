"""NAB offline: replay a NAB file through a per-series detector, run NAB's scorer.

Each score comes from the past only (the detector sees one row at a time), so the replay
is what the detector would have said live.
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from detectors.artime import ARTimeConfig, ARTimeDetector
from detectors.series import SeriesDetector
from schemas.errors import LogwardenError


class ScorerFailed(LogwardenError):
    """NAB's scorer exited with an error."""


def parse_ts(text: str) -> float:
    """NAB timestamp ``YYYY-MM-DD HH:MM:SS`` (no zone, taken as UTC) -> epoch seconds."""
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()


ARTIME = ARTimeConfig()
# the settings --knob-study tries: every (margin, capacity) pair
KNOB_MARGINS = (0.25, 0.5, 0.75, 1.0)
KNOB_CAPACITIES = (24, 32, 40)


class Detector(StrEnum):
    """The per-series detectors a replay can run."""

    artime = "artime"
    series = "series"


def nab_probation(rows: int) -> int:
    """NAB's probationary period: 15 % of a file, at most 750 rows. NAB hands it to every
    detector; ARTime learns that long before alarming (never under 64 points)."""
    return max(64, min(math.floor(0.15 * rows), 750))


def replay(rows: list[tuple[str, str]], detector: Detector,
           artime: ARTimeConfig = ARTIME) -> tuple[list[float], int]:
    """Anomaly score per (timestamp, value) row, in file order, each from the past only;
    and the detector's state size in bytes at the end."""
    update: Callable[[float, float], float]
    if detector is Detector.artime:
        art = ARTimeDetector(replace(artime, probation=nab_probation(len(rows))))
        update, state = art.update, art.to_bytes
    else:
        ser = SeriesDetector()
        update, state = (lambda ts, x: ser.update(ts, x).score), ser.to_bytes
    out = []
    for ts, value in rows:
        try:
            x = float(value)
        except ValueError:
            x = float("nan")  # an unreadable value is a missing point
        out.append(update(parse_ts(ts), x))
    return out, len(state())


def replay_scores(rows: Iterable[tuple[str, str]],
                  detector: Detector = Detector.series) -> list[float]:
    """Anomaly score per (timestamp, value) row, in file order, each from the past only."""
    return replay(list(rows), detector)[0]


def replay_file(src: Path, dst: Path, detector: Detector = Detector.series,
                artime: ARTimeConfig = ARTIME) -> tuple[int, int]:
    """Replay one NAB CSV through a detector into ``dst``; (rows, final state bytes)."""
    with src.open(newline="") as f:
        rows = [(r["timestamp"], r["value"]) for r in csv.DictReader(f)]
    scores, size = replay(rows, detector, artime)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score"])
        for (ts, value), s in zip(rows, scores, strict=True):
            w.writerow([ts, value, f"{s:.12g}"])
    return len(rows), size


def published_table(readme: Path) -> dict[str, tuple[float, float, float]]:
    """Reference scores from the dataset README: detector -> (standard, low FP, low FN)."""
    pat = re.compile(r"^\|\s*([^|]+?)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|$")
    table = {}
    for line in readme.read_text().splitlines() if readme.exists() else []:
        m = pat.match(line.strip())
        if m:
            table[m.group(1)] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
    return table


def run_scorer(tools: Path, results: Path, nab: Path, json_out: Path,
               thresholds_from: Path | None) -> dict[str, Any]:
    """Run the NAB scorer on ``results``; returns its JSON (per profile, threshold...)."""
    cmd = [sys.executable, str(tools / "nab_score.py"), str(results), "--nab", str(nab),
           "--json", str(json_out), "--quiet"]
    if thresholds_from is not None:
        cmd += ["--thresholds-from", str(thresholds_from)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ScorerFailed(f"nab scorer failed: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(json_out.read_text())
    return result
