"""Dashboards: server-rendered pages (jinja2) whose small script polls the JSON API.

plotly.js is served from the installed ``plotly`` package, so the pages work offline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import jinja2
import plotly
from aiohttp import web

from web.auth import require
from web.routes_api import CTX_KEY

HERE = Path(__file__).parent
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC = {"app.js": (HERE / "static" / "app.js", "application/javascript"),
          "style.css": (HERE / "static" / "style.css", "text/css"),
          "plotly.min.js": (PLOTLY_JS, "application/javascript")}
PAGES = {"fleet": "Fleet overview", "logs": "Log explorer", "alerts": "Alerts and on-call",
         "intelligence": "Intelligence", "pipeline": "Pipeline", "security": "Security"}
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined)


def render_page(page: str, title: str, refresh_s: float, query: dict[str, str],
                data: dict[str, str] | None = None) -> str:
    """The HTML of one dashboard page (the data arrives by polling the API)."""
    return _env.get_template(f"{page}.html").render(
        page=page, title=title, refresh_ms=int(refresh_s * 1000), q=query, data=data or {})


def _page(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        require(request, "viewer")
        html = render_page(name, PAGES[name], request.app[CTX_KEY].refresh_s,
                           dict(request.query))
        return web.Response(text=html, content_type="text/html")

    return handler


async def service_page(request: web.Request) -> web.Response:
    """One service: routes, call graph, templates, changes on the time axis."""
    require(request, "viewer")
    name = request.match_info["service"][:200]
    html = render_page("service", f"Service {name}", request.app[CTX_KEY].refresh_s,
                       dict(request.query), {"service": name})
    return web.Response(text=html, content_type="text/html")


async def static_file(request: web.Request) -> web.StreamResponse:
    """app.js, style.css and plotly.min.js (cached for an hour)."""
    entry = STATIC.get(request.match_info["name"])
    if entry is None:
        raise web.HTTPNotFound()
    path, kind = entry
    return web.FileResponse(path, headers={"Content-Type": kind,
                                           "Cache-Control": "max-age=3600"})


def add_page_routes(app: web.Application) -> None:
    """Register the dashboards and their static files."""
    app.router.add_get("/", _page("fleet"))
    for name in ("logs", "alerts", "intelligence", "pipeline", "security"):
        app.router.add_get(f"/{name}", _page(name))
    app.router.add_get("/service/{service}", service_page)
    app.router.add_get("/static/{name}", static_file)
