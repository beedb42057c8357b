"""deploy/grafana: the Prometheus datasource and the workers dashboard, whose queries name
only metrics the workers and the OTLP receiver export (lag, throughput, insert latency,
dead letters)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "deploy" / "grafana"
SOURCES = [ROOT / "streams" / "metrics.py", ROOT / "web" / "otlp.py"]


def exported() -> set[str]:
    """Metric names as Prometheus sees them (counters get ``_total``)."""
    names: set[str] = set()
    for path in SOURCES:
        text = path.read_text()
        names |= {n + "_total" for n in re.findall(
            r'\bCounter(?:MetricFamily)?\(\s*"(logwarden_\w+)"', text)}
        names |= set(re.findall(r'\bGaugeMetricFamily\(\s*"(logwarden_\w+)"', text))
    return names


def test_prometheus_datasource() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["uid"] == "logwarden-prom"
    assert ds["url"].startswith("${PROMETHEUS_URL")


def test_every_dashboard_is_provisioned() -> None:
    names = {p.name for p in (GRAFANA / "dashboards").glob("*.json")}
    assert names == {"fleet.json", "service.json", "workers.json"}


def test_workers_dashboard_queries_exported_metrics() -> None:
    dash = json.loads((GRAFANA / "dashboards" / "workers.json").read_text())
    known = exported()
    assert {"logwarden_consumer_lag", "logwarden_events_in_total",
            "logwarden_insert_latency_seconds", "logwarden_dead_letters_total"} <= known
    used: set[str] = set()
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "logwarden-prom"}
        for target in panel["targets"]:
            names = set(re.findall(r"\blogwarden_\w+", target["expr"]))
            assert names and names <= known, (panel["title"], names - known)
            used |= names
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("lag", "throughput", "insert latency", "dead letters"):
        assert topic in titles
    assert {"logwarden_consumer_lag", "logwarden_insert_latency_seconds",
            "logwarden_dead_letters_total", "logwarden_events_in_total"} <= used
