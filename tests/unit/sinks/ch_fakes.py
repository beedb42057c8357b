"""A fake Store for unit tests of the ClickHouse sink (the real one is in tests/integration)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeResult:
    column_names: list[str]
    result_rows: list[tuple[Any, ...]]


@dataclass
class FakeStore:
    """Records commands and inserts; ``fail_insert`` may raise to simulate refusals/outages."""

    commands: list[str] = field(default_factory=list)
    queries: list[tuple[str, Any]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    result: FakeResult = field(default_factory=lambda: FakeResult([], []))
    fail_insert: Callable[[list[tuple[Any, ...]]], None] | None = None

    def command(self, cmd: str, parameters: Any = None, data: Any = None,
                settings: dict[str, Any] | None = None) -> Any:
        self.commands.append(cmd)
        return None

    def query(self, query: str | None = None, parameters: Any = None,
              settings: dict[str, Any] | None = None, *, column_formats: Any = None
              ) -> FakeResult:
        self.queries.append((query or "", parameters))
        return self.result

    def insert(self, table: str | None = None, data: Sequence[Sequence[Any]] | None = None,
               column_names: Any = "*", database: str | None = None, *,
               column_oriented: bool = False, settings: dict[str, Any] | None = None) -> Any:
        data = data or []
        rows = [tuple(r) for r in (zip(*data, strict=True) if column_oriented else data)]
        if self.fail_insert is not None:
            self.fail_insert(rows)
        self.inserts.append({"table": table, "database": database, "rows": rows,
                             "columns": list(column_names), "settings": dict(settings or {})})
        return None

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        return [r for i in self.inserts for r in i["rows"]]
