"""A stdlib ``logging.Handler`` that publishes every record as a ``logwarden.logs.v1`` event.

    publisher = Publisher("kafka:9092", service="checkout")
    logging.getLogger().addHandler(KafkaLogHandler(publisher))
    log.info("paid", extra={"http": {"method": "POST", "status": 200}, "order": 42})

``extra`` fields named like contract fields (``http``, ``peer``, ``user``, ``trace_id``,
``span_id``, ``env``) are passed through; any other extra goes into ``attrs``.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from schemas.topics import LOGS
from sdk.events import level_from_number, log_event
from sdk.publisher import Publisher

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName",
}


class KafkaLogHandler(logging.Handler):
    """Publish log records to Kafka; never raises out of ``emit``."""

    def __init__(
        self,
        publisher: Publisher,
        *,
        level: int = logging.NOTSET,
        topic: str = LOGS,
        service: str | None = None,
        env: str | None = None,
    ) -> None:
        super().__init__(level)
        self.publisher = publisher
        self.topic = topic
        self.service = service or publisher.service
        self._defaults: dict[str, Any] = {"env": env} if env else {}
        self._busy = threading.local()
        self._exc_formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        """Map the record to a log event and queue it (dropping is counted, never raised)."""
        # The publisher's and librdkafka's own logs ("sdk.*") would loop back through Kafka.
        if record.name.startswith("sdk.") or getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            self.publisher.publish(self.topic, self.to_event(record), key=self.service)
        except Exception:
            self.handleError(record)
        finally:
            self._busy.on = False

    def to_event(self, record: logging.LogRecord) -> dict[str, Any]:
        """The log event of one record."""
        message = self.format(record) if self.formatter else record.getMessage()
        fields = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}
        if record.exc_info and record.exc_info[0] is not None:
            fields["exception"] = self._exc_formatter.formatException(record.exc_info)
            fields["exc_type"] = record.exc_info[0].__name__
        elif record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = record.stack_info
        return log_event(
            ts=datetime.fromtimestamp(record.created, tz=UTC),
            service=self.service,
            level=level_from_number(record.levelno),
            message=message,
            logger=record.name,
            fields=fields,
            defaults=self._defaults,
        )
