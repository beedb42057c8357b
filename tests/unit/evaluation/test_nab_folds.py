"""Leave-one-out on NAB: thresholds picked without the fold, the fold scored at them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from nab_tree import nab_tree  # type: ignore[import-not-found]

from evaluation.nab_folds import folds_of, leave_one_out, nested

FILES = ["artificialNoAnomaly/a.csv", "realX/r1.csv", "realX/r2.csv", "realY/r3.csv"]
WINDOWS = {"artificialNoAnomaly/a.csv": 0, "realX/r1.csv": 1, "realX/r2.csv": 2,
           "realY/r3.csv": 1}
COST = {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}


@pytest.fixture
def nab(tmp_path: Path) -> tuple[Path, Path]:
    return nab_tree(tmp_path, FILES)


def fake_scorer(calls: list[tuple[list[str], list[str] | None]]) -> Any:
    """Picks 'the threshold' = the files it saw; a held-out file hits every window but
    r2.csv, which misses one of its two."""

    def score(res: Path, sub: Path, out: Path, source: Path | None) -> dict[str, Any]:
        files = sorted(str(p.relative_to(res)) for p in res.rglob("*.csv"))
        picked = None if source is None else json.loads(source.read_text())["picked_on"]
        calls.append((files, picked))
        if source is None:
            out.write_text(json.dumps({"picked_on": files}))
        windows = sum(WINDOWS[f] for f in files)
        hits = windows - (1 if "realX/r2.csv" in files else 0)
        raw = hits * 1.0 - (windows - hits) * 1.0
        overall = {"windows": windows, "raw": raw, "tp_windows": hits, "fp_detections": 2}
        return {"profiles": {"standard": {"overall": overall, "cost": COST,
                                          "threshold": float(len(files))}}}

    return score


def test_every_file_is_held_out_once_at_thresholds_picked_without_it(
        nab: tuple[Path, Path], tmp_path: Path) -> None:
    calls: list[tuple[list[str], list[str] | None]] = []
    got = leave_one_out(*nab, tmp_path / "w", fake_scorer(calls), ("standard",))["standard"]
    held = [(files, picked) for files, picked in calls if picked is not None]
    assert sorted(f[0] for f, _ in held) == FILES
    assert all(not set(files) & set(picked) and len(picked) == 3 for files, picked in held)
    assert got.worst.name == "realX/r2.csv" and got.worst.normalised == 50.0
    assert [f.name for f in got.folds][-1] == "artificialNoAnomaly/a.csv"  # no window: last
    assert math.isnan(got.folds[-1].normalised) and got.folds[-1].false_alarms == 2
    # together: raw 1 + 0 + 1 over 4 windows, null -4, perfect 4
    assert got.transfer == pytest.approx(100 * (2 + 4) / 8)


def test_category_folds_hold_out_whole_categories(nab: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    assert folds_of(FILES, "category") == [FILES[:1], FILES[1:3], FILES[3:]]
    calls: list[tuple[list[str], list[str] | None]] = []
    got = leave_one_out(*nab, tmp_path / "w", fake_scorer(calls), ("standard",), "category")
    assert [f.name for f in got["standard"].folds] == ["realX", "realY", "artificialNoAnomaly"]
    assert got["standard"].worst.threshold == 2.0  # picked on the two files left


def test_nested_picks_the_settings_on_the_other_files(nab: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    """'bad' looks best whenever r3.csv is among the files it is judged on, 'good' otherwise:
    every fold but r3.csv gets 'bad', r3.csv held out gets 'good'."""
    root, results = nab
    runs = {"good": results, "bad": tmp_path / "bad"}
    for rel in FILES:
        (runs["bad"] / rel).parent.mkdir(parents=True, exist_ok=True)
        (runs["bad"] / rel).write_text("timestamp,value\n")

    def score(res: Path, sub: Path, out: Path, source: Path | None) -> dict[str, Any]:
        files = sorted(str(p.relative_to(res)) for p in res.rglob("*.csv"))
        bad = any("bad" in (res / f).resolve().parts for f in files)
        value = (30.0 if "realY/r3.csv" in files else 10.0) if bad else 20.0
        windows = sum(WINDOWS[f] for f in files)
        hits = 0 if bad else windows
        got = {"profiles": {"standard": {
            "overall": {"windows": windows, "raw": float(2 * hits - windows),
                        "tp_windows": hits, "fp_detections": 0, "normalised": value},
            "cost": COST, "threshold": 0.5}}}
        out.write_text(json.dumps(got))
        return got

    together, chosen = nested(root, runs, tmp_path / "w", score, ("standard",))["standard"]
    assert {c.fold.name: c.setting for c in chosen} == {
        "artificialNoAnomaly/a.csv": "bad", "realX/r1.csv": "bad", "realX/r2.csv": "bad",
        "realY/r3.csv": "good"}
    assert together == pytest.approx(100 * (-1 - 2 + 1 + 4) / 8)
    assert [c.fold.normalised for c in chosen[:3]] == [0.0, 0.0, 100.0]  # worst first
    assert math.isnan(chosen[-1].fold.normalised)
