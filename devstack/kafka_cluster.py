"""A local multi-node Apache Kafka (KRaft) cluster on loopback, from the same jars.

Each node is a `LocalKafka` (devstack/kafka.py) that is both broker and controller, under
``<dir>/node-<id>``, on ports ``base + 2(id - 1)`` (client) and the one after (controller).
Every node is formatted with one cluster id (kept in ``<dir>/cluster.id``) and lists every
controller, so any one node may be lost: the other two keep the quorum, the partitions it
led get new leaders from the in-sync replicas. Internal topics get replication
``min(3, brokers)`` and ``min.insync.replicas`` 2 from three brokers on.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devstack.kafka import (
    KafkaStatus,
    LocalKafka,
    _alive,
    default_cache_dir,
    find_java,
    free_port_pair,
    new_cluster_id,
    port_in_use,
)
from schemas.errors import SetupError
from streams.topics import cluster_brokers

MAX_BROKERS = 9


def replication_for(brokers: int) -> int:
    """Copies of each partition on a cluster of ``brokers``: 3, or all of them when fewer."""
    return max(1, min(3, brokers))


@dataclass(frozen=True)
class ClusterStatus:
    """What ``logwarden kafka status`` reports for a local cluster."""

    nodes: tuple[KafkaStatus, ...]
    bootstrap: str

    @property
    def running(self) -> int:
        return sum(n.running for n in self.nodes)

    @property
    def healthy(self) -> bool:
        return any(n.healthy for n in self.nodes)


@dataclass(frozen=True)
class LocalKafkaCluster:
    """``brokers`` KRaft nodes on 127.0.0.1, client ports ``port``, ``port + 2``, ..."""

    dir: Path
    brokers: int = 3
    port: int = 19092
    cache_dir: Path = field(default_factory=default_cache_dir)
    heap: str = "384m"  # three JVMs share the machine with the workers

    def __post_init__(self) -> None:
        if not 1 <= self.brokers <= MAX_BROKERS:
            raise SetupError(f"--brokers must be 1 to {MAX_BROKERS}, not {self.brokers}")
        object.__setattr__(self, "dir", self.dir.resolve())

    @property
    def cluster_id(self) -> str:
        """The id every node is formatted with; made once and kept with the cluster."""
        path = self.dir / "cluster.id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            self.dir.mkdir(parents=True, exist_ok=True)
            cid = new_cluster_id()
            path.write_text(cid + "\n")
            return cid

    @property
    def nodes(self) -> list[LocalKafka]:
        ports = [self.port + 2 * i for i in range(self.brokers)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p + 1}" for i, p in enumerate(ports))
        cid = self.cluster_id
        return [LocalKafka(self.dir / f"node-{i + 1}", port=p, cache_dir=self.cache_dir,
                           heap=self.heap, node_id=i + 1, voters=voters,
                           replication=replication_for(self.brokers), cluster_id=cid)
                for i, p in enumerate(ports)]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def exists(self) -> bool:
        """Whether a cluster was ever started in ``dir``."""
        return (self.dir / "cluster.id").exists()

    def start(self, timeout: float = 180.0) -> ClusterStatus:
        """Start every node that is not running, together (a quorum needs a majority), and
        wait until all of them answer and see each other."""
        nodes = self.nodes
        for n in nodes:
            if n.pid() is None and port_in_use(n.port):
                raise SetupError(f"port {n.port} (node {n.node_id}) is taken by another "
                                 "program: set LOGWARDEN_KAFKA_LOCAL_PORT to a free range")
        java = find_java()
        nodes[0].ensure_jars()
        pids = [n.launch(java) for n in nodes]
        try:
            for n, pid in zip(nodes, pids, strict=True):
                if pid is not None:
                    n.wait_up(pid, timeout)
            self.wait_for_brokers(self.brokers, timeout)
        except SetupError:
            self.stop()
            raise
        return self.status()

    def wait_for_brokers(self, n: int, timeout: float = 120.0) -> None:
        """Block until the cluster's metadata lists ``n`` live brokers."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            seen = cluster_brokers(self.bootstrap, 3.0)
            if seen >= n:
                return
            time.sleep(0.5)
        raise SetupError(f"the local cluster shows {seen} of {n} brokers after {timeout:.0f} s; "
                         f"see {self.dir}/node-*/kafka.log")

    def start_node(self, node_id: int, timeout: float = 180.0) -> KafkaStatus:
        """Start one node again (after `kill`); it rejoins and catches up its replicas."""
        return self.nodes[node_id - 1].start(timeout=timeout)

    def kill(self, node_id: int) -> bool:
        """SIGKILL one node, as a crash would; True if it was running."""
        node = self.nodes[node_id - 1]
        pid = node.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 30.0) -> int:
        """Stop every node (SIGTERM, SIGKILL after ``timeout``); how many were running."""
        return sum(n.stop(timeout=timeout) for n in reversed(self.nodes))

    def status(self, timeout: float = 3.0) -> ClusterStatus:
        return ClusterStatus(tuple(n.status(timeout) for n in self.nodes), self.bootstrap)


def free_port_range(brokers: int) -> int:
    """A free loopback port with the ``2 * brokers - 1`` after it free too."""
    for _ in range(50):
        base = free_port_pair()
        if all(not port_in_use(base + k) for k in range(2, 2 * brokers)):
            return base
    raise SetupError(f"no {2 * brokers} free consecutive loopback ports for a local cluster")


@contextmanager
def local_kafka_cluster(folder: Path, brokers: int = 3, port: int | None = None,
                        timeout: float = 240.0) -> Iterator[LocalKafkaCluster]:
    """A local cluster in ``folder`` (on free ports unless ``port``), stopped when the block
    ends, also when it fails (tests, benchmarks)."""
    cluster = LocalKafkaCluster(folder, brokers=brokers, port=port or free_port_range(brokers))
    try:
        cluster.start(timeout=timeout)
        yield cluster
    finally:
        cluster.stop()
