"""The local single-node Apache Kafka (KRaft) the project starts from its own files.

Jars come from Maven Central (``deploy/kafka/pom.xml``) into a cache folder; the broker
runs detached on loopback, its files under ``<data dir>/kafka``: ``server.properties``,
``log4j2.properties``, ``data/`` (the log), ``kafka.log`` (broker log), ``kafka.pid``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.kafka_tls import BrokerSecurity
from schemas.errors import SetupError
from streams.settings import Settings
from streams.topics import is_healthy, wait_for_kafka

REPO_ROOT = Path(__file__).resolve().parents[1]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
MIN_JAVA = 17
INSTALL_HINT = ("install openjdk-17-jre-headless and maven, "
                "or set LOGWARDEN_KAFKA_BOOTSTRAP to use an existing cluster")


def default_cache_dir() -> Path:
    """The jar cache next to the repository's ``deploy/``: ``<repo>/.cache/kafka``."""
    return LocalKafka.cache_dir


def server_properties(port: int, controller_port: int, data_dir: Path,
                      security: BrokerSecurity | None = None, node_id: int = 1,
                      voters: str = "", replication: int = 1) -> str:
    """The broker config: a node that is both broker and controller, on loopback (its
    client listener SASL_SSL with ``security``). Alone by default; one of a cluster with
    ``voters`` (``id@host:port,...``) and the internal topics' ``replication``."""
    r, isr = str(replication), str(min_insync(replication))
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters or f"{node_id}@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": r,
        "transaction.state.log.replication.factor": r,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": r,
        "share.coordinator.state.topic.min.isr": isr,
        "default.replication.factor": r,  # topics a client creates (Faust's changelogs)
        "min.insync.replicas": isr,
        "group.initial.rebalance.delay.ms": "0",  # consumers join at once in dev and tests
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "log.retention.hours": "24",  # a dev broker: keep a day, not a week
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    if security is not None:
        settings |= security.server_properties(port, controller_port)
    return "".join(f"{k}={v}\n" for k, v in settings.items())


def min_insync(replication: int) -> int:
    """The in-sync replicas a write needs: 2 once there are 3 copies (one broker may be
    lost without refusing writes), else 1."""
    return 2 if replication >= 3 else 1


def log4j2_properties(log_file: Path) -> str:
    """Broker logging to a rolling file (3 x 10 MB) instead of the console."""
    return f"""status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def java_major_version(version_output: str) -> int | None:
    """The major version in ``java -version`` output ("1.8.0" is 8), None if unreadable."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if m is None:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """Path of a Java 17+ runtime on PATH, or a SetupError saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise SetupError(f"`java` (17+) not found on PATH to run the local Kafka: {INSTALL_HINT}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    major = java_major_version(out.stderr + out.stdout)
    if major is None or major < MIN_JAVA:
        raise SetupError(f"{java} is Java {major or '?'}; Kafka needs {MIN_JAVA}+: {INSTALL_HINT}")
    return java


def new_cluster_id() -> str:
    """A random Kafka cluster id: 16 bytes, URL-safe base64 without padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka's Uuid.randomUuid avoids a leading dash too
            return cid


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a text file, or a note that it is missing."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:  # reap it if it is our child, so it does not linger as a zombie
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class KafkaStatus:
    """What ``logwarden kafka status`` reports."""

    running: bool
    pid: int | None
    port: int
    bootstrap: str
    healthy: bool


@dataclass(frozen=True)
class LocalKafka:
    """A single-node KRaft broker on 127.0.0.1:port with its files under ``dir``."""

    dir: Path
    port: int = 19092
    cache_dir: Path = REPO_ROOT / ".cache" / "kafka"
    heap: str = "768m"
    security: BrokerSecurity | None = None  # a SASL_SSL listener instead of PLAINTEXT
    # one node of a cluster (devstack/kafka_cluster.py): its id, every controller, the
    # internal topics' replication and the cluster id every node is formatted with
    node_id: int = 1
    voters: str = ""
    replication: int = 1
    cluster_id: str = ""

    def __post_init__(self) -> None:
        # absolute, so the pid check and the broker's cwd do not depend on ours
        object.__setattr__(self, "dir", self.dir.resolve())
        object.__setattr__(self, "cache_dir", self.cache_dir.resolve())

    @classmethod
    def from_settings(cls, s: Settings) -> LocalKafka:
        """The local broker the settings describe: ``<data_dir>/kafka``, ``local_port``."""
        return cls(dir=s.data_dir / "kafka", port=s.kafka.local_port,
                   cache_dir=s.kafka.cache_dir or default_cache_dir())

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_security(self) -> dict[str, str]:
        """librdkafka TLS/SASL properties of the first user (empty for plaintext)."""
        return self.security.client().librdkafka() if self.security else {}

    @property
    def libs_dir(self) -> Path:
        return self.cache_dir / "libs"

    @property
    def log_file(self) -> Path:
        return self.dir / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"

    def has_jars(self) -> bool:
        """Whether the cache holds the Kafka broker jar."""
        return any(self.libs_dir.glob("kafka_2.13-*.jar"))

    def ensure_jars(self, pom: Path = POM) -> bool:
        """Resolve the Kafka jars with Maven if the cache lacks them; True if it downloaded."""
        if self.has_jars():
            return False
        mvn = shutil.which("mvn")
        if mvn is None:
            raise SetupError(f"`mvn` not found on PATH to fetch the Kafka jars into "
                             f"{self.libs_dir}: {INSTALL_HINT}")
        if not pom.is_file():
            raise SetupError(f"{pom} is missing; it lists the Kafka jars to fetch")
        partial = self.cache_dir / "libs.partial"  # renamed once complete
        shutil.rmtree(partial, ignore_errors=True)
        cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
               f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            last = "\n".join((out.stdout + out.stderr).splitlines()[-20:])
            raise SetupError(f"mvn could not fetch the Kafka jars (exit {out.returncode}):\n{last}")
        if not any(partial.glob("kafka_2.13-*.jar")):
            raise SetupError(f"mvn ran but put no kafka_2.13 jar in {partial}; check {pom}")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        partial.rename(self.libs_dir)
        return True

    def write_config(self) -> None:
        """Write server.properties and log4j2.properties (ports may change between runs)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        props = server_properties(self.port, self.controller_port, self.dir / "data",
                                  self.security, self.node_id, self.voters, self.replication)
        (self.dir / "server.properties").write_text(props)
        (self.dir / "log4j2.properties").write_text(log4j2_properties(self.log_file))

    def format_if_needed(self, java: str = "java") -> bool:
        """Format the log directory once (KRaft needs it); True if it formatted now."""
        if (self.dir / "data" / "meta.properties").exists():
            return False
        self.write_config()
        # a short-lived tool: the quick JIT tier and serial GC start faster
        cmd = [java, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
               "-cp", f"{self.libs_dir}/*", "kafka.tools.StorageTool", "format",
               "-t", self.cluster_id or new_cluster_id(), "-c", str(self.dir / "server.properties"),
               *(self.security.format_args() if self.security else [])]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise SetupError(f"formatting {self.dir / 'data'} failed:\n{out.stdout}{out.stderr}")
        return True

    def pid(self) -> int | None:
        """The pid of our running broker, from the pid file; None if it is not running."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) and self._is_ours(pid) else None

    def status(self, timeout: float = 3.0) -> KafkaStatus:
        """Whether the broker process runs and answers metadata requests."""
        pid = self.pid()
        healthy = port_in_use(self.port) and is_healthy(self.bootstrap, timeout,
                                                        self.client_security())
        return KafkaStatus(running=pid is not None, pid=pid, port=self.port,
                           bootstrap=self.bootstrap, healthy=healthy)

    def start(self, timeout: float = 90.0) -> KafkaStatus:
        """Start the broker detached (it outlives the caller) and wait until it answers."""
        pid = self.launch()
        if pid is not None:
            self.wait_up(pid, timeout)
        return self.status()

    def launch(self, java: str | None = None) -> int | None:
        """Spawn the broker unless ours runs already; its pid, None for a healthy broker we
        did not start on our port. Does not wait (a cluster's nodes start together)."""
        pid = self.pid()
        if pid is None and port_in_use(self.port):
            if is_healthy(self.bootstrap, 5.0, self.client_security()):
                return None  # a broker we did not start (or lost the pid of)
            raise SetupError(f"port {self.port} is taken by another program: set "
                             "LOGWARDEN_KAFKA_LOCAL_PORT to a free port")
        if pid is None:
            java = java or find_java()
            self.ensure_jars()
            self.format_if_needed(java)
            self.write_config()
            pid = self._spawn(java)
        return pid

    def wait_up(self, pid: int, timeout: float) -> None:
        """Wait until the broker ``pid`` answers; stop it and raise SetupError if it does not."""
        try:
            wait_for_kafka(self.bootstrap, timeout, alive=lambda: _alive(pid),
                           security=self.client_security())
        except Exception as e:
            self.stop()
            raise SetupError(f"the local Kafka did not come up on {self.bootstrap} ({e}); "
                             f"last lines of {self.log_file}:\n{tail(self.log_file)}") from e

    def _spawn(self, java: str) -> int:
        cmd = [java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC",
               "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
               "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
               "-cp", f"{self.libs_dir}/*", "kafka.Kafka", str(self.dir / "server.properties")]
        # JVM output before log4j starts (bad flags, crashes) still lands in the log file.
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    cwd=self.dir, start_new_session=True)
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the broker, SIGKILL it after ``timeout``; True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _is_ours(self, pid: int) -> bool:
        """Guard against a recycled pid: the process must run kafka.Kafka on our config."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return True  # no /proc (macOS): trust the pid file
        return "kafka.Kafka" in cmdline and str(self.dir / "server.properties") in cmdline


def free_port_pair() -> int:
    """A free loopback port whose successor is free too (broker + controller)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise SetupError("no free pair of loopback ports for a local Kafka")


@contextmanager
def local_kafka(folder: Path, security: BrokerSecurity | None = None,
                timeout: float = 180.0) -> Iterator[LocalKafka]:
    """A local broker in ``folder`` on free ports, stopped when the block ends, also when it
    fails (benchmarks, tests)."""
    kafka = LocalKafka(folder, port=free_port_pair(), security=security)
    kafka.start(timeout=timeout)
    try:
        yield kafka
    finally:
        kafka.stop()


@contextmanager
def throwaway_kafka(given: str | None, work: Path, timeout: float = 180.0) -> Iterator[str]:
    """The bootstrap address ``given``, or a `local_kafka` under ``work``."""
    if given:
        yield given
        return
    with local_kafka(work / "kafka", timeout=timeout) as kafka:
        yield kafka.bootstrap
