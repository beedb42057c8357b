"""deploy/grafana: the provisioned datasource and dashboards are valid and query real columns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "deploy" / "grafana"
MIGRATIONS = ROOT / "sinks" / "clickhouse" / "migrations"
PLUGIN = "grafana-clickhouse-datasource"
# Words in SQL that are not columns: keywords, functions, macros, aliases are handled below.
_KEYWORDS = {"select", "from", "where", "and", "or", "as", "group", "by", "order", "desc",
             "asc", "limit", "final", "in", "having", "not", "distinct", "time", "logwarden"}


def schema() -> dict[str, set[str]]:
    """table -> columns, parsed from every migration."""
    tables: dict[str, set[str]] = {}
    for sql in sorted(MIGRATIONS.glob("*.sql")):
        for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)\s*\((.*?)\n\)",
                                     sql.read_text(), re.S):
            tables[name] = {line.split()[0] for line in body.strip().splitlines()
                            if line.strip() and not line.strip().startswith("--")}
    return tables


def dashboards() -> list[tuple[str, dict[str, object]]]:
    """The ClickHouse dashboards (workers.json reads Prometheus: test_worker_dashboard.py)."""
    found = [(p.name, json.loads(p.read_text()))
             for p in sorted((GRAFANA / "dashboards").glob("*.json"))]
    return [(name, d) for name, d in found
            if any(panel["datasource"]["type"] == PLUGIN for panel in d["panels"])]


def test_datasource_uses_the_clickhouse_plugin() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/clickhouse.yaml").read_text())
    (ds,) = doc["datasources"]  # the Prometheus one is in prometheus.yaml
    assert ds["type"] == PLUGIN and ds["jsonData"]["defaultDatabase"] == "logwarden"


def test_fleet_and_service_dashboards_exist() -> None:
    assert {name for name, _ in dashboards()} == {"fleet.json", "service.json"}


@pytest.mark.parametrize(("name", "dash"), dashboards())
def test_panels_query_existing_tables_and_columns(name: str, dash: dict[str, object]) -> None:
    tables = schema()
    panels = dash["panels"]
    assert isinstance(panels, list) and panels and len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["type"] == PLUGIN, panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        for target in panel["targets"]:
            sql = target["rawSql"]
            used = re.findall(r"logwarden\.(\w+)", sql)
            assert used and all(t in tables for t in used), (panel["title"], used)
            known = set().union(*(tables[t] for t in used))
            aliases = set(re.findall(r"\bAS (\w+)", sql))
            code = re.sub(r"'[^']*'", "''", sql)  # string literals are not identifiers
            words = {w for w in re.findall(r"(?<![\w$.])([a-z_][a-z0-9_]*)\b(?!\s*\()", code)}
            unknown = words - known - aliases - _KEYWORDS - set(used) - {"null"}
            unknown = {w for w in unknown if not w.startswith("__")}
            assert not unknown, f"{name} / {panel['title']}: unknown columns {unknown}"
