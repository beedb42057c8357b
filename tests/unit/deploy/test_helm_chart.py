"""deploy/helm/logwarden: `helm lint` and `helm template` with the helm that `make helm`
builds from the Go module proxy (LOGWARDEN_TEST_HELM; `make test` provides it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "logwarden"


def helm_bin() -> str:
    given = os.environ.get("LOGWARDEN_TEST_HELM")
    if given and Path(given).is_file():
        return given
    found = shutil.which("helm")
    if found is None:  # a failure, not a skip: the chart would go untested
        pytest.fail("helm not found: run `make helm` (or `make test`), or set "
                    "LOGWARDEN_TEST_HELM to a helm binary")
    return found


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache",
                               "HELM_CONFIG_HOME": "/tmp/helm-config"})


def render(*sets: str) -> list[dict[str, Any]]:
    args = [a for s in sets for a in ("--set", s)]
    out = helm("template", "lw", str(CHART), *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_lint() -> None:
    out = helm("lint", "--strict", str(CHART))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_workers_scale_on_consumer_lag_with_keda_by_default() -> None:
    docs = render()
    (worker,) = by_kind(docs, "Deployment", "-worker")
    assert "replicas" not in worker["spec"]  # the autoscaler owns it
    (scaled,) = by_kind(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "logwarden-ingest"
    assert trigger["metadata"]["lagThreshold"] == "50000"
    assert scaled["spec"]["maxReplicaCount"] <= 12  # kafka.partitions
    assert not by_kind(docs, "HorizontalPodAutoscaler")


def test_hpa_on_the_lag_metric_or_fixed_replicas() -> None:
    docs = render("autoscaling.mode=hpa", "autoscaling.lagThreshold=1000")
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "logwarden_consumer_lag"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1000"}
    assert not by_kind(docs, "ScaledObject")
    docs = render("autoscaling.mode=none", "worker.replicas=3")
    assert by_kind(docs, "Deployment", "-worker")[0]["spec"]["replicas"] == 3
    assert not by_kind(docs, "ScaledObject") and not by_kind(docs, "HorizontalPodAutoscaler")


def test_refuses_bad_values() -> None:
    out = helm("template", "lw", str(CHART), "--set", "autoscaling.mode=cpu")
    assert out.returncode != 0 and "autoscaling.mode must be keda, hpa or none" in out.stderr
    out = helm("template", "lw", str(CHART), "--set", "autoscaling.maxReplicas=20")
    assert out.returncode != 0 and "must not exceed kafka.partitions" in out.stderr


def test_probes_addresses_and_secrets() -> None:
    docs = render("kafka.bootstrap=kafka-0.kafka:9093", "clickhouse.host=ch.db",
                  "clickhouse.secure=true", "clickhouse.port=8443", "secrets.name=lw-secrets",
                  "worker.otlp=true")
    deployments = {d["metadata"]["name"].rsplit("-", 1)[1]: d
                   for d in by_kind(docs, "Deployment")}
    assert set(deployments) == {"worker", "api", "collector"}
    for name, d in deployments.items():
        c = container(d)
        assert c["args"] == [name]
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["path"] == "/api/health", (name, probe)
        env = {e["name"]: e for e in c["env"]}
        assert env["LOGWARDEN_KAFKA_BOOTSTRAP"]["value"] == "kafka-0.kafka:9093"
        assert env["CLICKHOUSE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "lw-secrets", "key": "clickhouse-password"}
        # the password reaches the URL through Kubernetes' $(VAR) expansion, never a value
        assert env["LOGWARDEN_CLICKHOUSE_URL"]["value"] == \
            "https://logwarden:$(CLICKHOUSE_PASSWORD)@ch.db:8443"
        names = list(env)
        assert names.index("CLICKHOUSE_PASSWORD") < names.index("LOGWARDEN_CLICKHOUSE_URL")
        if name in ("collector", "worker"):
            assert env["LOGWARDEN_OTLP_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "otlp-token"
    (job,) = by_kind(docs, "Job")
    assert container(job)["args"] == ["migrate"]
    assert "pre-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    rendered = yaml.safe_dump_all(docs)
    assert "kind: Secret" not in rendered  # the chart reads a Secret, never writes one
