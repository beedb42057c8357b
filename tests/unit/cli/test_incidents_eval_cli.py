"""``logwarden eval incidents`` on the realistic demo world: its figures, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli.main import cli


def test_the_realistic_world_is_replayed_through_the_incident_engine(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    got = CliRunner().invoke(cli, [
        "eval", "incidents", "--nezha", str(tmp_path / "absent"), "--demo-seeds", "1",
        "--profile", "realistic", "--family", "small", "--duration", "10m",
        "--incidents", "2", "--out", str(out)])
    assert got.exit_code == 0, got.output
    assert "Nezha skipped" in got.output
    figures = json.loads(out.read_text())
    assert figures["demo_ranking"]["profile"] == "realistic/small"
    pipe = figures["demo_pipeline"]
    # a pool exhaustion first (the root is the database proxy), then a latency regression
    assert pipe["real_incidents"] == 2 and pipe["detected"] == 2
    assert pipe["per_case"][0]["root"] == "postgres-proxy"
    assert pipe["per_case"][0]["rank"] == 1
    assert all(c["rank"] is not None and c["rank"] <= 3 for c in pipe["per_case"])
    none = tmp_path / "none.json"
    skipped = CliRunner().invoke(cli, [
        "eval", "incidents", "--no-nezha", "--demo-seeds", "", "--out", str(none)])
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(none.read_text()) == {}  # neither the demo nor Nezha was asked for


def test_an_unknown_profile_family_or_duration_is_a_clear_error() -> None:
    runner = CliRunner()
    for args, says in ((["--profile", "fancy"], "classic or realistic"),
                       (["--profile", "realistic", "--family", "calm"], "one of churn"),
                       (["--duration", "soon"], "not a duration"),
                       # a folder without the data set ("" is the working directory), found
                       # before the demo replay, not after it
                       (["--nezha", ""], "no Nezha data set")):
        got = runner.invoke(cli, ["eval", "incidents", "--demo-seeds", "1", *args])
        assert got.exit_code == 2 and says in got.output, got.output
