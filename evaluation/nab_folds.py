"""Leave-one-out on NAB: each fold scored at thresholds chosen without it.

The NAB scorer picks the threshold that maximises the score of the files it is given, so a
detector's figure on the files it was tuned on flatters it. Here every fold (one file, or
one category) is held out in turn: the scorer picks its thresholds on all the other files,
then scores the fold at those thresholds. Two figures come out per profile:

- the transfer figure: the held-out folds' raw scores summed, normalised like NAB's
  per-category figure (0 = flag nothing, 100 = every window hit at its start);
- each fold's own normalised figure, worst first (a fold without windows has none; its
  false alarms are reported instead).

The replayed score files are reused (links), so a fold costs two scorer runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.nab_transfer import Scorer, subset


@dataclass(frozen=True)
class Fold:
    """One held-out fold's outcome for one profile."""

    name: str  # the file (category/name.csv) or the category held out
    normalised: float  # NaN when the fold has no window
    raw: float
    windows: int
    hits: int
    false_alarms: int  # flagged rows outside every window
    threshold: float  # chosen on the other files


@dataclass(frozen=True)
class Outcome:
    """Leave-one-out figures of one profile."""

    transfer: float  # the held-out folds together, normalised
    folds: list[Fold]  # worst first (folds without windows last)

    @property
    def worst(self) -> Fold:
        """The fold with the lowest normalised score."""
        return self.folds[0]


def folds_of(files: list[str], by: str) -> list[list[str]]:
    """Files grouped into folds: one per file (``by="file"``) or per category."""
    if by == "file":
        return [[f] for f in files]
    cats: dict[str, list[str]] = {}
    for f in files:
        cats.setdefault(f.split("/", 1)[0], []).append(f)
    return list(cats.values())


def leave_one_out(nab: Path, results: Path, work: Path, score: Scorer,
                  profiles: tuple[str, ...], by: str = "file") -> dict[str, Outcome]:
    """Per profile, every fold scored at the thresholds picked on the other files."""
    files = sorted(str(p.relative_to(nab / "data")) for p in (nab / "data").glob("*/*.csv"))
    groups = folds_of(files, by)
    if len(groups) < 2:
        raise ValueError("leave-one-out needs at least two folds")
    got: dict[str, list[Fold]] = {p: [] for p in profiles}
    costs: dict[str, dict[str, float]] = {}
    for k, held in enumerate(groups):
        at = work / f"{by}{k}"
        rest = [f for f in files if f not in held]
        res, sub = subset(nab, results, rest, at / "train")
        score(res, sub, at / "train.json", None)
        res, sub = subset(nab, results, held, at / "test")
        out = score(res, sub, at / "test.json", at / "train.json")
        name = held[0] if by == "file" else held[0].split("/", 1)[0]
        for p in profiles:
            prof = out["profiles"][p]
            o, cost = prof["overall"], prof["cost"]
            costs[p] = cost
            windows = int(o["windows"])
            null = -cost["fnWeight"] * windows
            perfect = cost["tpWeight"] * windows
            norm = 100 * (o["raw"] - null) / (perfect - null) if windows else math.nan
            got[p].append(Fold(name, norm, float(o["raw"]), windows, int(o["tp_windows"]),
                               int(o["fp_detections"]), float(prof["threshold"])))
    result = {}
    for p, folds in got.items():
        cost = costs[p]
        windows = sum(f.windows for f in folds)
        null, perfect = -cost["fnWeight"] * windows, cost["tpWeight"] * windows
        raw = sum(f.raw for f in folds)
        transfer = 100 * (raw - null) / (perfect - null) if windows else math.nan
        ordered = sorted(folds, key=lambda f: (math.isnan(f.normalised), f.normalised))
        result[p] = Outcome(round(transfer, 2), ordered)
    return result


@dataclass(frozen=True)
class Chosen:
    """One held-out fold scored with the settings and thresholds picked without it."""

    fold: Fold
    setting: str  # the label of the settings picked on the other files


def nested(nab: Path, runs: dict[str, Path], work: Path, score: Scorer,
           profiles: tuple[str, ...], by: str = "file") -> dict[str, tuple[float, list[Chosen]]]:
    """Leave-one-out that also picks the detector's settings without the fold.

    ``runs`` maps a settings label to the replayed results of those settings. For each fold
    and profile, the settings whose best NAB score on the other files is highest are
    picked, and the fold is scored at their thresholds. Returns per profile the held-out
    folds' figure together and every fold (worst first) with the settings it got."""
    files = sorted(str(p.relative_to(nab / "data")) for p in (nab / "data").glob("*/*.csv"))
    groups = folds_of(files, by)
    out: dict[str, list[Chosen]] = {p: [] for p in profiles}
    costs: dict[str, dict[str, float]] = {}
    for k, held in enumerate(groups):
        rest = [f for f in files if f not in held]
        on_rest = {}
        for i, (label, results) in enumerate(runs.items()):
            at = work / f"{by}{k}" / f"s{i}"
            res, sub = subset(nab, results, rest, at / "train")
            on_rest[label] = (score(res, sub, at / "train.json", None), at)
        name = held[0] if by == "file" else held[0].split("/", 1)[0]
        for p in profiles:
            label = max(on_rest, key=lambda s: _value(on_rest[s][0], p))
            at = on_rest[label][1]
            test = at / "test"
            if not (at / "test.json").exists():
                res, sub = subset(nab, runs[label], held, test)
                (at / "test.json").write_text(json.dumps(
                    score(res, sub, at / "test.json", at / "train.json")))
            prof = json.loads((at / "test.json").read_text())["profiles"][p]
            o, cost = prof["overall"], prof["cost"]
            costs[p] = cost
            windows = int(o["windows"])
            null, perfect = -cost["fnWeight"] * windows, cost["tpWeight"] * windows
            norm = 100 * (o["raw"] - null) / (perfect - null) if windows else math.nan
            out[p].append(Chosen(Fold(name, norm, float(o["raw"]), windows, int(o["tp_windows"]),
                                      int(o["fp_detections"]), float(prof["threshold"])), label))
    result = {}
    for p, chosen in out.items():
        windows = sum(c.fold.windows for c in chosen)
        null, perfect = -costs[p]["fnWeight"] * windows, costs[p]["tpWeight"] * windows
        raw = sum(c.fold.raw for c in chosen)
        together = 100 * (raw - null) / (perfect - null) if windows else math.nan
        chosen.sort(key=lambda c: (math.isnan(c.fold.normalised), c.fold.normalised))
        result[p] = (round(together, 2), chosen)
    return result


def _value(scored: dict[str, Any], profile: str) -> float:
    v = scored["profiles"][profile]["overall"]["normalised"]
    return -math.inf if v is None else float(v)
