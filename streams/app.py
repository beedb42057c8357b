"""The Faust application: one worker process runs every stage and serves the HTTP API."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import structlog
from mode import Service

from schemas import topics
from streams.agents.ingest import IngestService
from streams.ingest import IngestProcessor
from streams.metrics import health, registry_for
from streams.runtime import Runtime
from web.api import create_app as create_api
from web.api import serve

log = structlog.get_logger(__name__)


class ApiService(Service):  # type: ignore[misc]
    """Serves the HTTP API, dashboards and /metrics inside the worker's event loop."""

    def __init__(self, runtime: Runtime, ingest: IngestService, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rt, self.ingest = runtime, ingest
        self.runner: Any = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-store")

    async def on_start(self) -> None:
        s = self.rt.settings
        app = create_api(self.rt.store, database=s.clickhouse.database,
                         executor_or_lock=self.executor,
                         health_provider=lambda: health(self.ingest),
                         metrics_registry=registry_for(self.ingest))
        self.runner = await serve(app, s.stream.web_host, s.stream.web_port)
        log.info("api_listening", url=f"http://{s.stream.web_host}:{s.stream.web_port}")

    async def on_stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        self.executor.shutdown(wait=False)


def create_app(runtime: Runtime) -> faust.App:
    """The worker's Faust app with every stage registered."""
    s = runtime.settings
    app = faust.App(
        s.stream.app_id,
        broker=f"kafka://{s.kafka.bootstrap_servers()}",
        store="memory://",
        datadir=str(s.data_dir / "faust"),
        web_enabled=False,
        topic_partitions=s.kafka.partitions,
        topic_replication_factor=s.kafka.replication,
    )
    processor = IngestProcessor(grace_s=s.stream.window_grace_s)
    ingest = IngestService(runtime, processor, loop=app.loop, beacon=app.beacon)
    app.service(ingest)
    app.service(ApiService(runtime, ingest, loop=app.loop, beacon=app.beacon))
    app.topic(topics.WINDOWS, value_serializer="raw")  # declared for the scoring stage
    app.runtime = runtime  # type: ignore[attr-defined]
    app.ingest = ingest  # type: ignore[attr-defined]
    return app
