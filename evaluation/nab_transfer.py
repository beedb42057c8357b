"""How well the NAB threshold travels: chosen on some files, applied to others.

The detector is scored on NAB files it has not seen at the threshold chosen on the
development set. ``transfer`` estimates what that costs on the development set itself:
each round shuffles the real-data files (seeded) into two halves, lets the scorer pick its
thresholds on the artificial files plus one half, applies them to the other half, and
compares with that half's own best thresholds. The replayed scores are reused (links), so
it costs only the scorer's runs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

Scorer = Callable[[Path, Path, Path, Path | None], dict[str, Any]]  # results, nab, json, from


def subset(nab: Path, results: Path, files: list[str], into: Path) -> tuple[Path, Path]:
    """A NAB folder and a results folder holding only ``files`` (``category/name.csv``)."""
    for rel in files:
        for base, src in ((into / "nab" / "data", nab / "data"), (into / "res", results)):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).symlink_to((src / rel).resolve())
    (into / "nab" / "labels").mkdir(parents=True)
    for name in ("combined_windows.json", "combined_labels.json"):
        labels = json.loads((nab / "labels" / name).read_text())
        keep = {k: v for k, v in labels.items() if k in files}
        (into / "nab" / "labels" / name).write_text(json.dumps(keep))
    return into / "res", into / "nab"


def transfer(nab: Path, results: Path, work: Path, score: Scorer, profiles: tuple[str, ...],
             rounds: int = 3, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean normalised score per profile of the held-out halves: at their own best
    thresholds (``own``) and at the thresholds chosen on the other files (``transferred``)."""
    files = sorted(str(p.relative_to(nab / "data")) for p in (nab / "data").glob("*/*.csv"))
    real = [f for f in files if not f.startswith("artificial")]
    fixed = [f for f in files if f.startswith("artificial")]
    if len(real) < 2:
        raise ValueError("a transfer needs at least two real-data files")
    rng = random.Random(seed)
    own: list[dict[str, float]] = []
    moved: list[dict[str, float]] = []
    for r in range(rounds):
        shuffled = real[:]
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        for k, (train, test) in enumerate(((shuffled[:half], shuffled[half:]),
                                           (shuffled[half:], shuffled[:half]))):
            at = work / f"round{r}-{k}"
            res, sub = subset(nab, results, fixed + train, at / "train")
            picked = at / "train.json"
            score(res, sub, picked, None)
            res, sub = subset(nab, results, test, at / "test")
            for out, source in ((own, None), (moved, picked)):
                got = score(res, sub, at / "test.json", source)
                out.append({p: float(got["profiles"][p]["overall"]["normalised"])
                            for p in profiles})
    return {name: {p: round(sum(d[p] for d in runs) / len(runs), 2) for p in profiles}
            for name, runs in (("own", own), ("transferred", moved))}
