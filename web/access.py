"""Who may read what, and the audit of what they did through the API.

Roles (``web.auth.ROLES``): viewer < responder < security < admin. Raw security logs
(lines categorised ``security``, and events carrying a ``user`` action: logins, password
resets, role changes) are readable by the security and admin roles only: ``/api/logs``
leaves them out for the others, and their SQL runs with ClickHouse's
``additional_table_filters`` on the logs table, so no query can reach those rows. The
audit table itself is readable by admins only.

Every API write (POST, PUT, PATCH, DELETE: acknowledgements, silences, feedback, Slack and
SMS actions) and every query (``POST /api/query``, ``GET /api/logs``) is audited: who
(token name and role), what (method and route), on what, the SQL or body, and the HTTP
status, appended to the hash-chained audit table (``audit.trail``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from audit.trail import AuditTrail
from sinks.clickhouse.queries.telemetry import SECURITY_LOGS
from web.auth import ANONYMOUS, AuthError, AuthPolicy, Principal
from web.http import ApiError

log = structlog.get_logger(__name__)

SECURITY_ROLE = "security"
AUDITED_READS = frozenset({"/api/query", "/api/logs"})
# A page polling the same log search every few seconds is one access: the same read by the
# same actor is recorded once per this many seconds.
REPEAT_READ_S = 60.0
# Bodies not kept in the audit detail: signed webhooks carry phone numbers and payloads.
_NO_BODY = frozenset({"/api/slack/interactions", "/api/twilio/sms"})
_ACTIONS = {"/api/query": "query", "/api/logs": "logs.read",
            "/api/alerts/{ref}/{action}": "alert.{action}", "/api/silences": "silence.create",
            "/api/silences/{id}": "silence.expire", "/api/feedback": "feedback",
            "/api/slack/interactions": "alert.slack_action", "/api/twilio/sms": "alert.sms_action"}


def can_read_security(who: Principal) -> bool:
    """True if ``who`` may read raw security logs."""
    return who.allows(SECURITY_ROLE)


def query_filters(who: Principal, database: str) -> dict[str, Any]:
    """ClickHouse settings that hide what ``who`` may not read from any SQL it runs."""
    filters = {}
    if not can_read_security(who):
        filters[f"{database}.logs"] = f"NOT {SECURITY_LOGS}"
    if not who.allows("admin"):
        filters[f"{database}.audit"] = "0"
    if not filters:
        return {}
    text = ", ".join(f"'{k}': '{v.replace(chr(39), chr(92) + chr(39))}'"
                     for k, v in filters.items())
    return {"additional_table_filters": "{" + text + "}"}


# FROM/JOIN a table function (merge(), cluster(), view() ...): such reads escape the table
# filters above, so roles that have filters may not use them. Generators that read no table
# (numbers(), zeros(), values() ...) stay allowed.
_GENERATORS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series",
                         "generateseries", "generaterandom", "values", "null"})
_TABLE_FUNCTION = re.compile(
    r"(?i)\b(?:from|join)\s+((?:[^\s(),`]+|`[^`]*`)\s*)\(|\b(merge|cluster\w*|remote\w*|view\w*|"
    r"loop|mergeTree\w+)\s*\(")


def check_filtered_sql(code: str, who: Principal) -> None:
    """Refuse a table function in the SQL of a role whose reads are filtered; ``code`` is
    the statement with its quotes and comments blanked (``web.api``)."""
    if who.allows("admin"):
        return
    for found in _TABLE_FUNCTION.finditer(code):
        name = (found[1] or found[2]).strip()
        if name.strip("`").lower() in _GENERATORS:
            continue
        raise ApiError(403, "forbidden", f"table function {name}() is not allowed for "
                       f"role {who.role or 'anonymous'}: it would read around the row "
                       "filters of that role (security logs, audit)")


def action_name(request: web.Request) -> str:
    """``alert.ack``, ``silence.create``, ``query`` ... or ``METHOD /route``."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    name = _ACTIONS.get(route)
    if name is None:
        return f"{request.method} {route}"
    return name.format(**request.match_info) if "{" in name else name


async def _detail(request: web.Request) -> str:
    if request.path in _NO_BODY or not request.body_exists:
        return request.query_string
    try:
        body = await request.read()
    except Exception:  # a body too large or cut: its status says so
        return ""
    if request.path == "/api/query":
        try:
            return str(orjson.loads(body).get("sql", ""))
        except (orjson.JSONDecodeError, AttributeError):
            pass
    return body.decode("utf-8", "replace")


def audit_middleware(trail: AuditTrail, policy: Callable[[], AuthPolicy],
                     run: Callable[[Callable[[], Any]], Awaitable[Any]]) -> Any:
    """Audit every write and query that reaches the API, with its outcome; ``run`` runs
    the insert where the store may be used (the API's store thread)."""

    recent: dict[tuple[str, str, str], float] = {}

    def repeated(who: Principal, request: web.Request) -> bool:
        if request.method != "GET":
            return False
        now = time.monotonic()
        key = (who.name, request.path, request.query_string)
        if now - recent.get(key, -REPEAT_READ_S) < REPEAT_READ_S:
            return True
        if len(recent) > 10_000:
            recent.clear()
        recent[key] = now
        return False

    async def record(request: web.Request, status: int) -> None:
        try:
            who = policy().principal(request)
        except AuthError:
            who = Principal("unknown-token", "")
        if who is ANONYMOUS and request.path in _NO_BODY:
            who = Principal(request.path.rsplit("/", 2)[1], "webhook")
        if repeated(who, request):
            return
        detail = request.query_string if request.method == "GET" else await _detail(request)
        action, target = action_name(request), request.path
        await run(lambda: trail.record(who.name, who.role, action, target, detail,
                                       str(status)))

    @web.middleware
    async def audited(request: web.Request, handler: Callable[[web.Request], Any]
                      ) -> web.StreamResponse:
        if request.method in ("GET", "HEAD", "OPTIONS") and request.path not in AUDITED_READS:
            response: web.StreamResponse = await handler(request)
            return response
        try:
            response = await handler(request)
        except (web.HTTPException, AuthError) as exc:
            await record(request, exc.status)
            raise
        except Exception as exc:
            await record(request, int(getattr(exc, "status", 500)))
            raise
        await record(request, response.status)
        return response

    return audited
