"""Versioned, idempotent schema migrations: ``migrations/NNNN_name.sql`` applied in order, once.

Adding a table is adding ``migrations/0002_templates.sql``; ``migrate`` runs at every start-up
and applies only the versions missing from ``{db}.schema_migrations``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from sinks.clickhouse.client import Store
from sinks.clickhouse.settings import ClickHouseSettings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

log = structlog.get_logger(__name__)


class MigrationError(RuntimeError):
    """A migration file is malformed or its templating fails."""


@dataclass(frozen=True)
class Migration:
    """One migration file: its version, name and raw (untemplated) SQL."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the raw file, to notice an applied migration that was edited later."""
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        """``0001_core``: the file's stem."""
        return f"{self.version:04d}_{self.name}"


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read ``NNNN_name.sql`` files, sorted by version; a duplicate version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_snake.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} also used by {found[version].label}")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def template_context(settings: ClickHouseSettings) -> dict[str, str]:
    """Placeholder values: ``db`` and every ``ttl_*_days`` field of the settings."""
    if not _IDENTIFIER.match(settings.database):
        raise MigrationError(f"database name {settings.database!r} is not a plain identifier")
    values = settings.model_dump()
    context = {key: str(int(value)) for key, value in values.items() if key.startswith("ttl_")}
    context["db"] = settings.database
    return context


def render(sql: str, context: Mapping[str, str], *, source: str = "<sql>") -> str:
    """Replace ``{name}`` placeholders; ClickHouse ``{x:Type}`` parameters are left alone."""

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in context:
            raise MigrationError(f"{source}: unknown placeholder {{{key}}}")
        return context[key]

    return _PLACEHOLDER.sub(substitute, sql)


def split_statements(sql: str) -> list[str]:
    """Split on ``;`` at line ends, dropping ``--`` comment lines and empty statements."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";").strip())
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return [s for s in statements if s]


def applied_versions(store: Store, database: str) -> dict[int, str]:
    """Version -> checksum of the migrations recorded in ``{db}.schema_migrations``."""
    result = store.query(f"SELECT version, checksum FROM {database}.schema_migrations FINAL")
    return {int(version): str(checksum) for version, checksum in result.result_rows}


def migrate(
    store: Store, settings: ClickHouseSettings, migrations: Sequence[Migration] | None = None
) -> list[Migration]:
    """Create the database and apply the missing migrations in order; returns those applied."""
    context = template_context(settings)
    db = context["db"]
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC')) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = applied_versions(store, db)
    applied: list[Migration] = []
    for migration in load_migrations() if migrations is None else migrations:
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                log.warning("migration_changed_after_apply", migration=migration.label)
            continue
        for statement in split_statements(render(migration.sql, context, source=migration.label)):
            store.command(statement)
        store.insert(
            f"{db}.schema_migrations",
            [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
            ["version", "name", "checksum", "applied_at"],
        )
        log.info("migration_applied", migration=migration.label, database=db)
        applied.append(migration)
    return applied
