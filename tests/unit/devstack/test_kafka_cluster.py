"""The local cluster's layout and config, the replication settings and the chDB server's
request parsing, without starting Java or chDB."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import common
from cli.kafka import kafka_app
from devstack.chdb_server import decompress, parse_request
from devstack.kafka_cluster import LocalKafkaCluster, replication_for
from schemas.errors import SetupError
from streams.settings import KafkaSettings, Settings, client_id
from streams.topics import resolve_replication, topic_config


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def node_props(node_dir: Path) -> dict[str, str]:
    return props((node_dir / "server.properties").read_text())


def test_three_nodes_share_one_quorum_and_replicate_internal_topics(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(tmp_path / "c", brokers=3, port=27100)
    assert cluster.bootstrap == "127.0.0.1:27100,127.0.0.1:27102,127.0.0.1:27104"
    voters = "1@127.0.0.1:27101,2@127.0.0.1:27103,3@127.0.0.1:27105"
    ids = set()
    for i, node in enumerate(cluster.nodes, start=1):
        node.write_config()
        p = node_props(node.dir)
        assert (p["node.id"], p["controller.quorum.voters"]) == (str(i), voters)
        assert p["listeners"] == (f"PLAINTEXT://127.0.0.1:{node.port},"
                                  f"CONTROLLER://127.0.0.1:{node.port + 1}")
        assert p["offsets.topic.replication.factor"] == "3"
        assert p["default.replication.factor"] == "3"
        assert p["min.insync.replicas"] == "2"
        assert p["transaction.state.log.min.isr"] == "2"
        ids.add(node.cluster_id)
    assert len(ids) == 1  # every node is formatted with the same cluster id
    assert cluster.nodes[0].cluster_id == cluster.cluster_id  # kept with the cluster


def test_a_single_broker_keeps_one_replica(tmp_path: Path) -> None:
    node = LocalKafkaCluster(tmp_path / "c", brokers=1, port=27100).nodes[0]
    node.write_config()
    p = node_props(node.dir)
    assert p["offsets.topic.replication.factor"] == "1" and p["min.insync.replicas"] == "1"


@pytest.mark.parametrize(("brokers", "replicas"), [(1, 1), (2, 2), (3, 3), (5, 3)])
def test_replication_is_three_where_the_cluster_allows(brokers: int, replicas: int) -> None:
    assert replication_for(brokers) == replicas


def test_cluster_size_is_checked(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="--brokers"):
        LocalKafkaCluster(tmp_path, brokers=0)


def test_replication_setting_is_auto_or_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KafkaSettings().replication == "auto"
    monkeypatch.setenv("LOGWARDEN_KAFKA_REPLICATION", "2")
    s = Settings()
    assert s.kafka.replication == 2 and s.kafka.replicas == 2 and s.kafka.min_insync() == 1
    assert resolve_replication(s) is s  # a number is kept as is
    three = KafkaSettings(replication=3)
    assert three.min_insync() == 2
    assert topic_config(Settings(kafka=three), {"cleanup.policy": "compact"}) == {
        "cleanup.policy": "compact", "min.insync.replicas": "2"}


def test_auto_replication_counts_the_brokers(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.topics as st

    monkeypatch.setattr(st, "cluster_brokers", lambda *a, **k: 5)
    assert resolve_replication(Settings()).kafka.replication == 3
    monkeypatch.setattr(st, "cluster_brokers", lambda *a, **k: 1)
    assert resolve_replication(Settings()).kafka.replication == 1


def test_client_ids_name_the_process() -> None:
    cid = client_id("logwarden", "ingest")
    assert cid.startswith("logwarden-ingest-") and cid.endswith(f"-{__import__('os').getpid()}")


def test_kafka_up_refuses_a_cluster_when_an_external_one_is_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGWARDEN_KAFKA_BOOTSTRAP", "10.0.0.1:9092")
    common.settings.cache_clear()
    try:
        out = CliRunner().invoke(kafka_app, ["up", "--brokers", "3"])
    finally:
        common.settings.cache_clear()
    assert out.exit_code == 1 and "unset it" in out.output


def test_kafka_up_help_names_brokers() -> None:
    out = CliRunner().invoke(kafka_app, ["up", "--help"])
    assert out.exit_code == 0 and "--brokers" in out.output


def test_http_requests_become_statements() -> None:
    q = parse_request([("query", "SELECT {x:UInt8}"), ("param_x", "1"),
                       ("database", "default"), ("insert_deduplication_token", "t1"),
                       ("default_format", "Native")], b"")
    assert (q.sql, q.fmt, q.params, q.data) == ("SELECT {x:UInt8}", "Native", {"x": "1"}, None)
    assert q.settings == {"insert_deduplication_token": "t1"}  # HTTP-only ones dropped
    body = parse_request([], b"SELECT 1\n FORMAT Native")
    assert body.sql == "SELECT 1\n FORMAT Native" and body.data is None
    ins = parse_request([("query", "INSERT INTO db.t (a) FORMAT Native")], b"\x01\x02")
    assert (ins.sql, ins.data) == ("INSERT INTO db.t (a) FORMAT Native", b"\x01\x02")
    inline = parse_request([], b"INSERT INTO db.t (`a`) FORMAT Native\n\xff\x00")
    assert (inline.sql, inline.data) == ("INSERT INTO db.t (`a`) FORMAT Native", b"\xff\x00")
    both = parse_request([("query", "SELECT")], b"1")
    assert both.sql == "SELECT\n1" and both.data is None


def test_request_bodies_are_decompressed() -> None:
    import gzip

    assert decompress(gzip.compress(b"rows"), "gzip") == b"rows"
    assert decompress(b"rows", "") == b"rows"
    with pytest.raises(ValueError, match="Content-Encoding"):
        decompress(b"x", "snappy")
