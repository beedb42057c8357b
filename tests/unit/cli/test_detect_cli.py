"""``logwarden detect replay`` keeps every row in place and scores from the past only."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from typer.testing import CliRunner

from cli.main import cli
from evaluation.nab import Detector, nab_probation, parse_ts, published_table, replay_scores


def write_nab(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        w.writerows(rows)


def day_rows(n: int = 1500, spike_at: int = 1200) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        ts = f"2014-04-{1 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00"
        v = 10 + 3 * math.sin(2 * math.pi * i / 288) + (i * 7919 % 11) / 11
        rows.append((ts, f"{v + (25 if i == spike_at else 0):.3f}"))
    return rows


def test_replay_writes_every_row_in_order(tmp_path: Path) -> None:
    rows = day_rows()
    rows.insert(700, rows[650])  # a duplicate, out-of-order timestamp
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_nab(src, rows)
    res = CliRunner().invoke(cli, ["detect", "replay", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    with out.open() as f:
        got = list(csv.DictReader(f))
    assert [(r["timestamp"], r["value"]) for r in got] == rows
    scores = [float(r["anomaly_score"]) for r in got]
    assert max(range(len(scores)), key=scores.__getitem__) == 1201  # the spike, shifted by 1


def test_scores_use_only_the_past() -> None:
    rows = day_rows(900)
    full = replay_scores(rows)
    assert replay_scores(rows[:600]) == full[:600]  # later rows change nothing earlier


def test_parse_ts_is_utc_epoch() -> None:
    assert parse_ts("1970-01-02 00:00:00") == 86400.0


def test_published_table_reads_readme_rows(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("| detector | standard | fp | fn |\n|---|---:|---:|---:|\n"
                      "| ARTime | 67.1 | 58.1 | 72.7 |\n")
    assert published_table(readme) == {"ARTime": (67.1, 58.1, 72.7)}


def test_eval_nab_help() -> None:
    res = CliRunner().invoke(cli, ["eval", "nab", "--help"])
    assert res.exit_code == 0 and "--datasets" in res.output


def test_artime_replay_uses_only_the_past_and_reports_its_state(tmp_path: Path) -> None:
    rows = day_rows(1500, spike_at=10_000)  # no spike: a level shift at row 1300 instead
    rows = rows[:1300] + [(ts, f"{float(v) + 30:.3f}") for ts, v in rows[1300:]]
    full = replay_scores(rows, Detector.artime)
    # NAB's replay knows a file's length (its probation is 15 % of it), nothing else ahead
    changed = rows[:1400] + [(ts, "0") for ts, _ in rows[1400:]]
    assert replay_scores(changed, Detector.artime)[:1400] == full[:1400]
    assert max(full[:1300]) < max(full[1300:1340])  # the shift is the first alarm
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_nab(src, rows)
    res = CliRunner().invoke(cli, ["detect", "replay", str(src), "--out", str(out),
                                   "--detector", "artime"])
    assert res.exit_code == 0, res.output
    assert 0 < json.loads(res.output)["state_bytes"] <= 2048


def test_nab_probation_follows_nab() -> None:
    assert [nab_probation(n) for n in (100, 4032, 18050)] == [64, 604, 750]
