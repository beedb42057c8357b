"""Writing and reading the audit table: one ``AuditTrail`` per process, a spool for CLI
commands that cannot reach the store, and the anchors kept beside the data.

``record`` is synchronous and inserts at once (audit rows are few: writes, queries, token
creations, acknowledgements, silences, reloads). A row that fails to insert stays pending
and goes first at the next ``record``/``flush``, in order, so its writer's chain has no
gap. Embedded mode: the worker holds chDB, so a CLI command (``logwarden token create``)
appends its event to ``<data dir>/audit/spool.jsonl`` and the worker's trail records it
(with the CLI's actor) at its next call or within ``SPOOL_CHECK_S``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

from audit.chain import chain_row
from sinks.clickhouse.client import Store
from sinks.clickhouse.queries.base import ident, query_rows

log = structlog.get_logger(__name__)

COLUMNS = ("ts", "writer", "seq", "actor", "role", "action", "target", "detail", "outcome",
           "prev_hash", "hash")
MAX_DETAIL = 4000  # characters of a query or request body kept
SPOOL_CHECK_S = 5.0


def audit_dir(data_dir: Path) -> Path:
    """Where the spool and the anchors live."""
    return data_dir / "audit"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def spool(data_dir: Path, actor: str, role: str, action: str, target: str = "",
          detail: str = "", outcome: str = "ok") -> None:
    """Queue an event for the process that holds the store (embedded mode's CLI)."""
    path = audit_dir(data_dir) / "spool.jsonl"
    line = json.dumps({"ts_ms": int(time.time() * 1000), "actor": actor, "role": role,
                       "action": action, "target": target, "detail": detail[:MAX_DETAIL],
                       "outcome": outcome})
    with _locked(path), path.open("a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_anchors(data_dir: Path) -> dict[str, tuple[int, str]]:
    """Every writer's latest (seq, hash) kept outside the table."""
    out: dict[str, tuple[int, str]] = {}
    for p in sorted((audit_dir(data_dir) / "anchors").glob("*.json")):
        try:
            d = json.loads(p.read_text())
            out[str(d["writer"])] = (int(d["seq"]), str(d["hash"]))
        except (OSError, ValueError, KeyError):
            log.warning("audit_anchor_unreadable", path=str(p))
    return out


class AuditTrail:
    """This process's chain: ``record`` appends one row to the audit table."""

    def __init__(self, store: Store, database: str, component: str, key: bytes,
                 data_dir: Path) -> None:
        self.store, self.db, self.key, self.data_dir = store, ident(database), key, data_dir
        self.writer = f"{component}@{socket.gethostname()}:{os.getpid()}:{int(time.time())}"
        self._seq, self._prev = 0, ""
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._spool_at = 0.0
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.writer)
        self._anchor = audit_dir(data_dir) / "anchors" / f"{safe}.json"

    def record(self, actor: str, role: str, action: str, target: str = "", detail: str = "",
               outcome: str = "ok", ts_ms: int | None = None) -> dict[str, Any]:
        """Append one event (and any spooled ones first); returns its row."""
        self._drain_spool(force=False)
        with self._lock:
            row = self._add(actor, role, action, target, detail, outcome, ts_ms)
            self._flush()
        return row

    def config_reload(self, path: str, outcome: str, detail: str) -> None:
        """Record a configuration reload (loaded or refused) by the process itself."""
        self.record("system", "", "config.reload", path, detail, outcome)

    def flush(self) -> int:
        """Insert the pending rows and spooled events; returns how many are still pending."""
        self._drain_spool(force=True)
        with self._lock:
            self._flush()
            return len(self._pending)

    def _add(self, actor: str, role: str, action: str, target: str, detail: str,
             outcome: str, ts_ms: int | None) -> dict[str, Any]:
        row = chain_row(self.writer, self._seq, self._prev,
                        int(time.time() * 1000) if ts_ms is None else ts_ms, actor, role or "",
                        action, target[:1000], detail[:MAX_DETAIL], outcome, self.key)
        self._seq, self._prev = self._seq + 1, row["hash"]
        self._pending.append(row)
        return row

    def _flush(self) -> None:
        if not self._pending:
            return
        data = [[r["ts_ms"] if c == "ts" else r[c] for c in COLUMNS] for r in self._pending]
        try:
            self.store.insert(f"{self.db}.audit", data, column_names=list(COLUMNS))
        except Exception as exc:  # kept pending, in order: retried at the next call
            log.error("audit_insert_failed", pending=len(self._pending), error=str(exc)[:300])
            return
        last = self._pending[-1]
        self._pending.clear()
        self._anchor.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._anchor.with_suffix(".tmp")
        tmp.write_text(json.dumps({"writer": self.writer, "seq": last["seq"],
                                   "hash": last["hash"]}))
        tmp.replace(self._anchor)

    def _drain_spool(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._spool_at < SPOOL_CHECK_S:
            return
        self._spool_at = now
        path = audit_dir(self.data_dir) / "spool.jsonl"
        if not path.exists():
            return
        with _locked(path):
            try:
                lines = path.read_text().splitlines()
            except FileNotFoundError:
                return
            with self._lock:
                for line in lines:
                    try:
                        e = json.loads(line)
                        self._add(str(e["actor"]), str(e["role"]), str(e["action"]),
                                  str(e.get("target", "")), str(e.get("detail", "")),
                                  str(e.get("outcome", "ok")), int(e["ts_ms"]))
                    except (ValueError, KeyError, TypeError):
                        log.error("audit_spool_line_bad", line=line[:200])
                self._flush()
                if not self._pending:
                    path.unlink()


def audit_rows(store: Store, database: str, where: str = "",
               params: dict[str, Any] | None = None, limit: int | None = None
               ) -> list[dict[str, Any]]:
    """Rows of the audit table (``ts_ms`` as epoch ms), by writer and seq."""
    sql = (f"SELECT toUnixTimestamp64Milli(ts) AS ts_ms, writer, seq, actor, role, action, "
           f"target, detail, outcome, prev_hash, hash FROM {ident(database)}.audit "
           f"{'WHERE ' + where if where else ''} ORDER BY writer, seq"
           f"{f' LIMIT {int(limit)}' if limit else ''}")
    cols, rows = query_rows(store, sql, params or {})
    out = []
    for r in rows:
        d = dict(zip(cols, r, strict=True))
        d["ts_ms"], d["seq"] = int(d["ts_ms"]), int(d["seq"])
        out.append(d)
    return out
