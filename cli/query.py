"""``logwarden query``: run one read-only SQL query and print the rows.

Embedded mode (no ``LOGWARDEN_CLICKHOUSE_URL``, or a ``chdb://`` one): chDB lets only the
worker open the data directory, so the query goes to the running worker's HTTP API. With an
``http(s)://`` ClickHouse URL the query goes to that server directly.
"""

from __future__ import annotations

import csv
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import orjson
import typer
from clickhouse_connect.driver.exceptions import DatabaseError
from rich.console import Console
from rich.table import Table

from cli.common import cli_token, settings
from sinks.clickhouse.client import connect
from streams.settings import Settings
from web.api import DEFAULT_LIMIT, MAX_EXECUTION_S, run_read_query, to_jsonl
from web.http import ApiError

FORMATS = ("table", "csv", "jsonl")


class QueryFailed(Exception):
    """The query could not run; the message says why, for people."""


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``k=v`` pairs as a dict; ClickHouse casts each value to its ``{k:Type}`` placeholder."""
    params: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{item!r} is not name=value")
        params[name.strip()] = value
    return params


def api_url(s: Settings, api: str | None = None) -> str:
    """The worker API base URL: ``api`` or ``http://{web_host}:{web_port}``."""
    return (api or f"http://{s.stream.web_host}:{s.stream.web_port}").rstrip("/")


def query_api(base: str, sql: str, params: Mapping[str, Any], limit: int,
              token: str | None = None) -> dict[str, Any]:
    """POST the query to a worker's ``/api/query``; its JSON answer, or QueryFailed."""
    body = orjson.dumps({"sql": sql, "params": dict(params), "limit": limit, "format": "json"})
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{base}/api/query", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=MAX_EXECUTION_S + 30) as response:
            answer: dict[str, Any] = orjson.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        raise QueryFailed(_error_message(exc.read(), exc.code)) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise QueryFailed(
            f"no running worker at {base} ({getattr(exc, 'reason', exc)}): start one with "
            "`make run` / `logwarden run`, or set LOGWARDEN_CLICKHOUSE_URL to query a "
            "ClickHouse server directly") from None


def _error_message(raw: bytes, status: int) -> str:
    try:
        error = orjson.loads(raw)["error"]
        return f"{error['message']} ({error['code']}, HTTP {status})"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"HTTP {status}: {raw[:500].decode(errors='replace')}"


def query_direct(s: Settings, sql: str, params: Mapping[str, Any], limit: int
                 ) -> dict[str, Any]:
    """Run the query on the ClickHouse server of ``s.clickhouse.url``, with the API's checks."""
    client = connect(s.clickhouse, s.data_dir)
    try:
        return run_read_query(client, sql, params, limit=limit).as_json()
    except ApiError as exc:
        raise QueryFailed(f"{exc.message} ({exc.code})") from None
    except DatabaseError as exc:
        raise QueryFailed(str(exc)) from None
    finally:
        client.close()


def render(answer: Mapping[str, Any], fmt: str, out: TextIO) -> None:
    """Print the rows as a rich table, CSV with a header, or JSON lines."""
    columns, rows = answer["columns"], answer["rows"]
    if fmt == "jsonl":
        out.write(to_jsonl(columns, rows))
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell_text(v, "") for v in row] for row in rows)
    else:
        table = Table(*columns, show_lines=False, highlight=False)
        for row in rows:
            table.add_row(*(_cell_text(v, "NULL") for v in row))
        Console(file=out, soft_wrap=False).print(table)


def _cell_text(value: Any, null: str) -> str:
    if value is None:
        return null
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)


def register(cli: typer.Typer) -> None:
    """Attach ``logwarden query``."""

    @cli.command("query")
    def query(
        sql: str = typer.Argument(..., help='The SQL (one read-only statement), or "-" to '
                                            "read it from stdin. Qualify tables: logwarden.logs."),
        fmt: str = typer.Option("table", "--format", "-f",
                                help="table (default; a rich table), csv (with a header) "
                                     "or jsonl (one JSON object per row)."),
        param: list[str] = typer.Option([], "--param", "-p",
                                        help="A query parameter name=value for a {name:Type} "
                                             "placeholder; repeat for more."),
        limit: int = typer.Option(DEFAULT_LIMIT, "--limit", "-n", min=1,
                                  help="At most this many rows (the API caps it at 1,000,000)."),
        api: str | None = typer.Option(None, "--api",
                                       help="Worker API base URL (default: http://"
                                            "<stream.web_host>:<stream.web_port>)."),
        token: str | None = typer.Option(None, "--token",
                                         help="Bearer token for the API (default: "
                                              "LOGWARDEN_TOKEN, else the token file "
                                              "<data dir>/cli_token, made for the local "
                                              "user as a responder token if missing and "
                                              "--api is not given)."),
    ) -> None:
        """Run a read-only SQL query (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) and print the
        rows: through the running worker's API in embedded mode, else on the ClickHouse
        server of LOGWARDEN_CLICKHOUSE_URL."""
        if fmt not in FORMATS:
            raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
        try:
            params = parse_params(param)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--param") from None
        text = sys.stdin.read() if sql == "-" else sql
        s = settings()
        direct = api is None and s.clickhouse.url.startswith(("http://", "https://"))
        err = Console(stderr=True, soft_wrap=True)
        try:
            answer = (query_direct(s, text, params, limit) if direct
                      else query_api(api_url(s, api), text, params, limit,
                                     # the local worker's: the local user may have a token
                                     cli_token(s, token) if api is None
                                     else s.api_token(token)))
        except QueryFailed as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from None
        render(answer, fmt, sys.stdout)
        n = answer["row_count"]
        note = f"{n:,} row{'' if n == 1 else 's'} in {answer['elapsed_ms']:.0f} ms"
        if answer.get("truncated"):
            note += f"; stopped at --limit {limit}"
        err.print(note, style="dim", highlight=False)
