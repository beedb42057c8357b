"""Where ``POST /api/query`` runs: off the ingest path, bounded, with ClickHouse's limits.

Analysts' SQL must not stall the pipeline or take the process down, so a query:

- runs on its own threads (``concurrency`` of them), each with its own ClickHouse client,
  never on the writers' store thread or behind their lock;
- waits in a bounded queue when they are busy (``queue`` places, then HTTP 429);
- carries ClickHouse limits as query settings: ``max_execution_time``,
  ``max_memory_usage``, ``max_threads``, ``max_result_rows`` with
  ``result_overflow_mode=break`` and ``readonly=1`` (``web.api.run_read_query``).

A ClickHouse server: each thread opens its own HTTP client (own session). Embedded chDB:
one engine per process, so the threads' clients are further sessions on the worker's own
engine. Measured on chDB 26.9: a second client on the same path opens in the same process,
and inserts from the writer's client kept going (3-20 ms each) while a 6 s query ran on it.
The trade-off: the engine, its memory and the 2 cores are shared, so the limits (memory,
threads, time, concurrency) are what keeps a heavy query from starving ingestion; a
query can still take CPU from the pipeline for up to ``query_timeout_s``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sinks.clickhouse.client import Store
from web.http import ApiError
from web.settings import WebSettings

T = TypeVar("T")
MB = 1 << 20


@dataclass(frozen=True)
class QueryLimits:
    """What ClickHouse enforces on one API query (see the module doc)."""

    max_execution_s: int = 60
    max_memory_bytes: int = 1024 * MB
    max_threads: int = 2

    @classmethod
    def from_settings(cls, s: WebSettings) -> QueryLimits:
        """The limits of ``LOGWARDEN_WEB_QUERY_*``."""
        return cls(s.query_timeout_s, s.query_max_memory_mb * MB, s.query_max_threads)

    def settings(self, max_rows: int) -> dict[str, Any]:
        """ClickHouse query settings; ``readonly=1`` last (it refuses settings after it)."""
        return {"max_result_rows": max_rows, "result_overflow_mode": "break",
                "max_execution_time": self.max_execution_s,
                "max_memory_usage": self.max_memory_bytes, "max_threads": self.max_threads,
                "readonly": 1}


class QueryRunner:
    """A few threads, each with its own client from ``connect``, and a bounded queue."""

    def __init__(self, connect: Callable[[], Store], concurrency: int = 2,
                 queue: int = 8) -> None:
        self.connect = connect
        self.capacity = concurrency + queue
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="api-query")
        self.local = threading.local()
        self.clients: list[Store] = []
        self.lock = threading.Lock()
        self.pending = 0  # running + waiting (only touched on the event loop)

    def _client(self) -> Store:
        client: Store | None = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = self.connect()
            with self.lock:
                self.clients.append(client)
        return client

    async def run(self, fn: Callable[[Store], T]) -> T:
        """``fn(client)`` on a query thread; 429 when ``capacity`` queries are in already."""
        if self.pending >= self.capacity:
            raise ApiError(429, "too_many_queries",
                           f"{self.pending} queries are running or waiting; retry later")
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, lambda: fn(self._client()))
        finally:
            self.pending -= 1

    def close(self) -> None:
        """Stop the threads and close their clients."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            for c in self.clients:
                close = getattr(c, "close", None)
                if close is not None:
                    close()
            self.clients.clear()
