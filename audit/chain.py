"""The hash chain of the audit table, as pure functions: link a row, verify a table.

Each writer (one process: ``api@host:pid:start``) numbers its rows 0, 1, 2, ... and each
row's ``hash`` is an HMAC-SHA256 (key ``LOGWARDEN_AUDIT_KEY``; plain SHA-256 without one)
over the row's fields and the previous row's hash. So:

- an edited row no longer matches its hash (and a forged hash breaks the next row's link);
- a deleted row leaves a gap in its writer's numbers, or cuts the link after it;
- a deleted *last* row leaves no gap: each writer's latest (seq, hash) is also kept
  outside the table (the anchor, ``<data dir>/audit/anchors``), and a chain shorter than
  its anchor, or whose row at the anchor differs, fails too.

>>> rows = [chain_row("w", 0, "", 1000, "alice", "admin", "token.create", "bob", "", "ok", b"k")]
>>> rows.append(chain_row("w", 1, rows[0]["hash"], 2000, "bob", "viewer", "query", "", "SELECT 1",
...                       "200", b"k"))
>>> verify(rows, b"k").ok
True
>>> rows[0]["detail"] = "edited"
>>> [p.split(":")[0] for p in verify(rows, b"k").problems]
['writer w seq 0']
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

FIELDS = ("ts_ms", "writer", "seq", "actor", "role", "action", "target", "detail", "outcome",
          "prev_hash")


def link(row: Mapping[str, Any], key: bytes) -> str:
    """The hash of ``row`` (its ``FIELDS``, ``prev_hash`` included), hex."""
    payload = orjson.dumps([row[f] for f in FIELDS])
    if key:
        return hmac.new(key, payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


def chain_row(writer: str, seq: int, prev_hash: str, ts_ms: int, actor: str, role: str,
              action: str, target: str, detail: str, outcome: str,
              key: bytes) -> dict[str, Any]:
    """A new audit row linked to ``prev_hash`` (the writer's previous row's hash)."""
    row: dict[str, Any] = {"ts_ms": int(ts_ms), "writer": writer, "seq": seq, "actor": actor,
                           "role": role, "action": action, "target": target,
                           "detail": detail, "outcome": outcome, "prev_hash": prev_hash}
    row["hash"] = link(row, key)
    return row


@dataclass
class Verification:
    """What ``verify`` found: rows and writers checked, and each problem naming its row."""

    rows: int = 0
    writers: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(rows: Iterable[Mapping[str, Any]], key: bytes,
           anchors: Mapping[str, tuple[int, str]] | None = None) -> Verification:
    """Check every writer's chain: numbers from 0 without gaps, each link, each hash, and
    that no chain ends before its anchor (writer -> (seq, hash) of its latest row)."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    out = Verification()
    for r in rows:
        by.setdefault(str(r["writer"]), []).append(r)
        out.rows += 1
    out.writers = len(by)
    for writer, mine in sorted(by.items()):
        mine.sort(key=lambda r: int(r["seq"]))
        expect, prev = 0, ""
        for r in mine:
            seq = int(r["seq"])
            where = f"writer {writer} seq {seq}"
            if seq < expect:
                out.problems.append(f"{where}: duplicate row (inserted twice or forged)")
                continue
            if seq > expect:
                gone = f"{expect}" if seq == expect + 1 else f"{expect}-{seq - 1}"
                out.problems.append(f"writer {writer} seq {gone}: missing (deleted) before "
                                    f"seq {seq}")
                prev = str(r["prev_hash"])  # judge the rest of the chain on its own links
            elif str(r["prev_hash"]) != prev:
                out.problems.append(f"{where}: does not link to the row before it (that row "
                                    "was changed, or this one)")
            if link(r, key) != str(r["hash"]):
                out.problems.append(f"{where}: its content does not match its hash (edited: "
                                    f"{r['action']} by {r['actor']})")
            expect, prev = seq + 1, str(r["hash"])
    for writer, (seq, digest) in sorted((anchors or {}).items()):
        mine = by.get(writer, [])
        last = int(mine[-1]["seq"]) if mine else -1
        if last < seq:
            gone = f"{seq}" if last + 1 == seq else f"{last + 1}-{seq}"
            out.problems.append(f"writer {writer} seq {gone}: missing (deleted) at the end of "
                                f"the chain; the anchor holds seq {seq}")
        else:
            at = next((r for r in mine if int(r["seq"]) == seq), None)
            if at is not None and str(at["hash"]) != digest:
                out.problems.append(f"writer {writer} seq {seq}: differs from its anchor")
    return out
