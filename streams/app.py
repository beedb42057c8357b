"""The Faust application: one worker process runs every stage and serves the HTTP API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import structlog
from faust.auth import Credentials
from mode import Service
from prometheus_client import CollectorRegistry

from alerting.agents.service import AlertingStage, register_alerting
from alerting.config import AlertingSettings
from categorisation.settings import load_categorisation
from privacy.redact import open_redactor
from schemas import topics
from schemas.changes import Feedback
from sinks.clickhouse.client import connect
from streams.agents.categorise import CategoriseStage
from streams.agents.incidents import register_incidents
from streams.agents.ingest import IngestService
from streams.agents.score_windows import ScoreService
from streams.categorise import Categoriser
from streams.consumer import BatchConsumer, Progress
from streams.ingest import ingest_processor
from streams.metrics import RebalanceWatch, health, registry_for
from streams.otlp_sink import OtlpService
from streams.runtime import Runtime
from streams.settings import KafkaSettings, client_id
from streams.web_config import web_options
from web.actions import ActionsApi
from web.alerts import AlertsApi
from web.api import create_app as create_api
from web.api import serve
from web.verdicts import VerdictsApi

log = structlog.get_logger(__name__)


class ApiService(Service):
    """Serves the HTTP API, dashboards and /metrics inside the worker's event loop."""

    def __init__(self, runtime: Runtime, ingest: IngestService,
                 alerting: AlertingStage | None = None,
                 others: Sequence[BatchConsumer] = (),
                 checks: Sequence[Callable[[], Progress]] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rt, self.ingest, self.alerting, self.others = runtime, ingest, alerting, others
        self.checks = checks
        self.otlp_metrics: CollectorRegistry | None = None
        self.runner: Any = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-store")

    async def on_start(self) -> None:
        s = self.rt.settings
        registry = registry_for(self.ingest)
        if self.otlp_metrics is not None:  # the OTLP receiver's counters on /metrics too
            registry.register(self.otlp_metrics)
        alerts = None
        if self.alerting is not None:
            registry.register(self.alerting.delay)
            alerts = alerts_api(self.alerting, s.alerting, self.rt.send)
        app = create_api(self.rt.store, database=s.clickhouse.database,
                         executor_or_lock=self.executor,
                         health_provider=lambda: health(self.ingest, self.others,
                                                        self.checks),
                         metrics_registry=registry, alerts=alerts,
                         web_options=web_options(s, self.rt.send),
                         # SQL from /api/query: own clients and threads, not the writers'
                         query_connect=lambda: connect(s.clickhouse, s.data_dir),
                         audit=self.rt.audit)
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
        broker_credentials=broker_credentials(s.kafka),
        store="memory://",
        datadir=str(s.data_dir / "faust"),
        web_enabled=False,
        topic_partitions=s.kafka.partitions,
        topic_replication_factor=s.kafka.replicas,
        producer_acks=-1,  # every in-sync replica has it before a send counts as done
        broker_client_id=client_id(s.stream.app_id, "faust"),
        # as the ingest consumer's: a killed worker's partitions move on after 10 s, and a
        # restarted one does not wait out Faust's default 60 s for its dead predecessor
        broker_session_timeout=10.0,
    )
    stage = None
    if s.categorise.enabled:  # a bad categories/teams/masking file stops here, named
        stage = CategoriseStage(runtime, Categoriser(load_categorisation(s.categorise),
                                                     s.categorise))
    redactor = open_redactor(s.privacy, s.data_dir)  # a bad privacy.yaml stops here, named
    processor = ingest_processor(s.stream, s.clickhouse, categorise=stage.cat if stage else None,
                                 redact=redactor.event if redactor else None,
                                 redact_raw=redactor.raw if redactor else None)
    ingest = IngestService(runtime, processor, stage, redactor=redactor, loop=app.loop,
                           beacon=app.beacon)
    app.service(ingest)  # type: ignore[arg-type]  # an instance is accepted too
    alerting = register_alerting(
        app, runtime, s.alerting, s.kafka.partitions, s.clickhouse.database,
    ) if s.alerting.enabled else None
    app.alerting = alerting  # type: ignore[attr-defined]
    if alerting is not None and runtime.audit is not None:  # reloads go to the audit trail
        alerting.holder.on_change = runtime.audit.config_reload
    incidents = register_incidents(
        app, runtime.store, s.clickhouse.database, runtime.topics.anomalies, s.incidents,
    ) if s.incidents.enabled else None
    app.incidents = incidents  # type: ignore[attr-defined]
    if incidents is not None and alerting is not None and alerting.runbooks is not None:
        # an alert inside an open incident runs its runbook once per incident
        alerting.runbooks.incident_of = incidents.engine.incident_for
    detect = ScoreService(runtime, loop=app.loop, beacon=app.beacon) \
        if s.detect.enabled else None
    others = [detect] if detect is not None else []
    rebalance = RebalanceWatch()
    app.sensors.add(rebalance)
    api = ApiService(runtime, ingest, alerting, others, [rebalance.progress], loop=app.loop,
                     beacon=app.beacon)
    app.service(api)  # type: ignore[arg-type]
    if detect is not None:
        app.service(detect)  # type: ignore[arg-type]
    if s.otlp.enabled:  # the OTLP/HTTP receiver on LOGWARDEN_OTLP_PORT
        otlp = OtlpService(s, loop=app.loop, beacon=app.beacon)
        api.otlp_metrics = otlp.registry
        app.service(otlp)  # type: ignore[arg-type]
    app.detect = detect  # type: ignore[attr-defined]
    app.runtime = runtime  # type: ignore[attr-defined]
    app.ingest = ingest  # type: ignore[attr-defined]
    return app


def broker_credentials(k: KafkaSettings) -> Credentials | None:
    """Faust's form of the TLS and SASL settings (None: plaintext)."""
    if k.sasl:  # SASL_SSL when a TLS context is given, SASL_PLAINTEXT otherwise
        return faust.SASLCredentials(username=k.sasl_username,
                                     password=k.sasl_password.get_secret_value(),
                                     ssl_context=k.ssl_context(), mechanism=k.sasl_mechanism)
    if k.tls:
        return faust.SSLCredentials(k.ssl_context())
    return None


def alerts_api(stage: AlertingStage, settings: AlertingSettings,
               send: Callable[[str, bytes, str], None] | None = None) -> AlertsApi:
    """The alerting endpoints bound to this stage's view and actions topic; verdicts are
    sent as feedback through ``send`` (the runtime's producer)."""

    def suppressed(now: float) -> dict[str, str]:
        cfg = stage.holder.config
        return stage.manager.suppressed(cfg, now) if cfg else {}

    verdicts = None
    if send is not None:
        def feedback(fb: Feedback) -> None:
            send(topics.FEEDBACK, fb.model_dump_json().encode(), fb.target_id)

        verdicts = VerdictsApi(settings, feedback)
    actions = ActionsApi(stage.runbooks.runner, stage.runbooks.send) \
        if stage.runbooks is not None else None
    return AlertsApi(view=stage.manager, publish=stage.publish,
                     config=lambda: stage.holder.config, settings=settings,
                     suppressed=suppressed, verdicts=verdicts, actions=actions)
