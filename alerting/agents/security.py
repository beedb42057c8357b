"""The security detectors as a Faust agent: auth events in, signals to the alert manager.

Ingest forwards authentication events (``schemas.auth_events``) to the auth-events topic,
keyed by service. This agent runs them through ``alerting.security.SecurityDetector`` and
sends its signals to the manager's signal topic (partition 0), like rule evaluation does. A
timer resolves quiet alerts (event time: the detector's watermark). At start the address
book (who logged in from where) is seeded from the stored logs of the last
``security_history_days``, so a privileged user's usual addresses are known at once.

The detector's windows live in memory: a restarted or rebalanced worker starts them empty
(they span minutes), and its address book is seeded again from ClickHouse.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import faust
import structlog

from alerting.config import AlertingSettings
from alerting.inputs import SignalInput, encode_input
from alerting.lifecycle import Signal
from alerting.security import SecurityDetector
from alerting.security_rules import SecurityConfig, load_security
from schemas import auth_events
from schemas.errors import ConfigError

log = structlog.get_logger(__name__)
MANAGER_PARTITION = 0


class SecurityStage:
    """The registered security agent: its detector, config file and counters."""

    def __init__(self, path: Path, detector: SecurityDetector) -> None:
        self.path, self.detector = path, detector
        self.mtime = self._mtime()
        self.last_error: str | None = None
        self.counts = {"events": 0, "bad_events": 0, "signals": 0}

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return -1.0

    def reload(self) -> bool:
        """Re-read the rules when the file changed; a bad file keeps the last good rules."""
        m = self._mtime()
        if m == self.mtime:
            return False
        self.mtime = m
        try:
            cfg = load_security(self.path)
        except ConfigError as e:
            self.last_error = str(e)
            log.error("security_config_refused", stage="security", error=self.last_error,
                      kept="last good")
            return False
        self.last_error = None
        self.detector.reconfigure(cfg)
        log.info("security_config_loaded", stage="security", rules=len(cfg.rules))
        return True


def register_security(app: faust.App, runtime: Any, a: AlertingSettings, signals: Any,
                      database: str) -> SecurityStage:
    """The security agent, its timers and the address-book seeding on ``app``."""
    assert a.security_file is not None
    path = Path(a.security_file)
    cfg: SecurityConfig = load_security(path)  # a bad file stops the worker here, named
    stage = SecurityStage(path, SecurityDetector(cfg))
    det = stage.detector
    source = app.topic(runtime.topics.auth_events, key_serializer="raw", value_serializer="raw")

    async def send(sigs: list[Signal]) -> None:
        for s in sigs:
            stage.counts["signals"] += 1
            if s.status == "firing" and s.labels.get("severity") == "critical":
                log.warning("security_alert", stage="security", rule=s.rule,
                            labels=s.labels, count=s.annotations.get("count", ""))
            await signals.send(key=s.rule.encode(), value=encode_input(SignalInput(signal=s)),
                               partition=MANAGER_PARTITION)

    @app.agent(source, name="security-detect")
    async def detect(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                doc = auth_events.decode(event.value)
            except ValueError as e:
                stage.counts["bad_events"] += 1
                log.warning("auth_event_refused", stage="security",
                            offset=event.message.offset, error=str(e)[:200])
                continue
            stage.counts["events"] += 1
            await send(det.observe(doc))

    @app.timer(a.evaluation_interval_s)  # type: ignore[untyped-decorator]
    async def resolve() -> None:
        await send(det.advance())

    @app.timer(a.reload_check_s)  # type: ignore[untyped-decorator]
    async def reload() -> None:
        stage.reload()

    @app.task  # type: ignore[untyped-decorator]
    async def seed_addresses() -> None:
        from sinks.clickhouse.queries.security import known_addresses

        t0 = time.time()
        try:
            pairs = await asyncio.to_thread(known_addresses, runtime.store, database,
                                            a.security_history_days)
        except Exception as e:  # the store may be down: new-address rules learn for an hour
            log.warning("security_address_book_not_seeded", stage="security",
                        error=str(e)[:200])
            return
        n = det.seed_addresses(pairs)
        log.info("security_address_book_seeded", stage="security", pairs=n,
                 seconds=round(time.time() - t0, 2))

    return stage
