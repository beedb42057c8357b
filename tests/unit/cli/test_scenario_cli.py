"""``logwarden eval scenario`` and ``eval scenarios``: one demo run, and a sweep of them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from cli.main import cli
from demo.traffic import DemoConfig
from detectors.settings import DetectionSettings
from evaluation.scenarios import parse_seeds, sweep

START = "2026-11-20T03:17:00Z"


def last_json(output: str) -> dict[str, object]:
    return dict(orjson.loads(output.strip().splitlines()[-1]))


def test_the_sweep_reports_what_each_single_run_reports(tmp_path: Path) -> None:
    runner = CliRunner()
    swept = runner.invoke(cli, ["eval", "scenarios", "--seeds", "3-4", "--start", START,
                                "--duration", "12m", "--jobs", "2"])
    assert swept.exit_code == 0, swept.output
    single = []
    for seed in (3, 4):
        labels = tmp_path / f"labels{seed}.jsonl"
        demo = runner.invoke(cli, ["demo", "--no-pace", "--seed", str(seed), "--start", START,
                                   "--duration", "12m", "--out", str(tmp_path / "demo.jsonl"),
                                   "--labels", str(labels)])
        assert demo.exit_code == 0, demo.output
        one = runner.invoke(cli, ["eval", "scenario", str(labels), "--replay", "--seed",
                                  str(seed), "--duration", "720"])
        assert one.exit_code == 0, one.output
        single.append(last_json(one.output)["champion"])
    total = last_json(swept.output)
    assert total["runs"] == 2 and total["incidents"] == 6  # an incident every 3 min
    for key in ("anomalies", "false_alarms", "critical_within_60s", "criticals"):
        assert total[key] == sum(r[key] for r in single), key  # type: ignore[index]
    assert total["critical_within_60s"] == total["criticals"] > 0


def test_runs_in_processes_give_the_in_process_figures() -> None:
    configs = [DemoConfig(start_ms=1_795_000_000_000 + k * 3_600_000, seed=k, duration_s=420)
               for k in range(2)]
    assert sweep(configs, DetectionSettings(), jobs=2) == sweep(configs, DetectionSettings(), 1)


@pytest.mark.parametrize("text", ["", "a-b", "3-", "1,,2", "4-2"])
def test_bad_seeds_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="seeds such as 0-4"):
        parse_seeds(text)
    result = CliRunner().invoke(cli, ["eval", "scenarios", "--seeds", text])
    assert result.exit_code == 2 and "0-4" in result.output
