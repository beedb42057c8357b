"""``logwarden categorise`` (raw log lines -> templates) and ``logwarden eval loghub``."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from categorisation.config import MinerConfig
from categorisation.miner import TemplateMiner
from evaluation import loghub, synthetic, template_counts
from evaluation.loghub import LOGHUB_FORMATS, PUBLISHED_DRAIN, header_regex, split_header

__all__ = ["LOGHUB_FORMATS", "categorise_lines", "header_regex", "split_header"]

def categorise_lines(lines: Iterable[str], rx: re.Pattern[str] | None,
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


def _categorise(
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
            for rec in categorise_lines(_decoded(sys.stdin.buffer, None), rx, miner):
                sink.write(orjson.dumps(rec) + b"\n")
            return
        path = Path(source)
        with path.open("rb") as f, Progress(console=Console(stderr=True),
                                            transient=True) as progress:
            task = progress.add_task("categorising", total=path.stat().st_size)
            lines = _decoded(f, lambda n: progress.advance(task, n))
            for rec in categorise_lines(lines, rx, miner):
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


def _eval_loghub(
    datasets: Annotated[Path | None, typer.Option(
        help="Datasets folder holding loghub/ (default: settings' datasets_dir).")] = None,
    systems: Annotated[list[str] | None, typer.Option(
        "--systems", help="Systems to run (repeatable); default: every one found.")] = None,
    loso: Annotated[bool, typer.Option(
        help="Also choose the knobs leave-one-system-out over the grid (a few minutes).")]
    = True,
    demo_lines: Annotated[int, typer.Option(
        help="Labelled demo log lines scored as one more development system (0: none).")]
    = 20_000,
    synthetic_sets: Annotated[int, typer.Option(
        help="Synthetic labelled sets (evaluation/synthetic.py) scored as a sanity check.")]
    = 6,
) -> None:
    """Score `categorise` on the labelled Loghub 2k samples: per system, and leave one out."""
    from cli.common import settings

    root = datasets or settings().datasets_dir
    loghub_dir = root / "loghub"
    scorer = _load_scorer(root.parent / "tools")
    names = systems or sorted(p.name for p in loghub_dir.iterdir()
                              if (p / f"{p.name}_2k.log").exists())
    data = [loghub.load_system(loghub_dir, n, scorer) for n in names]
    if demo_lines > 0:
        data.append(loghub.demo_system(template_counts.demo_log_events(demo_lines)))
    results: dict[str, dict[str, float]] = {}
    lines = 0
    seconds = 0.0
    for s in data:
        start = time.perf_counter()
        metrics = loghub.score(s, MinerConfig(), scorer)
        seconds += time.perf_counter() - start
        results[s.name] = {k: round(float(metrics[k]), 4) for k in ("GA", "FGA", "PA")}
        lines += int(metrics["lines"])
    demo = results.pop(loghub.DEMO, None)
    _print_table(results, demo)
    avg = {k: round(sum(r[k] for r in results.values()) / max(len(results), 1), 4)
           for k in ("GA", "FGA", "PA")}
    doc: dict[str, Any] = {"ga_avg": avg["GA"], "fga_avg": avg["FGA"], "pa_avg": avg["PA"],
                           "ga_worst": min((r["GA"] for r in results.values()), default=0.0),
                           "lines_per_s": round(lines / seconds) if seconds else 0,
                           "systems": results, "demo_fleet": demo}
    if synthetic_sets > 0:
        ga = [float(loghub.score(synthetic.generate(seed), MinerConfig(), scorer)["GA"])
              for seed in range(synthetic_sets)]
        print(f"synthetic sets (generic printf templates, never Loghub): GA "
              f"{' '.join(f'{g:.3f}' for g in ga)}; average {sum(ga) / len(ga):.3f}")
        doc["synthetic"] = {"ga": [round(g, 4) for g in ga],
                            "ga_avg": round(sum(ga) / len(ga), 4)}
    if loso and len(data) > 1:
        points = loghub.grid_points()
        scores: dict[str, dict[str, float]] = {}
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("leave one system out", total=len(points))
            for label, cfg in points:
                scores[label] = {s.name: float(loghub.score(s, cfg, scorer)["GA"]) for s in data}
                progress.advance(task)
        # Loghub systems choose; the demo only breaks exact ties (it labels enumerations such
        # as HTTP methods as variables, where Loghub's corrected ground truth often does not)
        folds = loghub.leave_one_out(scores, tiebreak=loghub.DEMO if demo else None)
        _print_folds(folds, points[0][0])
        folds = [f for f in folds if f.held_out != loghub.DEMO]
        ga = [f.ga for f in folds]
        doc["loso"] = {"ga_avg": round(sum(ga) / len(ga), 4), "ga_worst": round(min(ga), 4),
                       "grid_points": len(points),
                       "folds": {f.held_out: {"GA": round(f.ga, 4), "config": f.config}
                                 for f in folds}}
    print(orjson.dumps(doc).decode())


def _eval_templates(
    lines: Annotated[int, typer.Option(help="Labelled demo log lines to mine.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the demo timeline.")] = 3,
) -> None:
    """Templates found versus templates the demo generator emitted, per service."""
    counts = template_counts.count_templates(template_counts.demo_log_events(lines, seed))
    table = Table(title=f"Demo fleet, {lines} log lines: templates found vs emitted "
                        f"(target within {template_counts.TARGET_RATIO}x)")
    for col in ("service", "lines", "emitted", "found", "ratio", "GA"):
        table.add_column(col, justify="left" if col == "service" else "right")
    for c in counts.values():
        table.add_row(c.service, str(c.lines), str(c.emitted), str(c.found), f"{c.ratio:.2f}",
                      f"{c.ga:.3f}", style=None if c.within_target else "red")
    n = sum(c.lines for c in counts.values())
    ga = sum(c.ga * c.lines for c in counts.values()) / n if n else 0.0
    table.add_row("all", str(n), str(sum(c.emitted for c in counts.values())),
                  str(sum(c.found for c in counts.values())), "", f"{ga:.3f}", style="bold")
    Console(width=100).print(table)
    print(orjson.dumps({
        "lines": n, "ga": round(ga, 4),
        "within_target": sum(c.within_target for c in counts.values()),
        "services": {c.service: {"emitted": c.emitted, "found": c.found,
                                 "ratio": round(c.ratio, 3), "ga": round(c.ga, 4)}
                     for c in counts.values()}}).decode())


def _print_folds(folds: list[loghub.Fold], shipped: str) -> None:
    table = Table(title="Leave one system out: knobs chosen on the other systems")
    for col in ("held out", "GA", "train GA", "chosen"):
        table.add_column(col, justify="left" if col in ("held out", "chosen") else "right")
    for f in folds:
        table.add_row(f.held_out, f"{f.ga:.3f}", f"{f.train_ga:.3f}",
                      "shipped" if f.config == shipped else f.config)
    ga = [f.ga for f in folds if f.held_out != loghub.DEMO]
    table.add_row("average", f"{sum(ga) / len(ga):.3f}", "", "", style="bold")
    table.add_row("worst", f"{min(ga):.3f}", "", "", style="bold")
    Console(width=120).print(table)
    print(f"shipped: {shipped}")


def _print_table(results: dict[str, dict[str, float]], demo: dict[str, float] | None
                 ) -> None:
    table = Table(title="Loghub 2k, corrected ground truth, shipped configuration "
                        "(Drain: Loghub-2.0 paper, tuned per system)")
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
        table.add_row("worst", f"{min(r['GA'] for r in results.values()):.3f}", "", "",
                      "", "", "", style="bold")
    if demo:
        table.add_row(f"({loghub.DEMO})", *(f"{demo[k]:.3f}" for k in ("GA", "FGA", "PA")),
                      "-", "-", "-", style="dim")
    Console(width=110).print(table)


def register(cli: typer.Typer) -> None:
    """Attach `categorise` to the root CLI and `loghub` to the eval group."""
    from cli.common import eval_app

    cli.command("categorise")(_categorise)
    cli.command("categorize", hidden=True)(_categorise)  # the American spelling works too
    eval_app.command("loghub")(_eval_loghub)
    eval_app.command("templates")(_eval_templates)
