"""A read-only ``Store`` that asks a running worker's ``POST /api/query`` (embedded mode).

chDB lets one process open the data directory, so reports and ``logwarden api`` read the
worker's store through its API; the typed queries run unchanged, parameters still bound.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError


@dataclass(frozen=True)
class Rows:
    """What ``Store.query`` callers read: column names and rows."""

    column_names: list[str]
    result_rows: list[list[Any]]


def _param(value: Any) -> Any:
    """Datetimes as ClickHouse's 'YYYY-MM-DD hh:mm:ss.fff' in UTC; the rest as JSON has it."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return value


class ApiStore:
    """Reads through ``<base>/api/query``; writes are not supported."""

    def __init__(self, base: str, token: str | None = None, timeout_s: float = 90.0) -> None:
        self.base, self.token, self.timeout_s = base.rstrip("/"), token, timeout_s

    def query(self, query: str | None = None,
              parameters: Sequence[Any] | dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None, *,
              column_formats: dict[str, str | dict[str, str]] | None = None) -> Rows:
        """Run one read query on the worker; ClickHouse errors raise ``DatabaseError``."""
        params = {k: _param(v) for k, v in dict(parameters or {}).items()}
        body = orjson.dumps({"sql": query, "params": params, "limit": 1_000_000})
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(f"{self.base}/api/query", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                answer = orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = orjson.loads(raw)["error"]["message"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                message = raw[:500].decode(errors="replace")
            raise DatabaseError(f"HTTP {exc.code}: {message}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise OperationalError(f"no worker API at {self.base}: {exc}") from None
        return Rows(list(answer["columns"]), [list(r) for r in answer["rows"]])

    def command(self, cmd: str, parameters: Any = None, data: Any = None,
                settings: Any = None) -> Any:
        """Not available: this store only reads."""
        raise DatabaseError("the worker API store is read-only")

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        """Not available: this store only reads."""
        raise DatabaseError("the worker API store is read-only")

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        """Not available: this store only reads."""
        raise DatabaseError("the worker API store is read-only")
