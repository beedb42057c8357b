"""``logwarden demo``: publish the demo fleet's traffic, with labelled incidents."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cli.common import settings
from demo.traffic import DemoConfig, Incident, event_time_ms, generate, parse_duration
from schemas.common import parse_ts
from sdk.publisher import Publisher

Event = dict[str, Any]


class Sink(Protocol):
    """Where events go: a publisher, or a JSON-lines file."""

    def publish(self, topic: str, value: Event, key: str | None = None) -> bool: ...


class FileSink:
    """Writes ``{"topic": ..., **event}`` lines, the format ``logwarden produce`` reads."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f

    def publish(self, topic: str, value: Event, key: str | None = None) -> bool:
        """Write one line."""
        self.f.write(orjson.dumps({"topic": topic, **value}) + b"\n")
        return True


class EventPacer:
    """Holds a loop to event time: at ``speed`` x real time (no waiting when speed <= 0)."""

    def __init__(self, speed: float, start_ms: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.speed, self.start_ms, self.clock, self.sleep = speed, start_ms, clock, sleep
        self.wall_start = clock()

    def due(self, event_ms: int) -> float:
        """The wall-clock time (of ``clock``) at which the event at ``event_ms`` is due."""
        return self.wall_start + (event_ms - self.start_ms) / 1000 / self.speed

    def wait(self, event_ms: int) -> None:
        """Sleep until the event at ``event_ms`` is due."""
        if self.speed > 0:
            delay = self.due(event_ms) - self.clock()
            if delay > 0.001:  # sleep in steps of >= 1 ms, not per event
                self.sleep(delay)


def run(events: Iterable[tuple[str, Event]], sink: Sink, pacer: EventPacer,
        on_progress: Callable[[int, int], None] = lambda n, t: None,
        counts: Counter[str] | None = None) -> Counter[str]:
    """Send every event to ``sink`` on time; count sent events per topic (``dropped`` too)."""
    counts = Counter() if counts is None else counts
    for n, (topic, event) in enumerate(events, start=1):
        t = event_time_ms(event)
        pacer.wait(t)
        counts[topic if sink.publish(topic, event) else "dropped"] += 1
        if n % 500 == 0:
            on_progress(n, t)
    return counts


def resolve_start(start: str | None, speed: float, duration_s: float | None,
                  now: datetime) -> int:
    """Event time to start at (epoch ms): ``start``, else now (real time) or now - duration.

    A replay faster than real time ends at the present, so no event lies in the future.
    """
    if start is not None and start != "now":
        return int(parse_ts(start).timestamp() * 1000)
    begin = now.timestamp()
    if speed != 1.0 and duration_s is not None:
        begin -= duration_s
    return int(begin * 1000)


def register(cli: typer.Typer) -> None:
    """Attach ``logwarden demo``."""

    @cli.command("demo")
    def demo(
        seed: int = typer.Option(0, "--seed", help="Random seed; the same seed and start give "
                                                   "the same events."),
        start: str | None = typer.Option(None, "--start",
                                         help="Event time of the first event (RFC 3339); "
                                              "default now, or now - duration when not "
                                              "pacing in real time."),
        speed: float = typer.Option(1.0, "--speed", help="1 = real time, 100 = 100x faster, "
                                                         "0 = as fast as possible."),
        no_pace: bool = typer.Option(False, "--no-pace", help="As fast as possible (speed 0)."),
        duration: str | None = typer.Option(None, "--duration",
                                            help="Event time to cover, e.g. 10m, 1h30m; "
                                                 "default: until Ctrl-C in real time, else 10m."),
        rate: float = typer.Option(200.0, "--rate", help="Base log events per second across "
                                                         "the fleet."),
        incident_every: str = typer.Option("3m", "--incident-every",
                                           help="Time between injected incidents."),
        incidents: int | None = typer.Option(None, "--incidents",
                                             help="Inject N incidents spread over the "
                                                  "duration instead."),
        labels: Path | None = typer.Option(None, "--labels",
                                           help="Ground-truth incidents as JSON lines "
                                                "(default <data_dir>/demo-labels.jsonl)."),
        out: Path | None = typer.Option(None, "--out", help="Write JSON lines with a topic "
                                                            "field here instead of publishing."),
        bootstrap: str | None = typer.Option(None, "--bootstrap", "-b",
                                             help="Kafka bootstrap servers (default: settings)."),
        profile: str = typer.Option("classic", "--profile",
                                    help="classic, or realistic: pods that churn, small-integer "
                                         "gauges, counter resets, daily peaks, benign spikes "
                                         "and no-op changes (docs/evaluation.md)."),
        family: str = typer.Option("churn", "--family",
                                   help="The realistic profile's family: churn, spike, peaks, "
                                        "small or changes."),
    ) -> None:
        """Generate a fleet's logs, metrics and changes with injected, labelled incidents and
        publish them (or write them to --out). Prints one JSON line of counts at the end."""
        speed = 0.0 if no_pace else speed
        try:
            duration_s = parse_duration(duration) if duration else None
            every_s = parse_duration(incident_every)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if duration_s is None and speed != 1.0:
            duration_s = 600.0
        if incidents is not None and duration_s is None:
            raise typer.BadParameter("--incidents needs --duration", param_hint="--incidents")
        try:
            start_ms = resolve_start(start, speed, duration_s, datetime.now(UTC))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--start") from None
        try:
            cfg = DemoConfig(start_ms=start_ms, seed=seed, duration_s=duration_s, rate=rate,
                             incident_every_s=every_s, incidents=incidents, profile=profile,
                             family=family)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        labels_path = labels or settings().data_dir / "demo-labels.jsonl"
        labels_path.parent.mkdir(parents=True, exist_ok=True)
        err = Console(stderr=True, soft_wrap=True)
        started = time.monotonic()
        out_f = out.open("wb") if out is not None else None
        publisher = None
        sink: Sink
        if out_f is not None:
            sink = FileSink(out_f)
        else:
            publisher = Publisher(bootstrap or settings().kafka.bootstrap_servers(),
                                  service="logwarden-demo", client_id="logwarden-demo",
                                  max_buffer=200_000, security=settings().kafka)
            sink = publisher
        found: list[Incident] = []
        counts: Counter[str] = Counter()
        interrupted = False
        columns = [SpinnerColumn(), TextColumn("{task.description}"),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
        with labels_path.open("wb") as label_f, Progress(*columns, console=err) as progress:
            task = progress.add_task("demo", info="")

            def on_incident(inc: Incident) -> None:
                found.append(inc)
                label_f.write(orjson.dumps(inc.label()) + b"\n")
                label_f.flush()
                progress.console.print(f"incident {inc.id} on {inc.service} "
                                       f"({inc.severity}) until {inc.label()['end']}",
                                       highlight=False)

            def on_progress(n: int, t: int) -> None:
                clock = datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
                per_s = n / max(time.monotonic() - started, 1e-9)
                progress.update(task, info=f"{n:,} events  event time {clock}Z  "
                                           f"{per_s:,.0f}/s  incidents {len(found)}")

            pacer = EventPacer(speed, start_ms)
            try:
                run(generate(cfg, on_incident), sink, pacer, on_progress, counts)
            except KeyboardInterrupt:
                interrupted = True
            progress.update(task, description="flushing")
            stats = publisher.close(30.0) if publisher is not None else None
        if out_f is not None:
            out_f.close()
        seconds = time.monotonic() - started
        total = sum(v for k, v in counts.items() if k != "dropped")
        summary = {"events": total, "topics": {k: v for k, v in counts.items() if k != "dropped"},
                   "incidents": len(found), "labels": str(labels_path),
                   "out": str(out) if out else None, "seed": seed,
                   "sent": stats.delivered if stats else total,
                   "dropped": stats.dropped if stats else counts["dropped"],
                   "seconds": round(seconds, 3), "interrupted": interrupted,
                   "events_per_s": round(total / seconds, 1) if seconds > 0 else 0.0}
        err.print(f"{total:,} events, {len(found)} incidents (labels: {labels_path}) "
                  f"in {seconds:.1f} s", highlight=False)
        typer.echo(orjson.dumps(summary).decode())
