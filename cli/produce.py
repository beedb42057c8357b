"""``logwarden produce``: send JSON lines from a file or stdin to the ingest topics."""

from __future__ import annotations

import gzip
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.common import settings
from schemas.common import parse_ts
from schemas.topics import CHANGES, FEEDBACK, LOGS, METRICS
from sdk.publisher import Publisher

SHORT_TOPICS = {"logs": LOGS, "metrics": METRICS, "changes": CHANGES, "feedback": FEEDBACK}
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # what Kafka accepts as a topic name
_COUNT_LINES_UP_TO = 2 << 30  # count a file's lines first (for the bar) below 2 GiB


def resolve_topic(name: str) -> str:
    """A short name (``logs``) or a full topic name, as a full topic name."""
    if name in SHORT_TOPICS:
        return SHORT_TOPICS[name]
    if not _TOPIC_RE.match(name):
        raise ValueError(f"{name[:60]!r} is not a topic name; use logs/metrics/changes/feedback")
    return name


@dataclass(frozen=True)
class Line:
    """One input line, routed: where it goes, its key, its bytes, and why it is invalid."""

    topic: str
    key: str | None
    value: bytes
    error: str | None = None
    ts_s: float | None = None  # its event time (epoch s), when it has a readable ``ts``


def _event_time(data: dict[str, object]) -> float | None:
    try:
        return parse_ts(data.get("ts")).timestamp()
    except (ValueError, TypeError):
        return None


class Shift:
    """Moves event times so the first line with one lands at ``start_ms``, keeping the
    spacing (a recording replayed as if it happened now; retention would purge its own
    dates). Lines without a readable ``ts`` are left as they are."""

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.delta_ms: int | None = None

    def __call__(self, ts_s: float) -> int:
        """The shifted event time, epoch ms, of a line stamped ``ts_s``."""
        ts_ms = round(ts_s * 1000)
        if self.delta_ms is None:
            self.delta_ms = self.start_ms - ts_ms
        return ts_ms + self.delta_ms


_NOW_MINUS = re.compile(r"^now\s*-\s*(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_start(value: str, now_ms: int) -> int:
    """``--start-at``: ``now``, ``now-4h`` (s, m, h, d), epoch ms or ISO-8601, as epoch ms.

    >>> parse_start("now-90m", 10_000_000), parse_start("1700000000000", 0)
    (4600000, 1700000000000)
    """
    v = value.strip().lower()
    if v == "now":
        return now_ms
    m = _NOW_MINUS.match(v)
    if m:
        return now_ms - round(float(m[1]) * _UNIT_S[m[2]] * 1000)
    if v.isdigit():
        return int(v)
    try:
        return round(parse_ts(value.strip()).timestamp() * 1000)
    except (ValueError, TypeError):
        raise ValueError(f"{value[:60]!r}: expected now, now-4h, epoch ms or an ISO-8601 "
                         "time") from None


def route_line(raw: bytes, default_topic: str, shift: Shift | None = None) -> Line:
    """Route one JSON line: its ``topic`` field (removed) or ``default_topic``; key = service;
    its ``ts`` moved by ``shift``.

    An invalid line keeps its raw bytes and goes to ``default_topic`` with the reason.
    """
    text = raw.rstrip(b"\r\n")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Line(default_topic, None, text, f"not valid JSON: {exc}")
    if not isinstance(data, dict):
        return Line(default_topic, None, text, f"expected a JSON object, got {type(data).__name__}")
    service = data.get("service")
    key = service if isinstance(service, str) else None
    ts = _event_time(data)
    if shift is not None and ts is not None:
        data["ts"] = shift(ts)
        ts = data["ts"] / 1000
        if "topic" not in data:
            return Line(default_topic, key, orjson.dumps(data), ts_s=ts)
    if "topic" not in data:
        return Line(default_topic, key, text, ts_s=ts)
    try:
        topic = resolve_topic(str(data.pop("topic")))
    except ValueError as exc:
        return Line(default_topic, key, text, f"bad topic field: {exc}", ts)
    return Line(topic, key, orjson.dumps(data), ts_s=ts)


class Pacer:
    """Holds a loop to ``rate`` events per second (no limit when rate <= 0)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.start = clock()

    def wait(self, sent: int) -> None:
        """Sleep until the ``sent``-th event is due."""
        if self.rate > 0:
            delay = self.start + sent / self.rate - self.clock()
            if delay > 0.001:  # sleep in steps of >= 1 ms, not per event
                self.sleep(delay)


class EventTimePacer:
    """Holds each line until its event time comes round, ``speed`` times faster than real
    time (1.0: as it was lived); the first line sets the origin. Lines without a readable
    ``ts``, or earlier than one already sent, go at once. No pacing when speed <= 0."""

    def __init__(self, speed: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.speed, self.clock, self.sleep = speed, clock, sleep
        self.origin: tuple[float, float] | None = None  # (event time, clock) of the first

    def wait(self, ts_s: float | None) -> None:
        """Sleep until the line stamped ``ts_s`` is due."""
        if self.speed <= 0 or ts_s is None:
            return
        if self.origin is None:
            self.origin = (ts_s, self.clock())
            return
        delay = self.origin[1] + (ts_s - self.origin[0]) / self.speed - self.clock()
        if delay > 0.001:
            self.sleep(delay)


@dataclass
class Tally:
    """What a produce run did."""

    lines: int = 0
    invalid: int = 0
    skipped: int = 0
    per_topic: Counter[str] = field(default_factory=Counter)


def produce_lines(lines: Iterable[bytes], publisher: Publisher, *, default_topic: str,
                  skip_invalid: bool = False, rate: float = 0.0, speed: float = 0.0,
                  on_invalid: Callable[[int, str], None] = lambda n, reason: None,
                  on_progress: Callable[[int], None] = lambda n: None,
                  queue_wait_s: float = 30.0, shift: Shift | None = None) -> Tally:
    """Send every non-blank line; report invalid ones through ``on_invalid(line_no, why)``."""
    tally = Tally()
    pacer, clock = Pacer(rate), EventTimePacer(speed)
    queued = 0
    # progress about 10 times a second
    every = max(1, int(rate / 10)) if rate > 0 else (10 if speed > 0 else 1000)
    for number, raw in enumerate(lines, start=1):
        tally.lines = number
        if number % every == 0:
            on_progress(number)
        if not raw.strip():
            continue
        line = route_line(raw, default_topic, shift)
        if line.error is not None:
            tally.invalid += 1
            on_invalid(number, line.error)
            if skip_invalid:
                tally.skipped += 1
                continue
        pacer.wait(queued)
        clock.wait(line.ts_s)
        if publisher.publish_bytes(line.topic, line.value, line.key, wait_s=queue_wait_s):
            tally.per_topic[line.topic] += 1
        queued += 1
    on_progress(tally.lines)
    return tally


def count_lines(path: Path) -> int | None:
    """The number of lines of a file, when that is cheap to know."""
    if path.stat().st_size > _COUNT_LINES_UP_TO:
        return None
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _open(source: str) -> tuple[BinaryIO, int | None]:
    if source == "-":
        return sys.stdin.buffer, None
    path = Path(source)
    if path.suffix == ".gz":
        return cast(BinaryIO, gzip.open(path, "rb")), None
    return path.open("rb"), count_lines(path)


def _lines(f: BinaryIO) -> Iterator[bytes]:
    yield from f


def register(cli: typer.Typer) -> None:
    """Attach ``logwarden produce``."""

    @cli.command("produce")
    def produce(
        source: str = typer.Argument("-", help="A file of JSON lines, or - for stdin."),
        topic: str = typer.Option("logs", "--topic", "-t",
                                  help="Topic of lines without a topic field: logs, metrics, "
                                       "changes, feedback or a full topic name."),
        rate: float = typer.Option(0.0, "--rate", "-r",
                                   help="Events per second (0: as fast as possible)."),
        speed: float = typer.Option(0.0, "--speed", "-s",
                                    help="Pace lines by their ts: 1 replays as it was lived, "
                                         "60 a minute a second (0: as fast as possible)."),
        bootstrap: str | None = typer.Option(None, "--bootstrap", "-b",
                                             help="Kafka bootstrap servers (default: settings)."),
        skip_invalid: bool = typer.Option(False, "--skip-invalid",
                                          help="Do not send lines that are not JSON objects "
                                               "(by default they go on, to be dead-lettered)."),
        timeout: float = typer.Option(30.0, "--timeout",
                                      help="Seconds a message may wait for the broker "
                                           "before it counts as dropped."),
        show_invalid: int = typer.Option(20, "--show-invalid",
                                         help="Print at most this many invalid lines."),
        start_at: str | None = typer.Option(
            None, "--start-at", help="Move every ts so the first line's lands here, keeping "
                                     "the spacing: now, now-4h, epoch ms or ISO-8601 (a "
                                     "recording replayed as if it were recent)."),
    ) -> None:
        """Send JSON lines (a file, .gz too, or stdin) to Kafka, one message each (key: its
        service); a line's "topic" field picks its topic. Prints a summary and one JSON line
        of figures."""
        try:
            default_topic = resolve_topic(topic)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--topic") from None
        try:
            shift = None if start_at is None else Shift(parse_start(start_at,
                                                                    int(time.time() * 1000)))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--start-at") from None
        err = Console(stderr=True, soft_wrap=True)
        server = bootstrap or settings().kafka.bootstrap_servers()
        publisher = Publisher(server, service="logwarden-produce", client_id="logwarden-produce",
                              max_buffer=200_000, security=settings().kafka,
                              config={"message.timeout.ms": int(timeout * 1000)})

        shown = [0]

        def on_invalid(number: int, reason: str) -> None:
            if shown[0] < show_invalid:
                shown[0] += 1
                err.print(f"[yellow]line {number}[/]: {reason}", highlight=False)
        started = time.monotonic()
        f, total = _open(source)
        columns = [TextColumn("[progress.description]{task.description}"), BarColumn(),
                   MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
        with f, Progress(*columns, console=err, transient=False) as progress:
            task = progress.add_task("producing", total=total, rate="")

            def on_progress(n: int) -> None:
                speed = n / max(time.monotonic() - started, 1e-9)
                progress.update(task, completed=n, rate=f"{speed:,.0f} lines/s")

            tally = produce_lines(_lines(f), publisher, default_topic=default_topic,
                                  skip_invalid=skip_invalid, rate=rate, speed=speed,
                                  on_invalid=on_invalid,
                                  on_progress=on_progress, shift=shift)
            progress.update(task, description="flushing")
            stats = publisher.close(timeout)
        seconds = time.monotonic() - started
        per_s = stats.delivered / seconds if seconds > 0 else 0.0
        if tally.invalid > show_invalid:
            err.print(f"... {tally.invalid - show_invalid} more invalid lines not shown")
        err.print(f"sent {stats.delivered:,} of {tally.lines:,} lines in {seconds:.1f} s "
                  f"({per_s:,.0f} events/s); invalid {tally.invalid:,}"
                  f"{' (skipped)' if skip_invalid else ' (sent for dead-lettering)'}; "
                  f"dropped {stats.dropped:,}", highlight=False)
        summary = {"sent": stats.delivered, "invalid": tally.invalid, "dropped": stats.dropped,
                   "events_per_s": round(per_s, 1), "lines": tally.lines,
                   "skipped": tally.skipped, "seconds": round(seconds, 3),
                   "topics": dict(tally.per_topic)}
        typer.echo(orjson.dumps(summary).decode())
        if stats.dropped:
            raise typer.Exit(code=1)
