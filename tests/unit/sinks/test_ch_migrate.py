from __future__ import annotations

from pathlib import Path

import pytest
from ch_fakes import FakeResult, FakeStore

from sinks.clickhouse.migrate import (
    Migration,
    MigrationError,
    load_migrations,
    migrate,
    render,
    split_statements,
    template_context,
)
from sinks.clickhouse.settings import ClickHouseSettings


def test_render_fills_db_and_ttl_and_leaves_query_parameters_alone() -> None:
    ctx = template_context(ClickHouseSettings(database="lw_test", ttl_logs_days=7))
    sql = render("CREATE TABLE {db}.t TTL ts + INTERVAL {ttl_logs_days} DAY; "
                 "SELECT {x:String}", ctx)
    assert sql == "CREATE TABLE lw_test.t TTL ts + INTERVAL 7 DAY; SELECT {x:String}"


def test_render_refuses_unknown_placeholder_naming_the_file() -> None:
    with pytest.raises(MigrationError, match=r"0003_x: unknown placeholder \{nope\}"):
        render("SELECT {nope}", {"db": "d"}, source="0003_x")


def test_database_name_must_be_an_identifier() -> None:
    with pytest.raises(MigrationError):
        template_context(ClickHouseSettings(database="x; DROP TABLE y"))


def test_split_statements_drops_comments_and_blank_statements() -> None:
    sql = "-- header; with semicolon\nCREATE TABLE a\n(x UInt8);\n\n;\nCREATE TABLE b (y UInt8)\n"
    assert split_statements(sql) == ["CREATE TABLE a\n(x UInt8)", "CREATE TABLE b (y UInt8)"]


def test_load_orders_by_version_not_name(tmp_path: Path) -> None:
    (tmp_path / "0010_later.sql").write_text("SELECT 10;")
    (tmp_path / "0002_earlier.sql").write_text("SELECT 2;")
    assert [m.label for m in load_migrations(tmp_path)] == ["0002_earlier", "0010_later"]


@pytest.mark.parametrize(
    ("names", "message"),
    [(["0001_a.sql", "0001_b.sql"], "also used by"), (["1_bad.sql"], "NNNN_lower_snake")],
)
def test_load_refuses_bad_files(tmp_path: Path, names: list[str], message: str) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_shipped_migrations_render_to_idempotent_statements() -> None:
    settings = ClickHouseSettings(database="lw", ttl_logs_days=3)
    ctx = template_context(settings)
    migrations = load_migrations()
    assert migrations[0].label == "0001_core"
    statements = [s for m in migrations for s in split_statements(render(m.sql, ctx))]
    creates = [s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS lw.")]
    alters = [s for s in statements if s.startswith("ALTER TABLE lw.")]
    assert len(creates) + len(alters) == len(statements)  # nothing else, all in our database
    # a re-run after a crash between statements must not fail: every ADD is IF NOT EXISTS
    assert all(line.strip().startswith("ADD COLUMN IF NOT EXISTS")
               for s in alters for line in s.splitlines()[1:])
    tables = {s.split()[5].split(".")[1] for s in creates}
    assert {"logs", "metric_points", "windows", "dead_letters", "changes", "feedback"} <= tables
    logs = next(s for s in statements if " lw.logs" in s)
    assert "INTERVAL 3 DAY" in logs and "non_replicated_deduplication_window" in logs


def test_migrate_applies_only_missing_versions() -> None:
    store = FakeStore()
    first = Migration(1, "one", "CREATE TABLE IF NOT EXISTS {db}.a (x UInt8);")
    second = Migration(2, "two", "CREATE TABLE IF NOT EXISTS {db}.b (x UInt8);")
    settings = ClickHouseSettings(database="lw")
    store.result = FakeResult(["version", "checksum"], [(1, first.checksum)])
    applied = migrate(store, settings, [first, second])
    assert [m.version for m in applied] == [2]
    assert "CREATE TABLE IF NOT EXISTS lw.b (x UInt8)" in store.commands
    assert not any("lw.a" in c for c in store.commands)
    assert store.inserts[0]["table"] == "lw.schema_migrations"
    assert store.inserts[0]["rows"][0][:2] == (2, "two")
