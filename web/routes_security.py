"""``GET /api/security``: what the security page shows, in one read.

Authentication failures by address and by user, (user, address) pairs seen for the first
time, role and permission changes, and the open security alerts (``category: security``),
over the request's time range (``range``/``since``/``until``, as every list of the API).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sinks.clickhouse.client import Store
from sinks.clickhouse.queries import security as security_q
from web import params as p
from web.auth import require
from web.routes_api import CTX_KEY, json_response

MAX_ROWS = 200


async def security(request: web.Request) -> web.Response:
    """The security page's data for the request's time range."""
    require(request, "viewer")
    ctx = request.app[CTX_KEY]
    span = await ctx.span(request)
    limit = p.integer(request.query, "limit", 50, 1, MAX_ROWS)

    def read(store: Store, db: str) -> dict[str, Any]:
        return {
            "since": span.since, "until": span.until,
            "failures_by_address": security_q.failures_by_address(store, db, span, limit),
            "failures_by_user": security_q.failures_by_user(store, db, span, limit),
            "new_addresses": security_q.new_addresses(store, db, span, limit=limit),
            "privilege_changes": security_q.privilege_changes(store, db, span, limit),
            "alerts": security_q.open_security_alerts(store, db, MAX_ROWS),
        }

    return json_response(await ctx.read(read))


def add_security_routes(app: web.Application) -> None:
    """Register ``/api/security`` (after ``add_api_routes``, which sets the context)."""
    app.router.add_get("/api/security", security)
