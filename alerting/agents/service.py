"""The alerting stage as Faust agents: evaluate (windows, anomalies, template events, ticks ->
signals) and manage (signals, people's actions, ticks -> alerts, notifications, pages).

State lives in changelog tables (``store="memory://"``: rebuilt from the changelog topics at
start, so a killed worker resumes where it was). Evaluation state is keyed by series like the
windows topic; a tick reaches every partition and touches only that partition's series.
Grouping, inhibition and composite rules need every alert at once, so the manager is a
singleton, like Alertmanager: all its input goes to partition 0 of its topics (keyed by
fingerprint), and its tables' changelogs live in partition 0. Timers only send tick events.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import faust
import orjson
import structlog
from faust.exceptions import NotReady
from faust.types import TP
from prometheus_client import Histogram
from pydantic import ValidationError

from alerting.actions import AuditRecorder
from alerting.agents.evaluate_rules import CANARY_SERVICE, evaluate, evaluate_tick
from alerting.agents.manage_alerts import AlertManager, ManagerTables, Sink
from alerting.agents.runbooks import RunbookStage, register_runbooks
from alerting.config import AlertingSettings
from alerting.inhibit import CallGraph
from alerting.inputs import Action, CanarySent, SignalInput, Tick, decode_input, encode_input
from alerting.reload import ConfigHolder
from alerting.watermark import Watermarks
from schemas import topics
from schemas.topics import Internal
from sinks.clickhouse.client import Store

log = structlog.get_logger(__name__)
MANAGER_PARTITION = 0
GRAPH_REFRESH_S = 60.0


class StageRuntime(Protocol):
    """What the alerting stage uses of the worker's runtime (``streams.runtime.Runtime``)."""

    @property
    def store(self) -> Store: ...
    @property
    def writers(self) -> Mapping[str, Sink]: ...
    @property
    def topics(self) -> Internal: ...
    @property
    def audit(self) -> AuditRecorder | None: ...
    def send(self, topic: str, value: bytes, key: str | bytes | None = None) -> None: ...


class AlertingStage:
    """Handles of the registered stage: config, manager (read-only view), publish."""

    def __init__(self, holder: ConfigHolder, manager: AlertManager,
                 actions: faust.TopicT, delay: Histogram) -> None:
        self.holder, self.manager, self.actions, self.delay = holder, manager, actions, delay
        self.runbooks: RunbookStage | None = None  # runbook actions (alerting/actions.py)
        self.security: Any = None  # alerting.agents.security.SecurityStage, when enabled
        self.watermarks: Watermarks | None = None
        self.counts = {"inputs": 0, "bad_inputs": 0, "signals": 0, "manager_errors": 0,
                       "bad_manager_inputs": 0, "ticks_skipped": 0}

    async def publish(self, action: Action) -> None:
        """Queue a person's action for the manager (the API never writes tables itself)."""
        key = action.type.encode()
        await self.actions.send(key=key, value=encode_input(action),
                                partition=MANAGER_PARTITION)


def _table(app: faust.App, name: str, partitions: int) -> Any:
    return app.Table(f"alerting-{name}", default=None, partitions=partitions,
                     key_type=str, value_type=bytes)


def _topic(app: faust.App, *names: str) -> Any:
    return app.topic(*names, key_serializer="raw", value_serializer="raw")


def register_alerting(app: faust.App, runtime: StageRuntime, a: AlertingSettings,
                      partitions: int, database: str) -> AlertingStage:
    """Create the alerting tables, topics, agents and timers on ``app``."""
    n = partitions
    holder = ConfigHolder(a)
    holder.check(force=True)
    series = _table(app, "series", n)
    tables = ManagerTables(alerts=_table(app, "alerts", n), groups=_table(app, "groups", n),
                           escalations=_table(app, "escalations", n),
                           silences=_table(app, "silences", n), meta=_table(app, "meta", n),
                           codes=_table(app, "codes", n), outbox=_table(app, "outbox", n))
    t = runtime.topics
    inputs = _topic(app, t.windows, t.anomalies, t.template_events, t.alert_ticks)
    ticks = _topic(app, t.alert_ticks)
    signals = _topic(app, t.alert_signals)
    actions = _topic(app, t.alert_actions)
    manager_in = _topic(app, t.alert_signals, t.alert_actions)
    delay = Histogram("logwarden_alert_delivery_delay_seconds",
                      "Triggering event to notification delivered", registry=None,
                      buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600))
    manager = AlertManager(holder, a, tables, runtime.writers, observe_delay=delay.observe)
    stage = AlertingStage(holder, manager, actions, delay)
    if a.runbooks.enabled:
        stage.runbooks = register_runbooks(app, a, holder, t.runbook_actions, n,
                                           runtime.writers.get("actions"), runtime.audit)
        manager.on_firing = stage.runbooks.on_firing
    read: dict[int, int] = {}  # the last offset read of each windows partition held here

    def behind(partition: int) -> bool:
        """Whether windows wait unread in ``partition``: the end offset the consumer last
        heard of from the broker is past the last one read."""
        last = read.get(partition)
        try:
            end = app.consumer.highwater(TP(t.windows, partition))
        except (AssertionError, KeyError, NotReady):  # not (or no longer) assigned here,
            return False  # or the consumer is not running
        return last is not None and end is not None and last + 1 < end

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget(_app: faust.App, revoked: set[TP], **_: Any) -> None:
        for tp in revoked:  # read elsewhere from now on: what was read here says nothing
            if tp.topic == t.windows:
                read.pop(tp.partition, None)

    # event time of the windows read
    watermarks = Watermarks(idle_s=a.watermark_idle_s, behind=behind)
    stage.watermarks = watermarks

    @app.agent(inputs, name="alerting-evaluate")
    async def evaluate_agent(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            topic, part, now = event.message.topic, event.message.partition, time.time()
            if topic == t.windows:
                read[part] = event.message.offset
            cfg = holder.config
            if cfg is None:
                continue
            try:
                if topic == t.alert_ticks:
                    out = evaluate_tick(cfg, series, part, watermarks.fleet(now),
                                        a.absence_settle_s, watermarks.activity.went_on)
                else:
                    out = evaluate(cfg, series, t, topic, part, event.value, now, watermarks)
            except (ValueError, ValidationError, KeyError, TypeError) as e:
                stage.counts["bad_inputs"] += 1
                log.warning("alerting_input_refused", stage="alerting", topic=topic,
                            partition=part, offset=event.message.offset, error=str(e)[:300])
                continue
            stage.counts["inputs"] += 1
            for m in out:
                is_signal = isinstance(m, SignalInput)
                stage.counts["signals"] += is_signal
                key = (m.signal.rule if isinstance(m, SignalInput) else m.type).encode()
                await signals.send(key=key, value=encode_input(m), partition=MANAGER_PARTITION)

    @app.agent(manager_in, name="alerting-manage")
    async def manage_agent(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:  # decoded once, here: the manager sees only typed messages
                msg = decode_input(event.value)
            except ValidationError as e:
                stage.counts["bad_manager_inputs"] += 1
                log.warning("alerting_message_refused", stage="alerting",
                            topic=event.message.topic, offset=event.message.offset,
                            error=str(e)[:300])
                continue
            try:
                await manager.handle(msg, time.time())
            except Exception:  # the stage boundary: one bad message must not stop alerting
                stage.counts["manager_errors"] += 1
                log.exception("alerting_message_failed", stage="alerting",
                              kind=msg.type, offset=event.message.offset)

    # Timers that feed every partition run on the group's leader only: N workers must not
    # send N ticks (or N canaries) per interval.
    @app.timer(a.evaluation_interval_s, on_leader=True)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        await send_ticks(ticks, signals, n, stage.counts)

    @app.timer(a.reload_check_s)  # type: ignore[untyped-decorator]
    async def reload() -> None:
        holder.check()

    @app.timer(GRAPH_REFRESH_S)  # type: ignore[untyped-decorator]
    async def refresh_graph() -> None:
        try:
            manager.graph = await asyncio.to_thread(call_graph, runtime.store, database)
        except Exception as e:  # the store may be busy or down; inhibition uses the old graph
            log.warning("call_graph_refresh_failed", stage="alerting", error=str(e)[:200])

    if a.canary_interval_s > 0:
        @app.timer(a.canary_interval_s, on_leader=True)  # type: ignore[untyped-decorator]
        async def canary() -> None:
            now = time.time()
            runtime.send(topics.LOGS, canary_event(now), key=CANARY_SERVICE)
            await signals.send(key=b"canary", value=encode_input(CanarySent(ts=now)),
                               partition=MANAGER_PARTITION)

    @app.task  # type: ignore[untyped-decorator]
    async def on_sighup() -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: holder.check(force=True))

    if a.security_file is not None and str(a.security_file):
        from alerting.agents.security import register_security
        stage.security = register_security(app, runtime, a, signals, database)
    return stage


async def send_ticks(ticks: faust.TopicT, signals: faust.TopicT, n: int,
                     counts: dict[str, int]) -> bool:
    """One evaluation tick to each of the ``n`` rule partitions, then one to the manager;
    False when the round was skipped.

    A timer whose coroutine raises stops the whole worker (faust crashes the app), and on a
    broker that has just created the tick topic the producer's metadata may not list every
    partition yet: aiokafka then asserts ``Unrecognized partition``. Ticks only move the
    rules' clocks on, so a round that cannot go out is skipped, counted and logged; the next
    interval sends again."""
    try:
        for p in range(n):
            await ticks.send(key=b"tick", value=b'{"type": "tick"}', partition=p)
        await signals.send(key=b"tick", value=encode_input(Tick(ts=time.time())),
                           partition=MANAGER_PARTITION)
    except AssertionError as e:  # aiokafka: a partition its metadata does not know (yet)
        counts["ticks_skipped"] += 1
        log.warning("alert_ticks_skipped", stage="alerting", error=str(e)[:200])
        return False
    return True


def canary_event(now: float) -> bytes:
    """The synthetic log line whose window proves the pipeline reaches alerting."""
    return orjson.dumps({"ts": datetime.fromtimestamp(now, tz=UTC).isoformat(),
                         "service": CANARY_SERVICE, "level": "INFO",
                         "message": "logwarden canary", "event_id": f"canary-{int(now)}"})


def call_graph(store: Store, db: str) -> CallGraph:
    """Who called whom in the last day, from the logs' peer fields (for inhibition)."""
    res = store.query(
        f"SELECT service, peer_service, toUnixTimestamp(max(ts)) FROM {db}.logs "
        "WHERE peer_service != '' AND ts > now() - INTERVAL 1 DAY "
        "GROUP BY service, peer_service")
    g = CallGraph()
    for caller, callee, ts in res.result_rows:
        g.add_call(str(caller), str(callee), float(ts))
    return g
