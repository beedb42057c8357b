"""Open ClickHouse: the embedded chDB engine or a server, behind one small ``Store`` protocol."""

from __future__ import annotations

import errno
import fcntl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ProgrammingError

from sinks.clickhouse.settings import ClickHouseSettings

__all__ = ["Client", "QueryResultLike", "Store", "StoreLockedError", "connect", "resolve_url"]


class StoreLockedError(RuntimeError):
    """The embedded store's directory is held by another process."""


@runtime_checkable
class QueryResultLike(Protocol):
    """What callers read from a query result: column names and rows."""

    @property
    def column_names(self) -> Sequence[str]: ...

    @property
    def result_rows(self) -> Sequence[Sequence[Any]]: ...


class Store(Protocol):
    """The calls the sinks make; a clickhouse-connect ``Client`` satisfies it."""

    def command(
        self,
        cmd: str,
        parameters: Sequence[Any] | dict[str, Any] | None = None,
        data: str | bytes | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any: ...

    def query(
        self,
        query: str | None = None,
        parameters: Sequence[Any] | dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        *,
        column_formats: dict[str, str | dict[str, str]] | None = None,
    ) -> Any: ...

    def insert(
        self,
        table: str | None = None,
        data: Sequence[Sequence[Any]] | None = None,
        column_names: str | Sequence[str] | None = "*",
        database: str | None = None,
        *,
        column_oriented: bool = False,
        settings: dict[str, Any] | None = None,
    ) -> Any: ...

    def raw_insert(
        self,
        table: str,
        column_names: Sequence[str] | None = None,
        insert_block: str | bytes | None = None,
        settings: dict[str, Any] | None = None,
        fmt: str | None = None,
    ) -> Any: ...


def resolve_url(settings: ClickHouseSettings, data_dir: Path | str) -> str:
    """The URL to open: ``settings.url``, or ``chdb://<data_dir>/clickhouse`` when it is empty."""
    if settings.url:
        return settings.url
    path = (Path(data_dir) / "clickhouse").resolve()
    return f"chdb://{path}"


def connect(settings: ClickHouseSettings, data_dir: Path | str) -> Client:
    """Open a client for ``settings.url`` (chDB when empty); the database is not selected here."""
    url = resolve_url(settings, data_dir)
    parsed = urlparse(url)
    if parsed.scheme == "chdb":
        return _connect_chdb(parsed.path or parsed.netloc)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"unsupported ClickHouse URL scheme {parsed.scheme!r} in {url!r}")
    # The database named in the URL path is ignored on purpose: every statement names
    # ``settings.database`` explicitly, and the database may not exist before migrate().
    return clickhouse_connect.get_client(
        interface=parsed.scheme,
        host=parsed.hostname or "localhost",
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        username=parsed.username or "default",
        password=parsed.password or "",
        compress=True,
    )


def _connect_chdb(path: str) -> Client:
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(dsn=f"chdb://{directory.resolve()}")
    except ProgrammingError as exc:
        text = str(exc)
        if _status_file_locked(directory):
            raise StoreLockedError(
                f"the embedded store at {directory} is open in another process (the running "
                "worker?); query through its HTTP API or stop it"
            ) from exc
        if "already initialized with path" in text:
            raise StoreLockedError(
                f"this process already opened a chDB store at another path; chDB allows one "
                f"data directory per process, cannot open {directory}"
            ) from exc
        raise


def _status_file_locked(directory: Path) -> bool:
    """True when another process holds the engine's lock on ``<dir>/status``."""
    status = directory / "status"
    if not status.exists():
        return False
    with status.open("rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


class SerializedStore:
    """A ``Store`` whose calls run one at a time: a chDB session is not safe across threads,
    and the writers and the API share one."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def command(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return self.inner.command(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return self.inner.query(*args, **kwargs)

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return self.inner.insert(*args, **kwargs)

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return self.inner.raw_insert(*args, **kwargs)
