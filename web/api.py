"""The worker's HTTP API: read-only SQL over the store, pipeline health, Prometheus metrics.

In embedded mode chDB lets one process open the data directory, so every other reader
(``logwarden query``, reports) asks the running worker through ``POST /api/query``.

Trust boundary: every request must name an allowed ``Host`` (loopback names plus
``LOGWARDEN_WEB_ALLOWED_HOSTS``; else 421, against DNS rebinding), JSON endpoints take
only ``Content-Type: application/json`` (else 415: no CORS-simple form posts), and SQL
needs a ``query_role`` token (responder by default) and runs with ClickHouse limits off the
ingest path (``web.query_runner``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import structlog
from aiohttp import web
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from prometheus_client import CollectorRegistry

from audit.trail import AuditTrail
from sinks.clickhouse.client import Store
from web.access import audit_middleware, check_filtered_sql, query_filters
from web.alerts import AlertsApi
from web.health import HealthProvider, health_handler, metrics_handler
from web.http import ApiError, dumps, error_response, json_safe
from web.query_runner import QueryLimits, QueryRunner
from web.settings import WebSettings
from web.site import WebOptions, add_web_routes, web_policy

__all__ = ["QueryResult", "check_read_only", "create_app",
           "run_read_query", "serve", "to_csv", "to_jsonl"]

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 1_000_000
MAX_EXECUTION_S = 60
MAX_BODY_BYTES = 1 << 20  # a query body; larger is a 413
READ_VERBS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})
FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8",
           "jsonl": "application/x-ndjson"}
_TIMEOUT_CODES = {159, 160}  # TIMEOUT_EXCEEDED, TOO_SLOW
_MEMORY_CODES = {241}  # MEMORY_LIMIT_EXCEEDED
# Webhooks that carry their own signature and a form or Slack's encoding, not JSON.
FORM_ENDPOINTS = frozenset({"/api/slack/interactions", "/api/twilio/sms"})
# What readonly=1 lets through or handles badly: INTO OUTFILE writes a file, and the chDB
# client runs anything with INSERT INTO (even after WITH) with SET readonly=1 ... SET back,
# whose restore fails under readonly and leaves the shared session read-only for the writer.
_WRITE_CLAUSE = re.compile(r"\b(INTO\s+OUTFILE|INSERT\s+INTO)\b", re.IGNORECASE)
T = TypeVar("T")
log = structlog.get_logger(__name__)


def _blank_quotes_and_comments(sql: str) -> str:
    """``sql`` of the same length with string/identifier contents and comments as spaces.

    Errs towards hiding less than ClickHouse does (``#`` and nested comments stay visible),
    so a hidden ``;`` can only make us reject a query, never let a second one through.
    """
    out, i, n = list(sql), 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" else 1
            end = min(j, n - 1)
            out[i + 1:end] = " " * (end - i - 1)
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = " " * (j - i)
            i = j
        else:
            i += 1
    return "".join(out)


def check_read_only(sql: str) -> str:
    """``sql`` without trailing ``;`` if it is one read-only statement, else ApiError(400).

    The real guard is ClickHouse's ``readonly=1`` set on every query; this gives a clear
    message first, and stops ``INTO OUTFILE`` and ``WITH ... INSERT INTO`` (see _WRITE_CLAUSE).
    """
    code = _blank_quotes_and_comments(sql)
    first = code.find(";")
    if first >= 0:
        if code[first:].strip(" \t\r\n;"):
            raise ApiError(400, "multiple_statements", "send one statement per query")
        sql, code = sql[:first], code[:first]
    words = code.lstrip(" \t\r\n(").split(None, 1)
    if not words:
        raise ApiError(400, "empty_sql", "the query is empty")
    verb = re.split(r"\W", words[0], maxsplit=1)[0].upper()
    if verb not in READ_VERBS:
        raise ApiError(400, "not_read_only", f"{verb or words[0][:20]!r} is not allowed: only "
                       "read-only SELECT, WITH, SHOW, DESCRIBE and EXPLAIN queries are")
    if found := _WRITE_CLAUSE.search(code):
        raise ApiError(400, "not_read_only", f"{' '.join(found[1].upper().split())} is not "
                       "allowed")
    return sql.rstrip()


@dataclass(frozen=True)
class QueryResult:
    """Rows of a read query as the store returned them; ``truncated`` when ``limit`` cut them."""

    columns: list[str]
    rows: Sequence[Sequence[Any]]
    truncated: bool
    elapsed_ms: float

    def as_json(self) -> dict[str, Any]:
        """The ``/api/query`` JSON body (rows made JSON-safe)."""
        return {"columns": self.columns, "rows": json_safe(self.rows),
                "row_count": len(self.rows), "truncated": self.truncated,
                "elapsed_ms": round(self.elapsed_ms, 3)}

    def encode(self, fmt: str) -> bytes:
        """The body in ``fmt`` (json, csv, jsonl); CPU-bound, so not on the event loop."""
        if fmt == "csv":
            return to_csv(self.columns, self.rows).encode()
        if fmt == "jsonl":
            return to_jsonl(self.columns, self.rows).encode()
        return dumps({"columns": self.columns, "rows": self.rows, "row_count": len(self.rows),
                      "truncated": self.truncated, "elapsed_ms": round(self.elapsed_ms, 3)})


def run_read_query(store: Store, sql: str, params: Mapping[str, Any] | None = None, *,
                   limit: int = DEFAULT_LIMIT, max_execution_s: int = MAX_EXECUTION_S,
                   limits: QueryLimits | None = None,
                   extra_settings: Mapping[str, Any] | None = None) -> QueryResult:
    """Check and run one read-only query with ClickHouse limits; blocking (run in a thread).

    ``limits`` (time, memory, threads) default to ``QueryLimits`` with ``max_execution_s``;
    ``extra_settings`` (``web.access.query_filters``: rows a role may not read) go first."""
    statement = check_read_only(sql)
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "bad_limit", f"limit must be between 1 and {MAX_LIMIT}")
    # "break" stops reading after about limit+1 rows (whole blocks), we cut the exact count
    # here; readonly=1 goes last (ClickHouse refuses later settings once it is on).
    settings = {**(extra_settings or {}),
                **(limits or QueryLimits(max_execution_s=max_execution_s)).settings(limit + 1)}
    started = time.perf_counter()
    result = store.query(statement, parameters=dict(params or {}), settings=settings)
    elapsed_ms = (time.perf_counter() - started) * 1000
    rows = result.result_rows
    return QueryResult(list(result.column_names), rows[:limit], len(rows) > limit, elapsed_ms)


def to_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV with a header line; nested values as JSON text, null as an empty field."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([dumps(v).decode() if isinstance(v, list | tuple | dict) else
                         json_safe(v) for v in row])
    return buf.getvalue()


def to_jsonl(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """One JSON object per row, keyed by column name."""
    return "".join(dumps(dict(zip(columns, row, strict=True))).decode() + "\n" for row in rows)


def _database_error(exc: DatabaseError) -> ApiError:
    """A ClickHouse error as an HTTP error: the query's fault is a 400 with CH's message."""
    if isinstance(exc, OperationalError):
        return ApiError(503, "store_unavailable", f"ClickHouse is unavailable: {exc}")
    ch_code = getattr(exc, "code", None)
    if ch_code in _TIMEOUT_CODES:
        return ApiError(408, "query_timeout", str(exc))
    if ch_code in _MEMORY_CODES:
        return ApiError(400, "query_memory_limit", str(exc))
    return ApiError(400, "clickhouse_error", str(exc))


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Any]
                  ) -> web.StreamResponse:
    """Every failure as a JSON error with the right status."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:  # 404, 405, 413 raised by aiohttp itself
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        message = {404: f"no such endpoint: {request.path}",
                   405: f"{request.method} is not allowed on {request.path}"}.get(
            exc.status, exc.text or exc.reason)
        response = error_response(exc.status, code, message)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:
        log.exception("api_request_failed", method=request.method, path=request.path)
        return error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")


def _guard(settings: WebSettings) -> Callable[..., Any]:
    """Refuse a request for another Host (421) or a JSON endpoint sent as anything but JSON
    (415) before any handler runs."""

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Any]
                    ) -> web.StreamResponse:
        host = request.headers.get("Host")
        name = request.url.host if host else None
        if not name or not settings.host_allowed(name):
            raise ApiError(421, "host_not_allowed",
                           f"this API does not answer to Host {host!r}: add it to "
                           "LOGWARDEN_WEB_ALLOWED_HOSTS")
        if (request.method in ("POST", "PUT", "PATCH") and request.path.startswith("/api/")
                and request.path not in FORM_ENDPOINTS and request.body_exists
                and request.content_type != "application/json"):
            raise ApiError(415, "unsupported_media_type",
                           f"send the body as Content-Type: application/json, not "
                           f"{request.content_type!r}")
        response: web.StreamResponse = await handler(request)
        return response

    return guard


async def _parse_query_body(request: web.Request) -> tuple[str, dict[str, Any], str, int]:
    if request.content_type != "application/json":  # also without a body
        raise ApiError(415, "unsupported_media_type",
                       "send the query as Content-Type: application/json")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "bad_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
        raise ApiError(400, "bad_request", 'send {"sql": "...", "params": {...}}')
    params, fmt, limit = body.get("params") or {}, body.get("format", "json"), body.get("limit")
    if not isinstance(params, dict):
        raise ApiError(400, "bad_request", "params must be an object")
    if fmt not in FORMATS:
        raise ApiError(400, "bad_format", f"format must be one of {', '.join(FORMATS)}")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ApiError(400, "bad_limit", "limit must be a positive integer")
    return body["sql"], params, fmt, min(limit, MAX_LIMIT)


def create_app(store: Store, *, database: str,
               executor_or_lock: Executor | AbstractContextManager[Any],
               health_provider: HealthProvider, metrics_registry: CollectorRegistry,
               max_execution_s: int | None = None,
               alerts: AlertsApi | None = None,
               web_options: WebOptions | None = None,
               query_connect: Callable[[], Store] | None = None,
               audit: AuditTrail | None = None) -> web.Application:
    """The API application; dashboard reads run one at a time via ``executor_or_lock``.

    Pass the single-thread executor (or the lock) the ingest writer also uses, since
    chDB's client must not be used from two threads at once. The client's session (and so
    its current database) is shared with the writer and never switched: queries qualify
    tables, and ``database`` only names the pipeline's database in error hints.

    ``POST /api/query`` runs on a ``QueryRunner`` with clients from ``query_connect``
    (off the writer's store and thread); without it, on ``store`` like the dashboards.
    Its limits come from ``web_options.settings`` (``max_execution_s`` overrides the time),
    and the rows its token's role may not read are filtered out (``web.access``).
    ``audit``: every write and query is appended to the audit trail.
    """
    opts = web_options or WebOptions()
    limits = QueryLimits.from_settings(opts.settings)
    if max_execution_s is not None:
        limits = QueryLimits(max_execution_s, limits.max_memory_bytes, limits.max_threads)
    runner = (QueryRunner(query_connect, opts.settings.query_concurrency,
                          opts.settings.query_queue) if query_connect else None)

    async def in_store_thread(fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        if isinstance(executor_or_lock, Executor):
            return await loop.run_in_executor(executor_or_lock, fn)
        lock = executor_or_lock

        def locked() -> T:
            with lock:
                return fn()

        return await loop.run_in_executor(None, locked)

    async def run_query(sql: str, params: dict[str, Any], limit: int,
                        extra: dict[str, Any]) -> QueryResult:
        if runner is not None:
            return await runner.run(lambda client: run_read_query(
                client, sql, params, limit=limit, limits=limits, extra_settings=extra))
        return await in_store_thread(lambda: run_read_query(
            store, sql, params, limit=limit, limits=limits, extra_settings=extra))

    async def query(request: web.Request) -> web.Response:
        who = policy.require(request, opts.settings.query_role)
        sql, params, fmt, limit = await _parse_query_body(request)
        check_read_only(sql)  # refuse before queueing
        filters = query_filters(who, database)
        if filters:
            check_filtered_sql(_blank_quotes_and_comments(sql), who)
        try:
            result = await run_query(sql, params, limit, filters)
        except DatabaseError as exc:
            hint = (f" (tables live in database {database!r}: write {database}.<table>)"
                    if getattr(exc, "code", None) in (60, 81) else "")
            err = _database_error(exc)
            raise ApiError(err.status, err.code, err.message + hint) from exc
        # Encoding a million rows takes seconds: off the loop, and off the store thread.
        body = await asyncio.get_running_loop().run_in_executor(None, result.encode, fmt)
        headers = {"Content-Type": FORMATS[fmt], "X-Row-Count": str(len(result.rows)),
                   "X-Truncated": str(result.truncated).lower()}
        return web.Response(body=body, headers=headers)

    async def health(request: web.Request) -> web.Response:
        return await health_handler(health_provider)

    async def metrics(request: web.Request) -> web.Response:
        return metrics_handler(metrics_registry)

    middlewares = [_errors, _guard(opts.settings)]
    if audit is not None:
        middlewares.append(audit_middleware(audit, lambda: policy, in_store_thread))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    if runner is not None:
        async def close_runner(_: web.Application) -> None:
            runner.close()

        app.on_cleanup.append(close_runner)
    app.router.add_post("/api/query", query)
    app.router.add_get("/api/health", health)
    app.router.add_get("/metrics", metrics)
    policy = web_policy(web_options)
    if alerts is not None:
        def guard(request: web.Request) -> None:
            policy.require(request, "viewer" if request.method == "GET" else "responder")

        alerts.register(app, guard)
    add_web_routes(app, store, database, in_store_thread, health_provider, web_options, policy)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start ``app`` on the running loop; stop it with ``await runner.cleanup()``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
