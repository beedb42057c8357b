"""The NAB threshold-transfer estimate: the folders it builds and what it averages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nab_tree import nab_tree  # type: ignore[import-not-found]

from evaluation.nab_transfer import subset, transfer

FILES = ["artificialNoAnomaly/a.csv", "realX/r1.csv", "realX/r2.csv", "realY/r3.csv",
         "realY/r4.csv"]


@pytest.fixture
def nab(tmp_path: Path) -> tuple[Path, Path]:
    return nab_tree(tmp_path, FILES)


def test_a_subset_holds_only_its_files_and_their_labels(nab: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    res, sub = subset(*nab, ["realX/r1.csv", "realY/r3.csv"], tmp_path / "s")
    assert sorted(str(p.relative_to(res)) for p in res.rglob("*.csv")) == [
        "realX/r1.csv", "realY/r3.csv"]
    labels = json.loads((sub / "labels" / "combined_windows.json").read_text())
    assert set(labels) == {"realX/r1.csv", "realY/r3.csv"}
    assert (sub / "data" / "realX" / "r1.csv").read_text() == "timestamp,value\n"


def test_thresholds_are_picked_on_the_other_files_and_applied_to_the_held_out(
        nab: tuple[Path, Path], tmp_path: Path) -> None:
    calls: list[tuple[list[str], bool]] = []

    def score(res: Path, sub: Path, out: Path, source: Path | None) -> dict[str, Any]:
        files = sorted(str(p.relative_to(res)) for p in res.rglob("*.csv"))
        calls.append((files, source is not None))
        if source is None:
            out.write_text(json.dumps({"picked_on": files}))
            value = 80.0
        else:  # a held-out half scored at thresholds picked elsewhere
            picked = json.loads(source.read_text())["picked_on"]
            assert not set(picked) & set(files) and "artificialNoAnomaly/a.csv" in picked
            value = 60.0
        return {"profiles": {"standard": {"overall": {"normalised": value}}}}

    got = transfer(*nab, tmp_path / "w", score, ("standard",), rounds=2)
    assert got == {"own": {"standard": 80.0}, "transferred": {"standard": 60.0}}
    held_out = [files for files, transferred in calls if transferred]
    assert len(held_out) == 4 and all(len(f) == 2 for f in held_out)  # 2 rounds x 2 halves
    assert all("artificialNoAnomaly/a.csv" not in f for f in held_out)
