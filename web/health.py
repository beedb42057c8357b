"""``GET /api/health`` and ``GET /metrics``: what the streaming worker reports about itself."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

# The worker supplies it: events in/out, lag, dead letters, writer stats; may be async.
HealthProvider = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]

# A provider reporting one of these as "status" turns the answer into a 503, so a load
# balancer or an orchestrator's probe sees a failing pipeline without parsing the body.
FAILING_STATUSES = frozenset({"down", "failing", "stopped", "stalled"})


async def health_handler(provider: HealthProvider) -> web.Response:
    """The provider's dict as JSON; 503 when its ``status`` says the pipeline is down."""
    report = provider()
    if inspect.isawaitable(report):
        report = await report
    status = 503 if report.get("status") in FAILING_STATUSES else 200
    # orjson writes datetimes as ISO text and NaN as null; anything else unknown as str().
    body = orjson.dumps(dict(report), default=str,
                        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return web.Response(status=status, body=body, content_type="application/json")


def metrics_handler(registry: CollectorRegistry) -> web.Response:
    """Prometheus text exposition (format 0.0.4, names escaped to underscores) of ``registry``."""
    return web.Response(body=generate_latest(registry),
                        headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
