"""``logwarden eval nezha-delay`` on a small recorded fleet it writes itself: a network delay
injected into its traces pages through the shipped rules, and bad input is a clear error."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import orjson
from typer.testing import CliRunner

from cli.main import cli

T0 = 1_700_000_000_000
CASE_MS = T0 + 3_600_000  # an hour of history, then the recorded case window


def write_nezha(root: Path) -> None:
    """gw -> a -> b, two requests a second for 70 minutes; a case whose root is ``gw``."""
    events = []
    for i in range(8_400):
        ts = T0 + i * 500
        trace = f"t{i}"
        jitter = 1.0 + 0.3 * math.sin(i * 0.7)
        b = 8.0 * jitter
        spans = [(ts, "gw", None, 30.0 + b), (ts + 1, "gw", "a", 28.0 + b),
                 (ts + 2, "a", None, 25.0 + b), (ts + 3, "a", "b", 10.0 + b),
                 (ts + 4, "b", None, b)]
        for at, service, callee, dur in spans:
            e = {"topic": "logwarden.logs.v1", "ts": at, "service": service, "level": "INFO",
                 "message": "m", "host": f"{service}-0", "trace_id": trace,
                 "event_id": f"{trace}-{at}-{service}"}
            if callee is None:
                e["http"] = {"method": "GET", "route": f"/{service}", "status": 200,
                             "duration_ms": round(dur, 1)}
            else:
                e["peer"] = {"service": callee, "operation": f"GET /{callee}",
                             "duration_ms": round(dur, 1), "ok": True}
            events.append(e)
    root.mkdir()
    with gzip.open(root / "events.jsonl.gz", "wb") as f:
        for e in events:
            f.write(orjson.dumps(e) + b"\n")
    case = {"id": "INC-01", "kind": "return", "severity": "critical", "start_ms": CASE_MS,
            "end_ms": CASE_MS + 180_000, "root_cause_service": "gw",
            "affected_services": ["gw"]}
    (root / "labels.json").write_text(json.dumps({
        "incidents": [case], "call_graph": {"gw": {"a": 1}, "a": {"b": 1}},
        "telemetry_gaps": []}))


def test_a_delayed_dependency_is_paged_from_its_caller_and_the_figures_say_so(
        tmp_path: Path) -> None:
    write_nezha(tmp_path / "nezha")
    got = CliRunner().invoke(cli, ["eval", "nezha-delay", "--datasets", str(tmp_path),
                                   "--delay-ms", "200"])
    assert got.exit_code == 0, got.output
    figures = json.loads(got.stdout.strip().splitlines()[-1])
    # the candidates are the called services, a and b; the case's root gw is never delayed
    assert figures["200ms"]["faults"] == 1
    assert figures["200ms"]["paged_2min"] == 1, figures
    assert figures["200ms"]["missed"] == []
    assert figures["200ms"]["root_cause"]["incidents"] == 1  # an incident opened for it


def flat(output: str) -> str:
    """The error box's text without its wrapping (lines, borders, spaces)."""
    return "".join(c for c in output if not c.isspace() and c != "\u2502")


def test_a_missing_data_set_or_a_bad_delay_is_a_clear_error(tmp_path: Path) -> None:
    runner = CliRunner()
    got = runner.invoke(cli, ["eval", "nezha-delay", "--datasets", str(tmp_path)])
    assert got.exit_code == 2 and "nezha/labels.json" in flat(got.output), got.output
    write_nezha(tmp_path / "nezha")
    for bad in ("soon", "0", ""):
        got = runner.invoke(cli, ["eval", "nezha-delay", "--datasets", str(tmp_path),
                                  "--delay-ms", bad])
        assert got.exit_code == 2 and "--delay-ms" in flat(got.output), (bad, got.output)
