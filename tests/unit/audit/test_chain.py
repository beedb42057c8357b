"""The audit hash chain: any edited, deleted, forged or cut row is named by ``verify``."""

from __future__ import annotations

from typing import Any

import pytest

from audit.chain import chain_row, verify

KEY = b"audit-key"


def chain(writer: str, n: int, key: bytes = KEY) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rows.append(chain_row(writer, i, rows[-1]["hash"] if rows else "", 1_000 + i,
                              f"user{i % 3}", "responder", "query", "/api/query",
                              f"SELECT {i}", "200", key))
    return rows


def test_an_intact_chain_verifies() -> None:
    rows = chain("a", 20) + chain("b", 5)
    v = verify(rows, KEY, {"a": (19, rows[19]["hash"]), "b": (4, rows[24]["hash"])})
    assert v.ok and v.rows == 25 and v.writers == 2


@pytest.mark.parametrize("field", ["actor", "detail", "outcome", "ts_ms", "action", "role"])
def test_an_edited_row_is_named(field: str) -> None:
    rows = chain("a", 10)
    rows[4][field] = 999 if field == "ts_ms" else "changed"
    v = verify(rows, KEY)
    assert not v.ok and v.problems == [
        f"writer a seq 4: its content does not match its hash (edited: "
        f"{rows[4]['action']} by {rows[4]['actor']})"]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    rows = chain("a", 10)
    rows[4]["detail"] = "SELECT nothing to see"
    rows[4]["hash"] = chain_row(**{k: rows[4][k] for k in (
        "writer", "seq", "prev_hash", "ts_ms", "actor", "role", "action", "target", "detail",
        "outcome")}, key=b"guessed-key")["hash"]
    problems = verify(rows, KEY).problems
    assert any(p.startswith("writer a seq 4: its content") for p in problems)
    assert any(p.startswith("writer a seq 5: does not link") for p in problems)


def test_a_deleted_row_is_named() -> None:
    rows = chain("a", 10)
    del rows[6]
    assert verify(rows, KEY).problems == ["writer a seq 6: missing (deleted) before seq 7"]
    del rows[0]
    assert "writer a seq 0: missing (deleted) before seq 1" in verify(rows, KEY).problems


def test_deleted_last_rows_are_caught_by_the_anchor() -> None:
    rows = chain("a", 10)
    anchor = {"a": (9, rows[9]["hash"])}
    assert verify(rows[:8], KEY, anchor).problems == [
        "writer a seq 8-9: missing (deleted) at the end of the chain; the anchor holds seq 9"]
    assert verify([], KEY, anchor).problems == [
        "writer a seq 0-9: missing (deleted) at the end of the chain; the anchor holds seq 9"]


def test_a_whole_rewritten_chain_without_the_key_fails() -> None:
    forged = chain("a", 5, key=b"not-the-key")
    v = verify(forged, KEY)
    assert len(v.problems) == 5


def test_a_duplicated_row_is_named() -> None:
    rows = chain("a", 4)
    rows.append(dict(rows[2]))
    assert verify(rows, KEY).problems == [
        "writer a seq 2: duplicate row (inserted twice or forged)"]
