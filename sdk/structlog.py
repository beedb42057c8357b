"""A structlog processor that publishes each event dict as a ``logwarden.logs.v1`` event.

    structlog.configure(processors=[
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        KafkaProcessor(publisher),
        structlog.processors.JSONRenderer(),
    ])

It returns the event dict unchanged, so the rest of the chain (rendering to stdout) runs as
before. Place it after ``add_log_level`` and ``TimeStamper`` to use their level and time;
without them it uses the method name and the current time.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

from schemas.topics import LOGS
from sdk.events import level_name, log_event, to_datetime
from sdk.publisher import Publisher

log = logging.getLogger("sdk.structlog")

# Keys that become top-level fields of the event, not attrs.
_CONSUMED = frozenset({"event", "level", "timestamp", "logger", "logger_name", "exc_info",
                       "exception"})


def _exception_text(exc_info: Any) -> str | None:
    """Traceback text of structlog's ``exc_info`` (True, an exception, or a tuple)."""
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[0] is not None:
        return "".join(traceback.format_exception(*exc_info)).rstrip()
    return None


class KafkaProcessor:
    """Publish the event dict to Kafka and pass it on unchanged."""

    def __init__(self, publisher: Publisher, *, topic: str = LOGS, service: str | None = None,
                 env: str | None = None) -> None:
        self.publisher = publisher
        self.topic = topic
        self.service = service or publisher.service
        self._defaults: dict[str, Any] = {"env": env} if env else {}

    def __call__(self, logger: Any, method_name: str,
                 event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Publish ``event_dict`` (failures are counted by the publisher) and return it."""
        try:
            self.publisher.publish(self.topic, self.to_event(method_name, event_dict),
                                   key=self.service)
        except Exception:  # a log call must never fail because of Kafka
            log.exception("structlog_event_not_published")
        return event_dict

    def to_event(self, method_name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        """The log event of one structlog event dict."""
        fields = {k: v for k, v in event_dict.items()
                  if k not in _CONSUMED and not k.startswith("_")}
        exception = event_dict.get("exception")
        if not isinstance(exception, str):
            exception = _exception_text(event_dict.get("exc_info"))
        if exception:
            fields["exception"] = exception
        logger_name = event_dict.get("logger") or event_dict.get("logger_name")
        return log_event(
            ts=to_datetime(event_dict.get("timestamp")),
            service=self.service,
            level=level_name(str(event_dict.get("level") or method_name)),
            message=str(event_dict.get("event", "")),
            logger=str(logger_name) if logger_name else None,
            fields=fields,
            defaults=self._defaults,
        )
