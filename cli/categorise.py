"""``logwarden categorize`` (raw log lines -> templates) and ``logwarden eval loghub``."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from categorisation.miner import TemplateMiner

# Header layouts of the Loghub benchmark systems (Zhu et al. 2019, logpai/logparser): the
# only per-system input of `eval loghub`; the miner configuration is the same for all.
LOGHUB_FORMATS = {
    "HDFS": r"<Date> <Time> <Pid> <Level> <Component>: <Content>",
    "Hadoop": r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>",
    "Spark": r"<Date> <Time> <Level> <Component>: <Content>",
    "Zookeeper": r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
    "BGL": r"<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> "
           r"<Content>",
    "HPC": r"<LogId> <Node> <Component> <State> <Time> <Flag> <Content>",
    "Thunderbird": r"<Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> "
                   r"<Component>(\[<PID>\])?: <Content>",
    "Windows": r"<Date> <Time>, <Level>                  <Component>    <Content>",
    "Linux": r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>",
    "Android": r"<Date> <Time>  <Pid>  <Tid> <Level> <Component>: <Content>",
    "HealthApp": r"<Time>\|<Component>\|<Pid>\|<Content>",
    "Apache": r"\[<Time>\] \[<Level>\] <Content>",
    "Proxifier": r"\[<Time>\] <Program> - <Content>",
    "OpenSSH": r"<Date> <Day> <Time> <Component> sshd\[<Pid>\]: <Content>",
    "OpenStack": r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>",
    "Mac": r"<Month>  <Date> <Time> <User> <Component>\[<PID>\]( \(<Address>\))?: <Content>",
}

# Drain on the corrected ground truth (Loghub-2.0 paper, 2k): GA, FGA, PA.
PUBLISHED_DRAIN = {
    "HDFS": (0.998, 0.839, 0.500),
    "Hadoop": (0.948, 0.820, 0.269),
    "Zookeeper": (0.967, 0.854, 0.497),
    "Apache": (1.000, 1.000, 0.694),
    "OpenSSH": (0.789, 0.880, 0.508),
    "Linux": (0.690, 0.930, 0.183),
}

_FIELD = re.compile(r"(<[^<>]+>)")


def header_regex(fmt: str) -> re.Pattern[str]:
    """A regex for a Loghub-style header format; a space matches any whitespace run.

    >>> header_regex("<Date> <Level>: <Content>").match("2024-01-01 INFO: hi there")["Content"]
    'hi there'
    """
    parts = _FIELD.split(fmt)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.sub(" +", r"\\s+", part))
        else:
            name = part[1:-1]
            out.append("(?P<Content>.*)" if name == "Content" else f"(?P<{name}>.*?)")
    if "<Content>" not in parts:
        raise ValueError(f"header format has no <Content> field: {fmt!r}")
    return re.compile("^" + "".join(out) + "$")


def split_header(rx: re.Pattern[str] | None, line: str) -> tuple[dict[str, str], str]:
    """The header fields and the content of a line; a line off the format is all content."""
    if rx is not None:
        m = rx.match(line.strip())
        if m is not None:
            fields = {k: v for k, v in m.groupdict().items() if v is not None}
            return fields, fields.pop("Content")
    return {}, line


def categorize_lines(lines: Iterable[str], rx: re.Pattern[str] | None,
                     miner: TemplateMiner) -> Iterator[dict[str, Any]]:
    """One record per line: line_id (from 1), header fields, content, template, cluster_id."""
    for line_id, line in enumerate(lines, start=1):
        fields, content = split_header(rx, line.rstrip("\r\n"))
        match = miner.add(content)
        yield {"line_id": line_id, **fields, "content": content, "template": match.template,
               "cluster_id": match.template_id, "cluster_size": match.size,
               "change": match.change}


def _decoded(stream: IO[bytes], advance: Callable[[int], object] | None) -> Iterator[str]:
    for raw in stream:
        if advance is not None:
            advance(len(raw))
        yield raw.decode("utf-8", errors="replace")


def _categorize(
    source: Annotated[str, typer.Argument(help="Log file to read, or - for stdin.")] = "-",
    fmt: Annotated[str | None, typer.Option(
        "--format", help="Header layout, e.g. '<Date> <Time> <Level> <Component>: <Content>'. "
                         "Lines that do not match it are categorised whole.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write JSON lines here (default stdout).")]
    = None,
    service: Annotated[str, typer.Option(help="Service name; part of every template id.")]
    = "default",
) -> None:
    """Categorise raw log lines: one JSON object per line with its template and cluster id."""
    rx = header_regex(fmt) if fmt else None
    miner = TemplateMiner(service)
    sink = out.open("wb") if out else sys.stdout.buffer
    try:
        if source == "-":
            for rec in categorize_lines(_decoded(sys.stdin.buffer, None), rx, miner):
                sink.write(orjson.dumps(rec) + b"\n")
            return
        path = Path(source)
        with path.open("rb") as f, Progress(console=Console(stderr=True),
                                            transient=True) as progress:
            task = progress.add_task("categorising", total=path.stat().st_size)
            lines = _decoded(f, lambda n: progress.advance(task, n))
            for rec in categorize_lines(lines, rx, miner):
                sink.write(orjson.dumps(rec) + b"\n")
    finally:
        if out:
            sink.close()
        else:
            sink.flush()


def _load_scorer(tools_dir: Path) -> Any:
    path = tools_dir / "loghub_score.py"
    spec = importlib.util.spec_from_file_location("loghub_score", path)
    if spec is None or spec.loader is None or not path.exists():
        raise typer.BadParameter(f"scorer not found: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def eval_system(loghub: Path, system: str, scorer: Any,
                workdir: Path) -> tuple[dict[str, Any], float]:
    """Categorise one Loghub system like `categorize` does, score it; (metrics, seconds)."""
    log = loghub / system / f"{system}_2k.log"
    gt = loghub / system / f"{system}_2k.log_structured_corrected.csv"
    if not gt.exists():
        gt = loghub / system / f"{system}_2k.log_structured.csv"
    fmt = LOGHUB_FORMATS.get(system)
    rx = header_regex(fmt) if fmt else None
    with log.open("rb") as f:
        lines = [raw.decode("utf-8", errors="replace") for raw in f]
    start = time.perf_counter()
    records = list(categorize_lines(lines, rx, TemplateMiner(system)))
    seconds = time.perf_counter() - start
    pred = workdir / f"{system}.csv"
    with pred.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["LineId", "cluster_id", "template"])
        w.writerows((r["line_id"], r["cluster_id"], r["template"]) for r in records)
    metrics: dict[str, Any] = scorer.score(scorer.read_gt(str(gt)), scorer.read_pred(str(pred)))
    return metrics, seconds


def _eval_loghub(
    datasets: Annotated[Path | None, typer.Option(
        help="Datasets folder holding loghub/ (default: settings' datasets_dir).")] = None,
    systems: Annotated[list[str] | None, typer.Option(
        "--systems", help="Systems to run (repeatable); default: every one found.")] = None,
) -> None:
    """Score `categorize` on the labelled Loghub 2k samples (GA, FGA, PA) against Drain."""
    from cli.common import settings

    root = datasets or settings().datasets_dir
    loghub = root / "loghub"
    scorer = _load_scorer(root.parent / "tools")
    names = systems or sorted(p.name for p in loghub.iterdir()
                              if (p / f"{p.name}_2k.log").exists())
    results: dict[str, dict[str, float]] = {}
    lines = 0
    seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp, Progress(console=Console(stderr=True),
                                                        transient=True) as progress:
        task = progress.add_task("loghub", total=len(names))
        for name in names:
            metrics, secs = eval_system(loghub, name, scorer, Path(tmp))
            results[name] = {k: round(float(metrics[k]), 4) for k in ("GA", "FGA", "PA")}
            lines += int(metrics["lines"])
            seconds += secs
            progress.advance(task)
    _print_table(results)
    avg = {k: round(sum(r[k] for r in results.values()) / max(len(results), 1), 4)
           for k in ("GA", "FGA", "PA")}
    print(orjson.dumps({"ga_avg": avg["GA"], "fga_avg": avg["FGA"], "pa_avg": avg["PA"],
                        "lines_per_s": round(lines / seconds) if seconds else 0,
                        "systems": results}).decode())


def _print_table(results: dict[str, dict[str, float]]) -> None:
    table = Table(title="Loghub 2k, corrected ground truth (Drain: Loghub-2.0 paper)")
    for col in ("system", "GA", "FGA", "PA", "Drain GA", "Drain FGA", "Drain PA"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for name, r in results.items():
        pub = PUBLISHED_DRAIN.get(name)
        theirs = [f"{v:.3f}" for v in pub] if pub else ["-"] * 3
        table.add_row(name, *(f"{r[k]:.3f}" for k in ("GA", "FGA", "PA")), *theirs)
    if results:
        n = len(results)
        pubs = [PUBLISHED_DRAIN[s] for s in results if s in PUBLISHED_DRAIN]
        theirs = ([f"{sum(p[i] for p in pubs) / len(pubs):.3f}" for i in range(3)]
                  if len(pubs) == n else ["-"] * 3)
        table.add_row("average", *(f"{sum(r[k] for r in results.values()) / n:.3f}"
                                   for k in ("GA", "FGA", "PA")), *theirs, style="bold")
    Console(width=100).print(table)


def register(cli: typer.Typer) -> None:
    """Attach `categorize` to the root CLI and `loghub` to the eval group."""
    from cli.common import eval_app

    cli.command("categorize")(_categorize)
    eval_app.command("loghub")(_eval_loghub)
