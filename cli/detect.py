"""``logwarden detect replay`` and ``logwarden eval nab``: the series detector offline."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cli.common import eval_app, settings
from detectors.series import SeriesDetector
from evaluation import nab_transfer

detect_app = typer.Typer(help="Run the per-series anomaly detector offline.",
                         no_args_is_help=True)
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def parse_ts(text: str) -> float:
    """NAB timestamp ``YYYY-MM-DD HH:MM:SS`` (no zone, taken as UTC) -> epoch seconds."""
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()


def replay_scores(rows: Iterable[tuple[str, str]]) -> list[float]:
    """Anomaly score per (timestamp, value) row, in file order, each from the past only."""
    det = SeriesDetector()
    out = []
    for ts, value in rows:
        try:
            x = float(value)
        except ValueError:
            x = float("nan")  # an unreadable value is a missing point
        out.append(det.update(parse_ts(ts), x).score)
    return out


def replay_file(src: Path, dst: Path) -> int:
    """Replay one NAB CSV through the online detector into ``dst``; returns the row count."""
    with src.open(newline="") as f:
        rows = [(r["timestamp"], r["value"]) for r in csv.DictReader(f)]
    scores = replay_scores(rows)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score"])
        for (ts, value), s in zip(rows, scores, strict=True):
            w.writerow([ts, value, f"{s:.12g}"])
    return len(rows)


@detect_app.command("replay")
def replay(
    src: Annotated[Path, typer.Argument(help="NAB-format CSV (timestamp,value)", exists=True,
                                        dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="where to write timestamp,value,"
                                      "anomaly_score")],
) -> None:
    """Stream a CSV through the online detector, row by row, and write its scores."""
    n = replay_file(src, out)
    typer.echo(json.dumps({"rows": n, "out": str(out)}))


def published_table(readme: Path) -> dict[str, tuple[float, float, float]]:
    """Reference scores from the dataset README: detector -> (standard, low FP, low FN)."""
    pat = re.compile(r"^\|\s*([^|]+?)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|$")
    table = {}
    for line in readme.read_text().splitlines() if readme.exists() else []:
        m = pat.match(line.strip())
        if m:
            table[m.group(1)] = (float(m.group(2)), float(m.group(3)), float(m.group(4)))
    return table


def run_scorer(tools: Path, results: Path, nab: Path, json_out: Path,
               thresholds_from: Path | None) -> dict[str, Any]:
    """Run the NAB scorer on ``results``; returns its JSON (per profile, threshold...)."""
    cmd = [sys.executable, str(tools / "nab_score.py"), str(results), "--nab", str(nab),
           "--json", str(json_out), "--quiet"]
    if thresholds_from is not None:
        cmd += ["--thresholds-from", str(thresholds_from)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise typer.BadParameter(f"nab scorer failed: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(json_out.read_text())
    return result


@eval_app.command("nab")
def eval_nab(
    datasets: Annotated[Path | None, typer.Option(
        help="datasets folder with nab/ inside (default: settings' datasets_dir)")] = None,
    thresholds_from: Annotated[Path | None, typer.Option(
        help="reuse the thresholds of an earlier --scores-json (e.g. the dev set's) "
             "instead of letting the scorer optimise them")] = None,
    scores_json: Annotated[Path | None, typer.Option(
        help="keep the scorer's full JSON here (usable as --thresholds-from)")] = None,
    results: Annotated[Path | None, typer.Option(
        help="keep the per-file score CSVs here (default: a temporary folder)")] = None,
    transfer: Annotated[bool, typer.Option(
        help="also measure how the thresholds travel: chosen on half the real files, "
             "scored on the other half (3 seeded rounds)")] = False,
) -> None:
    """Replay every NAB CSV through the detector, score with the NAB scorer, compare."""
    root = datasets or settings().datasets_dir
    nab, tools = root / "nab", root.parent / "tools"
    files = sorted((nab / "data").glob("*/*.csv"))
    if not files:
        raise typer.BadParameter(f"no CSV under {nab / 'data'}")
    with tempfile.TemporaryDirectory() as tmp:
        res = results or Path(tmp) / "logwarden"
        rows, t0 = 0, time.perf_counter()
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("replaying NAB", total=len(files))
            for src in files:
                rows += replay_file(src, res / src.parent.name / src.name)
                bar.advance(task)
        seconds = time.perf_counter() - t0
        out = run_scorer(tools, res, nab, scores_json or Path(tmp) / "scores.json",
                         thresholds_from)
        travel = nab_transfer.transfer(
            nab, res, Path(tmp) / "transfer", lambda r, n, j, f: run_scorer(tools, r, n, j, f),
            PROFILES) if transfer else None
    ours = {p: round(float(out["profiles"][p]["overall"]["normalised"]), 2) for p in PROFILES}
    thr = {p: out["profiles"][p]["threshold"] for p in PROFILES}
    source = out["profiles"]["standard"]["threshold_source"]
    table = Table(title=f"NAB, {len(files)} files, thresholds {source}")
    for col in ("detector", *PROFILES):
        table.add_column(col, justify="left" if col == "detector" else "right")
    table.add_row("logwarden series", *(f"{ours[p]:.1f}" for p in PROFILES), style="bold")
    for name, vals in published_table(nab / "README.md").items():
        table.add_row(name, *(f"{v:.1f}" for v in vals))
    Console().print(table)
    typer.echo(json.dumps({
        "benchmark": "nab", "files": len(files), "rows": rows, **ours,
        "thresholds": thr, "threshold_source": source,
        "points_per_s": round(rows / seconds), "state_bytes": SeriesDetector().state_size(),
        **({"transfer": travel} if travel is not None else {}),
    }))


def register(cli: typer.Typer) -> None:
    """Attach ``detect`` to the root CLI (``eval nab`` hangs on the shared eval group)."""
    cli.add_typer(detect_app, name="detect")


FEEDBACK_SQL = ("SELECT target_id, argMax(verdict, ts) FROM {db}.feedback "
                "WHERE target_kind = 'anomaly' GROUP BY target_id")


@detect_app.command("compare")
def compare(
    labels: Annotated[Path | None, typer.Option(
        help="the demo's labels file: recall and time-to-detect against it")] = None,
    anomalies: Annotated[Path | None, typer.Option(
        help="anomalies as JSON lines instead of the worker's table")] = None,
    api: Annotated[str | None, typer.Option(help="worker API URL (default: settings)")] = None,
) -> None:
    """Champion vs challenger: precision, recall, false-alert rate, time-to-detect."""
    from cli.query import QueryFailed, api_url, query_api
    from cli.scenario import ANOMALY_SQL
    from evaluation.incidents import evaluate
    from evaluation.scenarios import read_labels, span_hours

    s = settings()
    verdicts: dict[str, str] = {}
    try:
        if anomalies is not None:
            rows = read_labels(anomalies)
        else:
            base, db = api_url(s, api), s.clickhouse.database
            got = query_api(base, ANOMALY_SQL.format(db=db), {}, 1_000_000)
            rows = [dict(zip(got["columns"], r, strict=True)) for r in got["rows"]]
            fb = query_api(base, FEEDBACK_SQL.format(db=db), {}, 1_000_000)
            verdicts = {str(r[0]): str(r[1]) for r in fb["rows"]}
    except QueryFailed as exc:
        raise typer.BadParameter(str(exc)) from None
    incidents = read_labels(labels) if labels is not None else []
    result = evaluate(rows, incidents, span_hours(rows, incidents), verdicts)
    table = Table(title="detector variants")
    cols = ("variant", "anomalies", "precision", "recall", "false-alert rate", "false/h",
            "ttd mean s", "judged")
    for col in cols:
        table.add_column(col, justify="left" if col == "variant" else "right")
    out = {}
    for variant, r in result.items():
        precision = r.get("feedback_precision", round(1 - r["false_fraction"], 4)) if (
            incidents or "feedback_precision" in r) else None
        fa = None if precision is None else round(1 - precision, 4)
        out[variant] = {"anomalies": r["anomalies"], "precision": precision,
                        "recall": r["recall"] if incidents else None,
                        "false_alert_rate": fa, "false_per_hour": r["false_per_hour"],
                        "ttd_mean_s": r["ttd_mean_s"], "judged": r["judged"]}
        table.add_row(variant, *(str(v) for v in out[variant].values()))
    Console(stderr=True).print(table)
    typer.echo(json.dumps({"benchmark": "detect_compare", **out}))
