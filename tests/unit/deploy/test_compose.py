"""deploy/compose and deploy/Dockerfile, checked without a Docker daemon or compose plugin.

`docker compose config` is not installable here (Docker's client is, its compose plugin is
not), so the file is checked the way it does: variables interpolated (``${X:-default}``,
``${X:?message}``), then validated against the Compose Specification's JSON schema
(``compose-spec.schema.json``, vendored from the npm package dclint 3.1.0, which ships the
current compose-spec schema), then the references a schema cannot see: services,
volumes, files on disk, and the commands the `logwarden` CLI really has.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_DIR = ROOT / "deploy" / "compose"
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.schema.json").read_text())
ENV = {"CLICKHOUSE_PASSWORD": "0123abcd", "OTLP_TOKEN": "feed"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class InterpolationError(ValueError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (the subset compose files use)."""
    def sub(m: re.Match[str]) -> str:
        name, op, arg = m[1], m[2], m[3] or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op and op.endswith("?") and unset:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return value or ""
    return _VAR.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


def load(env: dict[str, str] = ENV) -> dict[str, Any]:
    doc = yaml.safe_load(interpolate((COMPOSE_DIR / "compose.yaml").read_text(), env))
    assert isinstance(doc, dict)
    return doc


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(load())


def test_the_schema_check_catches_mistakes() -> None:
    doc = load()
    doc["services"]["worker"]["deploy"]["replicas"] = [2]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(doc)
    doc = load()
    doc["services"]["worker"]["restrat"] = "always"
    with pytest.raises(jsonschema.ValidationError, match="restrat"):
        jsonschema.Draft7Validator(SCHEMA).validate(doc)


def test_secrets_must_be_given() -> None:
    with pytest.raises(InterpolationError, match=r"set CLICKHOUSE_PASSWORD in \.env"):
        load({"OTLP_TOKEN": "x"})


def test_services_kafka_clickhouse_workers_api_grafana() -> None:
    services = load()["services"]
    assert {"kafka", "clickhouse", "worker", "api", "collector", "grafana",
            "prometheus", "migrate"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] == 2
    assert load({**ENV, "WORKERS": "5"})["services"]["worker"]["deploy"]["replicas"] == 5
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    env = services["worker"]["environment"]
    assert env["LOGWARDEN_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["LOGWARDEN_CLICKHOUSE_URL"] == "http://logwarden:0123abcd@clickhouse:8123"
    assert services["collector"]["environment"]["LOGWARDEN_OTLP_TOKEN"] == "feed"


def test_references_resolve() -> None:
    from typer.main import get_command

    from cli.main import cli

    commands = set(get_command(cli).commands)  # type: ignore[attr-defined]
    doc = load()
    services, volumes = doc["services"], set(doc.get("volumes", {}))
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, (name, dep)
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), (name, source)
            else:
                assert source in volumes, (name, source)
        if "build" in svc:
            context = COMPOSE_DIR / svc["build"]["context"]
            assert (context / svc["build"]["dockerfile"]).is_file()
            assert svc["command"][0] in commands, (name, svc["command"])


def test_dockerfile_installs_every_package() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["wheel"]["packages"]
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", text, re.M))
    assert copied == set(packages)
    assert re.search(r"^EXPOSE .*\b6066\b.*\b4318\b", text, re.M)
    assert 'ENTRYPOINT ["logwarden"]' in text


def test_prometheus_scrapes_workers_and_collector() -> None:
    doc = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert jobs["logwarden-worker"]["dns_sd_configs"][0]["port"] == 6066
    assert jobs["logwarden-collector"]["static_configs"][0]["targets"] == ["collector:4318"]
