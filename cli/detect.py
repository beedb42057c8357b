"""``logwarden detect replay`` and ``logwarden eval nab``: the per-series detectors offline.

``eval nab`` replays NAB through ARTime (``detectors/artime.py``) by default, the detector
that holds up when thresholds move between files; ``--detector series`` replays the live
default (``detectors/series.py``). Figures and how they were measured: docs/detection.md.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cli.common import cli_token, eval_app, settings
from evaluation import nab_folds, nab_transfer
from evaluation.nab import (
    ARTIME,
    KNOB_CAPACITIES,
    KNOB_MARGINS,
    Detector,
    ScorerFailed,
    published_table,
    replay_file,
    run_scorer,
)

detect_app = typer.Typer(help="Run the per-series anomaly detector offline.",
                         no_args_is_help=True)
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@detect_app.command("replay")
def replay_cmd(
    src: Annotated[Path, typer.Argument(help="NAB-format CSV (timestamp,value)", exists=True,
                                        dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="where to write timestamp,value,"
                                      "anomaly_score")],
    detector: Annotated[Detector, typer.Option(
        help="series: the live default; artime: NAB's default (docs/detection.md)")
    ] = Detector.series,
) -> None:
    """Stream a CSV through a per-series detector, row by row, and write its scores."""
    n, size = replay_file(src, out, detector)
    typer.echo(json.dumps({"rows": n, "out": str(out), "state_bytes": size}))


@eval_app.command("nab")
def eval_nab(
    datasets: Annotated[Path | None, typer.Option(
        help="datasets folder with nab/ inside (default: settings' datasets_dir)")] = None,
    detector: Annotated[Detector, typer.Option(
        help="artime (default for NAB) or series (the live default)")] = Detector.artime,
    thresholds_from: Annotated[Path | None, typer.Option(
        help="reuse the thresholds of an earlier --scores-json (e.g. the dev set's) "
             "instead of letting the scorer optimise them")] = None,
    scores_json: Annotated[Path | None, typer.Option(
        help="keep the scorer's full JSON here (usable as --thresholds-from)")] = None,
    results: Annotated[Path | None, typer.Option(
        help="keep the per-file score CSVs here (default: a temporary folder)")] = None,
    leave_one_out: Annotated[bool, typer.Option(
        help="score every file, and every category, at thresholds chosen without it "
             "(two scorer runs a fold)")] = True,
    transfer: Annotated[bool, typer.Option(
        help="also measure how the thresholds travel: chosen on half the real files, "
             "scored on the other half (3 seeded rounds)")] = False,
    knob_study: Annotated[bool, typer.Option(
        help="ARTime: leave-one-out that also picks margin and capacity without the fold "
             "(12 settings replayed; ~15 min)")] = False,
) -> None:
    """Replay every NAB CSV through a detector, score with the NAB scorer, compare.

    Leave-one-out figures come first: they are what a new file can expect from thresholds
    chosen elsewhere; the figure at the best threshold for these files comes after."""
    root = datasets or settings().datasets_dir
    nab, tools = root / "nab", root.parent / "tools"
    files = sorted((nab / "data").glob("*/*.csv"))
    if not files:
        raise typer.BadParameter(f"no CSV under {nab / 'data'}")
    if knob_study and detector is not Detector.artime:
        raise typer.BadParameter("--knob-study tries ARTime's settings: use --detector artime")

    def scorer(r: Path, n: Path, j: Path, f: Path | None) -> dict[str, Any]:
        try:
            return run_scorer(tools, r, n, j, f)
        except ScorerFailed as exc:
            raise typer.BadParameter(str(exc)) from None

    with tempfile.TemporaryDirectory() as tmp:
        res = results or Path(tmp) / "logwarden"
        rows, size, t0 = 0, 0, time.perf_counter()
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("replaying NAB", total=len(files))
            for src in files:
                n, b = replay_file(src, res / src.parent.name / src.name, detector)
                rows, size = rows + n, max(size, b)
                bar.advance(task)
        seconds = time.perf_counter() - t0
        out = scorer(res, nab, scores_json or Path(tmp) / "scores.json", thresholds_from)
        loo = {by: nab_folds.leave_one_out(nab, res, Path(tmp) / "loo", scorer, PROFILES, by)
               for by in ("file", "category")} if leave_one_out else {}
        travel = nab_transfer.transfer(
            nab, res, Path(tmp) / "transfer", scorer, PROFILES) if transfer else None
        study = _knob_study(files, Path(tmp), scorer, nab) if knob_study else {}
    ours = {p: round(float(out["profiles"][p]["overall"]["normalised"]), 2) for p in PROFILES}
    thr = {p: out["profiles"][p]["threshold"] for p in PROFILES}
    source = out["profiles"]["standard"]["threshold_source"]
    console = Console()
    for by, got in loo.items():
        console.print(_folds_table(by, got))
    for by, nested in study.items():
        console.print(_nested_table(by, nested))
    table = Table(title=f"NAB, {len(files)} files, thresholds {source}")
    for col in ("detector", *PROFILES):
        table.add_column(col, justify="left" if col == "detector" else "right")
    table.add_row(f"logwarden {detector.value}", *(f"{ours[p]:.1f}" for p in PROFILES),
                  style="bold")
    for name, vals in published_table(nab / "README.md").items():
        table.add_row(name, *(f"{v:.1f}" for v in vals))
    console.print(table)
    typer.echo(json.dumps({
        "benchmark": "nab", "detector": detector.value,
        **({"leave_one_out": {by: _folds_json(got) for by, got in loo.items()}} if loo else {}),
        "files": len(files), "rows": rows, **ours,
        "thresholds": thr, "threshold_source": source,
        "points_per_s": round(rows / seconds), "state_bytes": size,
        **({"transfer": travel} if travel is not None else {}),
        **({"knob_study": {by: {p: {"together": t, "worst": {
            "fold": c[0].fold.name, "normalised": round(c[0].fold.normalised, 2),
            "setting": c[0].setting}, "settings": sorted({x.setting for x in c})}
            for p, (t, c) in nested.items()} for by, nested in study.items()}}
           if study else {}),
    }))


Nested = dict[str, tuple[float, list[nab_folds.Chosen]]]


def _knob_study(files: list[Path], tmp: Path, scorer: nab_transfer.Scorer,
                nab: Path) -> dict[str, Nested]:
    """Replay every (margin, capacity) setting, then leave-one-out picking the setting and
    the thresholds without the fold, by file and by category."""
    runs = {}
    for margin in KNOB_MARGINS:
        for capacity in KNOB_CAPACITIES:
            label = f"margin {margin}, capacity {capacity}"
            at = tmp / "knobs" / f"m{margin}-c{capacity}"
            cfg = replace(ARTIME, margin=margin, capacity=capacity)
            for src in files:
                replay_file(src, at / src.parent.name / src.name, Detector.artime, cfg)
            runs[label] = at
    return {by: nab_folds.nested(nab, runs, tmp / "nested", scorer, PROFILES, by)
            for by in ("file", "category")}


def _nested_table(by: str, got: Nested) -> Table:
    """Knobs and thresholds chosen without the fold: together, then folds worst first."""
    table = Table(title=f"NAB knob study by {by}: settings and thresholds chosen without "
                        "the fold")
    table.add_column("fold", no_wrap=True)
    for head in ("standard", "low FP", "low FN", "settings (standard)"):
        table.add_column(head, justify="right", no_wrap=True)
    table.add_row("held-out folds together", *(f"{got[p][0]:.1f}" for p in PROFILES), "",
                  style="bold")
    by_name = {p: {c.fold.name: c for c in got[p][1]} for p in PROFILES}
    for c in got["standard"][1]:
        table.add_row(c.fold.name.rsplit("/", 1)[-1].removesuffix(".csv")[:36],
                      *(_num(by_name[p][c.fold.name].fold.normalised) for p in PROFILES),
                      c.setting)
    return table


def _folds_table(by: str, got: dict[str, nab_folds.Outcome]) -> Table:
    """Leave-one-out by ``by``: the transfer figure, then every fold, worst first."""
    table = Table(title=f"NAB leave-one-out by {by}: thresholds chosen without the fold")
    table.add_column("fold", no_wrap=True)
    for head in ("standard", "low FP", "low FN", "hits", "false"):
        table.add_column(head, justify="right", no_wrap=True)
    table.add_row("held-out folds together", *(f"{got[p].transfer:.1f}" for p in PROFILES),
                  "", "", style="bold")
    by_name = {p: {f.name: f for f in got[p].folds} for p in PROFILES}
    for f in got["standard"].folds:  # hits and false alarms at the standard threshold
        table.add_row(f.name.rsplit("/", 1)[-1].removesuffix(".csv")[:36],
                      *(_num(by_name[p][f.name].normalised) for p in PROFILES),
                      f"{f.hits}/{f.windows}", str(f.false_alarms))
    return table


def _folds_json(got: dict[str, nab_folds.Outcome]) -> dict[str, Any]:
    return {p: {"transfer": o.transfer,
                "worst": {"fold": o.worst.name, "normalised": round(o.worst.normalised, 2)},
                "folds": {f.name: None if math.isnan(f.normalised) else round(f.normalised, 2)
                          for f in o.folds}}
            for p, o in got.items()}


def _num(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.1f}"


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
            base, db, token = api_url(s, api), s.clickhouse.database, cli_token(s)
            got = query_api(base, ANOMALY_SQL.format(db=db), {}, 1_000_000, token)
            rows = [dict(zip(got["columns"], r, strict=True)) for r in got["rows"]]
            fb = query_api(base, FEEDBACK_SQL.format(db=db), {}, 1_000_000, token)
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
