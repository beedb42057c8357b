"""The worker process: Faust's worker, with a deadline on shutdown."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import faust
import structlog

log = structlog.get_logger(__name__)


class GracefulWorker(faust.Worker):
    """A Faust worker that exits within ``grace_s`` of SIGTERM or SIGINT even when a broker
    or the store is gone and a client would wait out its own timeouts. Exiting then loses
    nothing: offsets are committed only after the rows they cover landed."""

    def __init__(self, app: faust.App, grace_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.grace_s = grace_s

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(self.grace_s, self._give_up, (signum,))
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signum)

    def _give_up(self, signum: signal.Signals) -> None:
        log.error("shutdown_grace_exceeded", grace_s=self.grace_s, signal=signum.name)
        logging.shutdown()
        os._exit(128 + int(signum))
