"""The local Kafka's config, prerequisite checks and CLI errors, without starting Java."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import devstack.kafka as kl
from cli import common
from cli.kafka import kafka_app
from devstack.kafka import LocalKafka
from schemas.errors import SetupError
from streams.settings import KafkaSettings, Settings


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def fake_tool(bindir: Path, name: str, script: str) -> None:
    """An executable shell script standing in for `java` or `mvn`."""
    bindir.mkdir(exist_ok=True)
    path = bindir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def only_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH reduced to one empty folder: no java, no mvn unless a test puts them there."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    return bindir


def test_server_properties_one_node_on_loopback(tmp_path: Path) -> None:
    p = props(kl.server_properties(29092, 29093, tmp_path / "data"))
    assert p["process.roles"] == "broker,controller"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert p["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert p["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert p["log.dirs"] == str(tmp_path / "data")
    # single broker: internal topics must not ask for 3 replicas
    assert p["offsets.topic.replication.factor"] == "1"
    assert p["transaction.state.log.replication.factor"] == "1"
    assert p["auto.create.topics.enable"] == "true"
    assert p["delete.topic.enable"] == "true"


def test_log4j2_writes_to_the_log_file_only(tmp_path: Path) -> None:
    text = kl.log4j2_properties(tmp_path / "kafka.log")
    assert f"appender.file.fileName = {tmp_path / 'kafka.log'}" in text
    assert "Console" not in text


def test_from_settings_places_broker_under_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, kafka=KafkaSettings(local_port=30001))
    k = LocalKafka.from_settings(s)
    assert (k.dir, k.port, k.controller_port) == (tmp_path / "kafka", 30001, 30002)
    assert k.bootstrap == "127.0.0.1:30001"
    assert k.cache_dir == kl.default_cache_dir()
    assert kl.default_cache_dir() == kl.POM.parents[2] / ".cache" / "kafka"
    s2 = Settings(data_dir=tmp_path, kafka=KafkaSettings(cache_dir=tmp_path / "jars"))
    assert LocalKafka.from_settings(s2).libs_dir == tmp_path / "jars" / "libs"


def test_relative_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert LocalKafka(Path(".data/kafka")).dir == tmp_path / ".data" / "kafka"


@pytest.mark.parametrize(("output", "major"), [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('openjdk version "21" 2023-09-19', 21),
    ('java version "1.8.0_292"', 8),
    ("no version here", None),
])
def test_java_major_version(output: str, major: int | None) -> None:
    assert kl.java_major_version(output) == major


def test_missing_java_says_what_to_install(only_path: Path) -> None:
    with pytest.raises(SetupError, match="`java` \\(17\\+\\) not found") as e:
        kl.find_java()
    assert "openjdk-17-jre-headless" in str(e.value)
    assert "LOGWARDEN_KAFKA_BOOTSTRAP" in str(e.value)


def test_old_java_is_refused(only_path: Path) -> None:
    fake_tool(only_path, "java", "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    with pytest.raises(SetupError, match="Java 11; Kafka needs 17"):
        kl.find_java()


def test_missing_mvn_names_the_jar_folder(only_path: Path, tmp_path: Path) -> None:
    k = LocalKafka(tmp_path / "kafka", cache_dir=tmp_path / "cache")
    with pytest.raises(SetupError, match="`mvn` not found") as e:
        k.ensure_jars()
    assert str(k.libs_dir) in str(e.value)


def test_present_jars_need_no_maven(only_path: Path, tmp_path: Path) -> None:
    k = LocalKafka(tmp_path / "kafka", cache_dir=tmp_path / "cache")
    k.libs_dir.mkdir(parents=True)
    (k.libs_dir / "kafka_2.13-4.4.0.jar").touch()
    assert k.ensure_jars() is False


def test_mvn_output_lands_in_libs(only_path: Path, tmp_path: Path) -> None:
    # copies into -DoutputDirectory=..., like dependency:copy-dependencies
    fake_tool(only_path, "mvn", 'for a in "$@"; do case "$a" in -DoutputDirectory=*)\n'
              'd="${a#-DoutputDirectory=}"; /bin/mkdir -p "$d"; : > "$d/kafka_2.13-4.4.0.jar";;\n'
              "esac; done\n")
    k = LocalKafka(tmp_path / "kafka", cache_dir=tmp_path / "cache")
    assert k.ensure_jars() is True
    assert k.has_jars()
    assert not (tmp_path / "cache" / "libs.partial").exists()


def test_mvn_that_fetches_nothing_is_an_error(only_path: Path, tmp_path: Path) -> None:
    fake_tool(only_path, "mvn", "exit 0\n")
    k = LocalKafka(tmp_path / "kafka", cache_dir=tmp_path / "cache")
    with pytest.raises(SetupError, match=r"no kafka_2\.13 jar"):
        k.ensure_jars()


def test_failed_mvn_leaves_no_half_cache(only_path: Path, tmp_path: Path) -> None:
    fake_tool(only_path, "mvn", "echo 'Could not resolve org.apache.kafka:kafka_2.13'; exit 1\n")
    k = LocalKafka(tmp_path / "kafka", cache_dir=tmp_path / "cache")
    with pytest.raises(SetupError, match=r"Could not resolve org\.apache\.kafka"):
        k.ensure_jars()
    assert not k.libs_dir.exists()


def test_cluster_id_is_kafka_shaped() -> None:
    ids = {kl.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_stop_never_kills_a_process_that_is_not_our_broker(tmp_path: Path) -> None:
    k = LocalKafka(tmp_path / "kafka")
    k.dir.mkdir(parents=True)
    k.pid_file.write_text(f"{os.getpid()}\n")  # a stale pid file naming a live process
    assert k.pid() is None
    assert k.stop() is False
    assert not k.pid_file.exists()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("LOGWARDEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOGWARDEN_KAFKA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LOGWARDEN_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setattr(kl, "port_in_use", lambda port: False)  # no socket in unit tests
    common.settings.cache_clear()
    yield
    common.settings.cache_clear()


def test_cli_up_without_java_exits_with_the_hint(cli_env: None, only_path: Path) -> None:
    result = CliRunner().invoke(kafka_app, ["up"])
    assert result.exit_code == 1
    assert "java" in result.output and "openjdk-17-jre-headless" in result.output


def test_cli_down_with_external_cluster_stops_nothing(
    cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGWARDEN_KAFKA_BOOTSTRAP", "kafka.example:9092")
    common.settings.cache_clear()
    result = CliRunner().invoke(kafka_app, ["down"])
    assert result.exit_code == 0
    assert "nothing local to stop" in result.output


def test_cli_down_when_nothing_runs(cli_env: None) -> None:
    result = CliRunner().invoke(kafka_app, ["down"])
    assert result.exit_code == 0
    assert "not running" in result.output
