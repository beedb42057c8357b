"""The JSON API: services, metrics, logs, templates, anomalies, alerts, on-call, pipeline.

Every list is paginated (``limit`` ≤ 1000, ``offset``), every filter is bound as a
ClickHouse parameter by ``sinks.clickhouse.web_queries``; reads need a viewer token only
when ``read_requires_token`` is set, writes always need a responder or admin token.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import ValidationError

from alerting.oncall import Schedule, who_is_on_call
from schemas.changes import FEEDBACK_TARGETS, Feedback
from schemas.topics import FEEDBACK
from sinks.clickhouse.client import Store
from sinks.clickhouse.queries import actions as actions_q
from sinks.clickhouse.queries import alerts as alerts_q
from sinks.clickhouse.queries import base as base_q
from sinks.clickhouse.queries import pipeline as pipeline_q
from sinks.clickhouse.queries import quality as quality_q
from sinks.clickhouse.queries import telemetry as telemetry_q
from web import params as p
from web.access import can_read_security
from web.auth import POLICY_KEY, AuthPolicy, require
from web.health import HealthProvider
from web.http import ApiError, dumps

T = TypeVar("T")
RunInStore = Callable[[Callable[[], T]], Awaitable[T]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class WebContext:
    """What the handlers need: the store (one call at a time via ``run``) and the options."""

    store: Store
    db: str
    run: Callable[[Callable[[], Any]], Awaitable[Any]]
    health: HealthProvider | None = None
    schedules: Callable[[], list[Schedule]] = list
    publish: Callable[[str, bytes, str], None] | None = None  # topic, value, key
    refresh_s: float = 3.0
    started: float = field(default_factory=time.time)

    async def read(self, fn: Callable[[Store, str], T]) -> T:
        """Run a typed read in the store's thread."""
        result: T = await self.run(lambda: fn(self.store, self.db))
        return result

    async def span(self, request: web.Request) -> base_q.Span:
        """The request's time range, defaulting to the hour before the newest data."""
        q = request.query
        latest = None if q.get("until") else await self.read(telemetry_q.latest_time)
        return p.span(q, latest)

    async def health_report(self) -> dict[str, Any]:
        """The worker's own health document (lag, writers), or {} in the API process."""
        if self.health is None:
            return {}
        report = self.health()
        if inspect.isawaitable(report):
            report = await report
        return dict(report)


CTX_KEY: web.AppKey[WebContext] = web.AppKey("web_context", WebContext)


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON response written with the API's encoder (datetimes as ISO, NaN as null)."""
    return web.Response(body=dumps(body), status=status, content_type="application/json")


def _ctx(request: web.Request) -> WebContext:
    return request.app[CTX_KEY]


async def list_services(request: web.Request) -> web.Response:
    ctx, span = _ctx(request), await _ctx(request).span(request)
    rows = await ctx.read(lambda s, db: telemetry_q.services(s, db, span))
    open_alerts = await ctx.read(alerts_q.open_alert_counts)
    for r in rows:
        r["open_alerts"] = open_alerts.get(r["service"], 0)
    return json_response({"items": rows, "since": span.since, "until": span.until})


async def service_detail(request: web.Request) -> web.Response:
    ctx, span = _ctx(request), await _ctx(request).span(request)
    name = p.text(request.match_info, "service") or ""
    first = base_q.Page(50)
    body = {
        "service": name, "since": span.since, "until": span.until,
        "routes": await ctx.read(lambda s, db: telemetry_q.routes(s, db, span, name)),
        "dependencies": await ctx.read(lambda s, db: telemetry_q.dependencies(s, db, span, name)),
        "changes": (await ctx.read(lambda s, db: telemetry_q.changes(s, db, span, first,
                                                              service=name)))["items"],
        "template_events": (await ctx.read(lambda s, db: telemetry_q.template_events(
            s, db, span, first, service=name)))["items"],
        "top_templates": (await ctx.read(lambda s, db: telemetry_q.logs_by_template(
            s, db, span, base_q.Page(20), service=name)))["items"],
    }
    return json_response(body)


async def metrics(request: web.Request) -> web.Response:
    ctx, span = _ctx(request), await _ctx(request).span(request)
    service = p.text(request.query, "service")
    rows = await ctx.read(lambda s, db: telemetry_q.service_series(s, db, span, service))
    return json_response({"items": rows, "window_s": 60, "since": span.since,
                          "until": span.until})


async def logs(request: web.Request) -> web.Response:
    ctx, span, q = _ctx(request), await _ctx(request).span(request), request.query
    page = p.page(q)
    service, level, text = p.text(q, "service"), p.choice(q, "level", p.LEVELS), p.text(q, "q")
    hide = not can_read_security(require(request, "viewer"))  # raw security logs: by role
    if q.get("group") == "template":
        return json_response(await ctx.read(lambda s, db: telemetry_q.logs_by_template(
            s, db, span, page, service=service, level=level, text=text, hide_security=hide)))
    if q.get("group") not in (None, ""):
        raise ApiError(400, "bad_parameter", "group must be 'template' or absent")
    template_id = p.text(q, "template_id")
    return json_response(await ctx.read(lambda s, db: telemetry_q.search_logs(
        s, db, span, page, service=service, level=level, template_id=template_id, text=text,
        hide_security=hide)))


async def templates(request: web.Request) -> web.Response:
    ctx, q = _ctx(request), request.query
    page, service = p.page(q), p.text(q, "service")
    return json_response(await ctx.read(lambda s, db: telemetry_q.templates(s, db, page,
                                                                     service=service)))


async def template_events(request: web.Request) -> web.Response:
    ctx, span, q = _ctx(request), await _ctx(request).span(request), request.query
    page, service, kind = p.page(q), p.text(q, "service"), p.text(q, "kind")
    return json_response(await ctx.read(lambda s, db: telemetry_q.template_events(
        s, db, span, page, service=service, kind=kind)))


async def anomalies(request: web.Request) -> web.Response:
    ctx, span, q = _ctx(request), await _ctx(request).span(request), request.query
    page, service, variant = p.page(q), p.text(q, "service"), p.text(q, "variant")
    return json_response(await ctx.read(lambda s, db: telemetry_q.anomalies(
        s, db, span, page, service=service, variant=variant)))


async def changes(request: web.Request) -> web.Response:
    ctx, span, q = _ctx(request), await _ctx(request).span(request), request.query
    page, service = p.page(q), p.text(q, "service")
    return json_response(await ctx.read(lambda s, db: telemetry_q.changes(s, db, span, page,
                                                                   service=service)))


async def alerts(request: web.Request) -> web.Response:
    ctx, q = _ctx(request), request.query
    page = p.page(q)
    state = p.choice(q, "state", ("firing", "acknowledged", "resolved"))
    service = p.text(q, "service")
    return json_response(await ctx.read(lambda s, db: alerts_q.alerts(s, db, page, state=state,
                                                                  service=service)))


async def silences(request: web.Request) -> web.Response:
    ctx, page = _ctx(request), p.page(request.query)
    active = request.query.get("all") not in ("1", "true")
    return json_response(await ctx.read(lambda s, db: alerts_q.silences(s, db, page,
                                                                    active_only=active)))


async def notifications(request: web.Request) -> web.Response:
    ctx, span, q = _ctx(request), await _ctx(request).span(request), request.query
    page, fp = p.page(q), p.text(q, "fingerprint")
    return json_response(await ctx.read(lambda s, db: alerts_q.notifications(s, db, span, page,
                                                                         fingerprint=fp)))


async def list_actions(request: web.Request) -> web.Response:
    ctx, q = _ctx(request), request.query
    page = p.page(q)
    incident, fp = p.text(q, "incident_id"), p.text(q, "fingerprint")
    outcome = p.text(q, "outcome")
    return json_response(await ctx.read(lambda s, db: actions_q.actions(
        s, db, page, incident_id=incident, fingerprint=fp, outcome=outcome)))


async def oncall(request: web.Request) -> web.Response:
    at = p.timestamp(request.query["at"], "at") if request.query.get("at") \
        else datetime.now(UTC)
    items = [{"schedule": s.name, "timezone": s.tz, "on_call": who_is_on_call(s, at)}
             for s in _ctx(request).schedules()]
    return json_response({"at": at, "items": items})


async def list_feedback(request: web.Request) -> web.Response:
    ctx, span, q = _ctx(request), await _ctx(request).span(request), request.query
    page = p.page(q)
    kind = p.choice(q, "target_kind", FEEDBACK_TARGETS)
    return json_response(await ctx.read(lambda s, db: quality_q.feedback(s, db, span, page,
                                                                    target_kind=kind)))


async def post_feedback(request: web.Request) -> web.Response:
    who = require(request, "responder")
    ctx = _ctx(request)
    if ctx.publish is None:
        raise ApiError(503, "no_producer", "this process cannot publish feedback; send it "
                       "to the worker's API or to the logwarden.feedback.v1 topic")
    try:
        raw = orjson.loads(await request.read())
        if not isinstance(raw, dict):
            raise ValueError("the body must be a JSON object")
        raw.setdefault("ts", int(time.time() * 1000))
        raw.setdefault("event_id", uuid.uuid4().hex)
        raw["user"] = who.name
        fb = Feedback.model_validate(raw)
    except (orjson.JSONDecodeError, ValueError, ValidationError) as exc:
        raise ApiError(400, "bad_request", f"invalid feedback: {exc}") from None
    ctx.publish(FEEDBACK, fb.model_dump_json().encode(), fb.target_id)
    return json_response({"accepted": True, "event_id": fb.event_id}, status=202)


async def intelligence(request: web.Request) -> web.Response:
    ctx, span = _ctx(request), await _ctx(request).span(request)
    return json_response({
        "categorisation": await ctx.read(lambda s, db: quality_q.categorisation_accuracy(s, db,
                                                                                   span)),
        "detectors": await ctx.read(quality_q.detector_quality),
        "detectors_by_day": await ctx.read(lambda s, db: quality_q.detector_quality_by_day(s, db,
                                                                                    span)),
        "feedback_volume": await ctx.read(lambda s, db: quality_q.feedback_volume(s, db, span)),
    })


async def pipeline(request: web.Request) -> web.Response:
    ctx, q = _ctx(request), request.query
    now = datetime.now(UTC)
    span = p.span(q, now)  # ingest time is wall-clock time
    return json_response({
        "health": await ctx.health_report(),
        "throughput": await ctx.read(lambda s, db: pipeline_q.throughput(s, db, span)),
        "dead_letters": await ctx.read(lambda s, db: pipeline_q.dead_letter_counts(s, db, span)),
    })


# (method, path, handler, summary, query parameters, role). OpenAPI is built from this.
ROUTES: list[tuple[str, str, Handler, str, tuple[str, ...], str]] = [
    ("GET", "/api/services", list_services, "Every service's health over the range",
     ("since", "until", "range"), "viewer"),
    ("GET", "/api/services/{service}", service_detail,
     "Routes, dependencies, changes and template events of one service",
     ("since", "until", "range"), "viewer"),
    ("GET", "/api/metrics", metrics, "60 s windows per service (rate, error rate, p95)",
     ("service", "since", "until", "range"), "viewer"),
    ("GET", "/api/logs", logs, "Search logs (or group them by template)",
     ("service", "level", "template_id", "q", "group", "since", "until", "range", "limit",
      "offset"), "viewer"),
    ("GET", "/api/templates", templates, "Known log templates, most frequent first",
     ("service", "limit", "offset"), "viewer"),
    ("GET", "/api/template-events", template_events, "New, spiking and vanished templates",
     ("service", "kind", "since", "until", "range", "limit", "offset"), "viewer"),
    ("GET", "/api/anomalies", anomalies, "Anomalies with expected value and band",
     ("service", "variant", "since", "until", "range", "limit", "offset"), "viewer"),
    ("GET", "/api/changes", changes, "Deploys and config changes",
     ("service", "since", "until", "range", "limit", "offset"), "viewer"),
    ("GET", "/api/alerts", alerts, "Alerts in their current state",
     ("state", "service", "limit", "offset"), "viewer"),
    ("GET", "/api/silences", silences, "Active silences (all=1: also expired)",
     ("all", "limit", "offset"), "viewer"),
    ("GET", "/api/notifications", notifications, "Notification and escalation history",
     ("fingerprint", "since", "until", "range", "limit", "offset"), "viewer"),
    ("GET", "/api/oncall", oncall, "Schedules and who is on call", ("at",), "viewer"),
    ("GET", "/api/actions", list_actions, "Runbook actions and their outcome",
     ("incident_id", "fingerprint", "outcome", "limit", "offset"), "viewer"),
    ("GET", "/api/feedback", list_feedback, "Feedback verdicts",
     ("target_kind", "since", "until", "range", "limit", "offset"), "viewer"),
    ("POST", "/api/feedback", post_feedback, "Give a verdict on an alert, anomaly or "
     "category", (), "responder"),
    ("GET", "/api/intelligence", intelligence,
     "Categorisation accuracy, detector quality (in all and per day), feedback volume",
     ("since", "until", "range"), "viewer"),
    ("GET", "/api/pipeline", pipeline, "Throughput, lag, dead letters, sink latency",
     ("since", "until", "range"), "viewer"),
]


def guarded(handler: Handler, role: str) -> Handler:
    """``handler`` behind the role check (reads pass unless the policy wants tokens)."""

    async def check(request: web.Request) -> web.StreamResponse:
        require(request, role)
        return await handler(request)

    return check


def add_api_routes(app: web.Application, ctx: WebContext, policy: AuthPolicy) -> None:
    """Register the JSON API and the OpenAPI document on ``app``."""
    from web.openapi import openapi_document

    app[CTX_KEY], app[POLICY_KEY] = ctx, policy
    # The worker's alerting stage serves /api/alerts, /api/silences and /api/oncall from
    # its live state; these ClickHouse-backed versions serve them in `logwarden api`.
    taken = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    for method, path, handler, _summary, _params, role in ROUTES:
        if (method, path) not in taken:
            app.router.add_route(method, path, guarded(handler, role))
    doc = openapi_document(ROUTES)

    async def openapi(request: web.Request) -> web.Response:
        return json_response(doc)

    app.router.add_get("/api/openapi.json", openapi)
