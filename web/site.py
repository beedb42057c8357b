"""Everything the API process serves besides ``/api/query``: JSON API, OpenAPI, dashboards."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from alerting.oncall import Schedule
from sinks.clickhouse.client import Store
from web.auth import AuthPolicy, TokenStore
from web.health import HealthProvider
from web.incidents import add_incident_routes
from web.routes_api import WebContext, add_api_routes
from web.routes_pages import add_page_routes
from web.routes_security import add_security_routes
from web.settings import WebSettings


@dataclass(frozen=True)
class WebOptions:
    """How the web part is configured in this process (worker or ``logwarden api``)."""

    settings: WebSettings = field(default_factory=WebSettings)
    tokens_path: Path | None = None
    schedules: Callable[[], list[Schedule]] = list
    publish: Callable[[str, bytes, str], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def web_policy(options: WebOptions | None) -> AuthPolicy:
    """Who may do what: hashed tokens from the token file, reads open unless configured."""
    opts = options or WebOptions()
    tokens = TokenStore(opts.tokens_path) if opts.tokens_path else None
    return AuthPolicy(tokens, opts.settings.read_requires_token)


def add_web_routes(app: web.Application, store: Store, database: str,
                   run: Callable[[Callable[[], Any]], Awaitable[Any]],
                   health: HealthProvider | None, options: WebOptions | None,
                   policy: AuthPolicy) -> None:
    """Register the JSON API, OpenAPI and dashboards (routes already there are kept)."""
    opts = options or WebOptions()
    ctx = WebContext(store, database, run, health, opts.schedules, opts.publish,
                     opts.settings.refresh_s)
    add_api_routes(app, ctx, policy)
    add_security_routes(app)
    add_page_routes(app)
    add_incident_routes(app)
