"""Log records and structlog events become valid ``LogEvent`` messages; logging never fails."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
import structlog

from schemas.logs import LogEvent
from schemas.topics import LOGS
from sdk.logging import KafkaLogHandler
from sdk.publisher import dumps
from sdk.structlog import KafkaProcessor


class FakePublisher:
    """Records what would be published."""

    service = "checkout"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str | None]] = []

    def publish(self, topic: str, value: Mapping[str, Any], key: str | None = None) -> bool:
        self.sent.append((topic, dict(value), key))
        return True


class BrokenPublisher(FakePublisher):
    def publish(self, topic: str, value: Mapping[str, Any], key: str | None = None) -> bool:
        raise RuntimeError("boom")


def as_contract(value: dict[str, Any]) -> LogEvent:
    """What the pipeline will see: the JSON bytes, validated."""
    return LogEvent.model_validate(orjson.loads(dumps(value)))


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, FakePublisher]]:
    pub = FakePublisher()
    log = logging.getLogger("test.sdk.checkout")
    log.setLevel(logging.DEBUG)
    handler = KafkaLogHandler(pub, env="prod")  # type: ignore[arg-type]
    log.addHandler(handler)
    yield log, pub
    log.removeHandler(handler)


def test_record_maps_to_the_log_contract(logger: tuple[logging.Logger, FakePublisher]) -> None:
    log, pub = logger
    log.warning("paid %s", "order-1", extra={
        "http": {"method": "POST", "route": "/pay", "status": 200, "duration_ms": 12.5},
        "user": {"id": "u1"}, "trace_id": "t-1", "order": 42, "attrs": {"cart": 3}})
    topic, value, key = pub.sent[0]
    event = as_contract(value)
    assert (topic, key) == (LOGS, "checkout")
    assert (event.service, event.level, event.message) == ("checkout", "WARN", "paid order-1")
    assert (event.logger, event.env, event.trace_id) == ("test.sdk.checkout", "prod", "t-1")
    assert event.http is not None and event.http.status == 200
    assert event.user is not None and event.user.id == "u1"
    assert event.attrs == {"order": 42, "cart": 3}
    assert event.host and event.event_id and len(event.event_id) == 32


def test_every_event_gets_its_own_event_id(logger: tuple[logging.Logger, FakePublisher]) -> None:
    log, pub = logger
    log.info("a")
    log.info("a")
    assert pub.sent[0][1]["event_id"] != pub.sent[1][1]["event_id"]


def test_exception_text_goes_into_attrs(logger: tuple[logging.Logger, FakePublisher]) -> None:
    log, pub = logger
    try:
        raise KeyError("sku")
    except KeyError:
        log.exception("lookup failed")
    event = as_contract(pub.sent[0][1])
    assert event.level == "ERROR" and event.message == "lookup failed"
    assert event.attrs["exc_type"] == "KeyError"
    assert "Traceback" in event.attrs["exception"] and "KeyError: 'sku'" in event.attrs["exception"]


def test_emit_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)
    log = logging.getLogger("test.sdk.broken")
    handler = KafkaLogHandler(BrokenPublisher())  # type: ignore[arg-type]
    log.addHandler(handler)
    try:
        log.error("still fine")  # must not raise
    finally:
        log.removeHandler(handler)


def test_the_sdks_own_logs_are_not_published_back() -> None:
    pub = FakePublisher()
    handler = KafkaLogHandler(pub)  # type: ignore[arg-type]
    handler.handle(logging.LogRecord("sdk.kafka", logging.ERROR, "", 0, "broker down", (), None))
    assert pub.sent == []


def chain(pub: FakePublisher) -> Any:
    return structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"),
                    KafkaProcessor(pub),  # type: ignore[arg-type]
                    structlog.processors.JSONRenderer()])


def test_structlog_event_is_published_and_the_chain_goes_on() -> None:
    pub = FakePublisher()
    rendered = chain(pub).bind(request="r1").warning(
        "cache_miss", peer={"service": "pricing", "ok": False}, span_id="s1", size=3)
    assert orjson.loads(rendered)["event"] == "cache_miss"  # the chain still renders
    topic, value, key = pub.sent[0]
    event = as_contract(value)
    assert (topic, key, event.level, event.message) == (LOGS, "checkout", "WARN", "cache_miss")
    assert event.peer is not None and event.peer.service == "pricing"
    assert event.span_id == "s1" and event.attrs == {"request": "r1", "size": 3}


def test_structlog_exc_info_and_epoch_timestamp_are_mapped() -> None:
    pub = FakePublisher()
    proc = KafkaProcessor(pub)  # type: ignore[arg-type]
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError as exc:
        out = proc(None, "exception", {"event": "math", "exc_info": exc, "timestamp": 1.7e9})
    assert out == {"event": "math", "exc_info": out["exc_info"], "timestamp": 1.7e9}
    event = as_contract(pub.sent[0][1])
    assert event.level == "ERROR" and "ZeroDivisionError" in event.attrs["exception"]
    assert int(event.ts.timestamp()) == 1_700_000_000


def test_structlog_processor_never_raises() -> None:
    proc = KafkaProcessor(BrokenPublisher())  # type: ignore[arg-type]
    assert proc(None, "info", {"event": "x"}) == {"event": "x"}
