"""structlog, configured once: JSON off a TTY, console on one; stdlib logs routed through it."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger (Faust, aiokafka) to share one format."""
    json = not sys.stderr.isatty() if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer())
    # JSON needs the traceback as text; the console renderer prints it itself.
    final: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, renderer] if json else [renderer])
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # third-party loggers that narrate every request or rebalance at INFO (twilio logs each
    # HTTP request and its headers)
    for noisy in ("aiokafka", "faust", "mode", "twilio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
