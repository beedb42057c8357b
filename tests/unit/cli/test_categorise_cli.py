"""`logwarden categorise` on a small made-up log (no shared datasets needed)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from cli import categorise

FORMAT = "<Date> <Time> <Level> <Component>: <Content>"
LOG = (
    b"2024-05-01 10:00:00 INFO api.auth: user 17 logged in from 10.0.0.1\n"
    b"2024-05-01 10:00:01 INFO api.auth: user 99 logged in from 10.0.0.2\n"
    b"2024-05-01 10:00:02 WARN api.disk: disk /var almost full: 93%\n"
    b"a line that does not follow the format\n"
    b"2024-05-01 10:00:03 INFO api.auth: user 5 logged in from 10.0.0.3\n"
) + b"2024-05-01 10:00:04 ERROR api.db: bad byte \xff in query\n"


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    categorise.register(app)
    app.command("noop")(lambda: None)  # keep `categorise` a named sub-command
    return app


def _records(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def test_categorise_file_writes_one_record_per_line(cli: typer.Typer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(LOG)
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(cli, ["categorize", str(log), "--format", FORMAT, "--out", str(out)])
    assert res.exit_code == 0, res.output
    recs = _records(out.read_text())
    assert [r["line_id"] for r in recs] == [1, 2, 3, 4, 5, 6]
    assert recs[0]["Level"] == "INFO" and recs[0]["Component"] == "api.auth"
    assert recs[0]["cluster_id"] == recs[1]["cluster_id"] == recs[4]["cluster_id"]
    assert recs[4]["template"] == "user <*> logged in from <*>"
    assert recs[2]["cluster_id"] != recs[0]["cluster_id"]
    # off-format line: whole line is the content, no header fields
    assert recs[3]["content"] == "a line that does not follow the format"
    assert "Level" not in recs[3]
    assert "\ufffd" in str(recs[5]["content"])


def test_categorise_reads_stdin(cli: typer.Typer) -> None:
    res = CliRunner().invoke(cli, ["categorise", "-", "--format", FORMAT], input=LOG)
    assert res.exit_code == 0, res.output
    recs = _records(res.stdout)
    assert len(recs) == 6
    assert recs[1]["template"] == "user <*> logged in from <*>"


def test_header_regex_handles_optional_groups_and_brackets() -> None:
    rx = categorise.header_regex(r"<Month> <Date> <Time> <Host> <Component>(\[<PID>\])?: <Content>")
    fields, content = categorise.split_header(rx, "Jun 14 15:16:01 combo sshd[19939]: check pass")
    assert content == "check pass" and fields["PID"] == "19939" and fields["Component"] == "sshd"
    fields, content = categorise.split_header(rx, "Jun 14 15:16:01 combo kernel: hello")
    assert content == "hello" and "PID" not in fields
    with pytest.raises(ValueError):
        categorise.header_regex("<Date> <Time>")
