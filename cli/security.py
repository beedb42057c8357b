"""``logwarden eval security`` and ``logwarden security backtest``: the security detectors on
seeded attacks and benign days, or on stored history."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.common import cli_token, eval_app, settings
from schemas.errors import ConfigError

DEFAULT_FILE = Path("deploy/config/security.yaml")
TUNE_SEEDS = "1-5"  # the seeds the shipped thresholds were chosen on
HELD_OUT_SEEDS = "101-120"  # never used while choosing them
err = Console(stderr=True, soft_wrap=True)


def parse_seeds(text: str) -> list[int]:
    """``1-5,9,12-13`` -> [1, 2, 3, 4, 5, 9, 12, 13]."""
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise typer.BadParameter(f"seeds like 1-5,9 (got {text!r})", param_hint="--seeds") \
            from None
    return out


def load(file: Path) -> Any:
    """The security config of ``file``, or exit with its file:line error."""
    from alerting.security_rules import load_security
    try:
        return load_security(file)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


def _s(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.1f}"


@eval_app.command("security")
def eval_security(
    seeds: Annotated[str, typer.Option(help="seeds to run (held out by default; the "
                                            f"thresholds were tuned on {TUNE_SEEDS})")
                     ] = HELD_OUT_SEEDS,
    file: Annotated[Path, typer.Option(help="security rules file")] = DEFAULT_FILE,
) -> None:
    """Time to a critical alert under credential stuffing and brute force, and false pages
    over benign days, per seed (worst seed first); JSON summary on stdout."""
    from evaluation.security import evaluate_seed, summarise

    cfg = load(file)
    results = []
    for s in parse_seeds(seeds):
        with err.status(f"seed {s}"):
            r = evaluate_seed(cfg, s)
        results.append(r)
        err.print(f"seed {s}: " + ", ".join(f"{a.kind} {_s(a.time_to_critical_s)} s"
                                            for a in r.attacks)
                  + f", false pages {r.false_pages_attack_day + r.false_pages_benign_day}")
    summary = summarise(results)
    t = Table("seed", "stuffing s", "brute force s", "first rules", "false pages", "events")
    for r in summary.results:
        by = {a.kind: a for a in r.attacks}
        t.add_row(str(r.seed), _s(by["credential_stuffing"].time_to_critical_s),
                  _s(by["brute_force"].time_to_critical_s),
                  ", ".join(a.first_rule for a in r.attacks),
                  f"{r.false_pages_attack_day + r.false_pages_benign_day}"
                  + (f" ({', '.join(r.false_page_rules)})" if r.false_page_rules else ""),
                  str(r.events))
    err.print(t)
    doc = summary.model_dump(exclude={"results"})
    doc["worst_time_to_critical_s"] = {k: (None if math.isinf(v) else round(v, 2))
                                       for k, v in summary.worst_time_to_critical_s.items()}
    doc["median_time_to_critical_s"] = {k: (None if math.isinf(v) else round(v, 2))
                                        for k, v in summary.median_time_to_critical_s.items()}
    typer.echo(json.dumps({"benchmark": "security", **doc}))


def replay_rows(cfg: Any, columns: list[str], rows: list[list[Any]]
                ) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    """Stored auth rows (``AUTH_EVENT_SQL``) through the rules: the events replayed and, per
    rule, its alert episodes (a new one after 5 quiet minutes of event time)."""
    from alerting.security import SecurityDetector
    from schemas.auth_events import auth_event
    from sinks.clickhouse.queries.security import auth_log_event

    det = SecurityDetector(cfg)
    fired: dict[str, list[dict[str, Any]]] = {r.name: [] for r in cfg.rules}
    n = 0
    for row in rows:
        doc_row = dict(zip(columns, row, strict=True))
        ev, route, status = auth_log_event(doc_row)
        doc = auth_event(ev, route, status, str(doc_row.get("event_id", "")))
        if doc is None:
            continue
        n += 1
        for sig in det.observe(doc) + det.advance():
            if sig.status != "firing":
                continue
            eps = fired[sig.rule]
            if not eps or eps[-1]["fingerprint"] != sig.fingerprint \
                    or sig.ts - eps[-1]["last"] > 300:
                eps.append({"fingerprint": sig.fingerprint, "ts": sig.ts, "last": sig.ts,
                            "labels": sig.labels, "summary": sig.annotations.get("summary")})
            else:
                eps[-1]["last"] = sig.ts
    return n, fired


def backtest_security(file: Path, since_s: float, api: str | None) -> None:
    """Replay stored authentication events through the security rules; print episodes."""
    from cli.query import QueryFailed, api_url, query_api, query_direct
    from sinks.clickhouse.queries.security import AUTH_EVENT_SQL

    cfg = load(file)
    s = settings()
    sql = AUTH_EVENT_SQL.format(db=s.clickhouse.database)
    params = {"since": int(since_s)}
    direct = api is None and s.clickhouse.url.startswith(("http://", "https://"))
    try:
        with err.status("reading authentication events"):
            answer = (query_direct(s, sql, params, 5_000_000) if direct
                      else query_api(api_url(s, api), sql, params, 5_000_000, cli_token(s)))
    except QueryFailed as e:
        raise SystemExit(f"error: {e}") from None
    n, fired = replay_rows(cfg, answer["columns"], answer["rows"])
    t = Table("rule", "episodes", "first")
    for name, eps in fired.items():
        t.add_row(name, str(len(eps)), eps[0]["summary"] if eps else "")
    err.print(f"{n} authentication events replayed")
    err.print(t)
    typer.echo(json.dumps({"events": n, "rules": [{"rule": k, "episodes": len(v),
                                                    "first": v[:5]} for k, v in fired.items()]}))


def register(cli: typer.Typer) -> None:
    """``eval security`` hangs on the shared eval group; nothing else to attach."""
