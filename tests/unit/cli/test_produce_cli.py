"""``logwarden produce``: routing lines, pacing, invalid lines reported, summary printed."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from cli import produce
from cli.produce import (
    EventTimePacer,
    Pacer,
    Shift,
    parse_start,
    produce_lines,
    resolve_topic,
    route_line,
)
from schemas.topics import FEEDBACK, LOGS, METRICS


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str | bytes | None]] = []

    def publish_bytes(self, topic: str, value: bytes, key: str | bytes | None = None, *,
                      wait_s: float = 0.0) -> bool:
        self.sent.append((topic, value, key))
        return True


def test_resolve_topic_maps_short_names_and_keeps_full_ones() -> None:
    assert resolve_topic("metrics") == METRICS
    assert resolve_topic("team.custom-topic_1") == "team.custom-topic_1"
    with pytest.raises(ValueError):
        resolve_topic("no spaces allowed")


def test_route_line_uses_and_removes_the_topic_field() -> None:
    line = route_line(b'{"topic": "feedback", "service": "web", "x": 1}\n', LOGS)
    assert (line.topic, line.key, orjson.loads(line.value), line.error) == (
        FEEDBACK, "web", {"service": "web", "x": 1}, None)


def test_route_line_without_topic_sends_the_original_bytes() -> None:
    raw = b'{"service": "db",  "level": "INFO"}\r\n'
    line = route_line(raw, METRICS)
    assert (line.topic, line.key, line.value, line.error) == (
        METRICS, "db", raw.rstrip(), None)


def test_a_shift_moves_every_ts_by_the_first_lines_offset_and_keeps_the_rest() -> None:
    shift = Shift(2_000_000_000_000)
    first = route_line(b'{"ts": 1674981729487, "service": "a", "topic": "metrics"}', LOGS, shift)
    later = route_line(b'{"ts": "2023-01-29T08:43:09.487Z", "service": "a"}', LOGS, shift)
    untimed = route_line(b'{"service": "a", "message": "no ts"}', LOGS, shift)
    assert orjson.loads(first.value)["ts"] == 2_000_000_000_000 and first.topic == METRICS
    assert orjson.loads(later.value)["ts"] == 2_000_000_000_000 + 60_000
    assert later.ts_s == 2_000_000_060.0
    assert untimed.value == b'{"service": "a", "message": "no ts"}'
    with pytest.raises(ValueError, match="now-4h"):
        parse_start("last tuesday", 0)


@pytest.mark.parametrize("raw, why", [
    (b"{oops", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"topic": "bad topic", "service": "a"}', "bad topic field"),
])
def test_invalid_lines_keep_raw_bytes_and_say_why(raw: bytes, why: str) -> None:
    line = route_line(raw, LOGS)
    assert line.topic == LOGS and line.value == raw
    assert line.error is not None and why in line.error


def test_pacer_sleeps_until_each_event_is_due() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    for n in range(5):
        pacer.wait(n)
    assert now[0] == pytest.approx(100.4)
    assert Pacer(0.0, clock=lambda: 0.0, sleep=sleep).wait(10**6) is None


def test_event_time_pacer_replays_as_lived_or_faster() -> None:
    now = [100.0]

    def sleep(s: float) -> None:
        now[0] += s

    stamps = ["2026-12-01T00:00:00Z", 1_796_083_201_000, "2026-12-01T00:00:03Z"]
    lines = [route_line(orjson.dumps({"ts": t, "service": "a"}), "logs") for t in stamps]
    assert [ln.ts_s for ln in lines] == [1_796_083_200.0, 1_796_083_201.0, 1_796_083_203.0]
    pacer = EventTimePacer(1.0, clock=lambda: now[0], sleep=sleep)
    for ln in lines:
        pacer.wait(ln.ts_s)
    assert now[0] == pytest.approx(103.0)  # 1x: three seconds of event time, three of clock
    fast = EventTimePacer(60.0, clock=lambda: now[0], sleep=sleep)
    for ln in lines:
        fast.wait(ln.ts_s)
    assert now[0] == pytest.approx(103.05)
    EventTimePacer(0.0, clock=lambda: now[0], sleep=sleep).wait(1e12)  # full speed
    assert route_line(b'{"ts": "soon", "service": "a"}', "logs").ts_s is None
    assert now[0] == pytest.approx(103.05)


def test_produce_lines_reports_invalid_lines_with_numbers_and_still_sends_them() -> None:
    pub = FakePublisher()
    invalid: list[tuple[int, str]] = []
    lines = [b'{"service": "a"}\n', b"\n", b"garbage\n", b'{"topic": "metrics", "service": "b"}\n']
    tally = produce_lines(lines, pub, default_topic=LOGS,  # type: ignore[arg-type]
                          on_invalid=lambda n, why: invalid.append((n, why)))
    assert [n for n, _ in invalid] == [3]
    assert [(t, k) for t, _, k in pub.sent] == [(LOGS, "a"), (LOGS, None), (METRICS, "b")]
    assert pub.sent[1][1] == b"garbage"
    assert (tally.lines, tally.invalid, tally.skipped) == (4, 1, 0)
    assert tally.per_topic == {LOGS: 2, METRICS: 1}


def test_skip_invalid_does_not_send_them() -> None:
    pub = FakePublisher()
    tally = produce_lines([b"garbage", b'{"service": "a"}'], pub,  # type: ignore[arg-type]
                          default_topic=LOGS, skip_invalid=True)
    assert len(pub.sent) == 1 and (tally.invalid, tally.skipped) == (1, 1)


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test root."""

    produce.register(app)
    return app


def test_cli_against_a_dead_broker_reports_drops_and_exits_nonzero(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"service": "a", "message": "x"}\nnot json\n{"topic": "metrics"}\n')
    result = CliRunner().invoke(cli(), ["produce", str(src), "--bootstrap", "127.0.0.1:1",
                                        "--timeout", "0.3"])
    assert result.exit_code == 1, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["sent"], summary["invalid"], summary["dropped"]) == (0, 1, 3)
    assert summary["topics"] == {LOGS: 2, METRICS: 1}
    assert "line 2: not valid JSON" in result.stderr


def test_cli_refuses_a_bad_topic_option() -> None:
    result = CliRunner().invoke(cli(), ["produce", "-", "--topic", "a b"])
    assert result.exit_code == 2
