"""A real ``logwarden worker`` process on the session's broker, with its own chDB and port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from privacy.redact import Redactor, open_redactor
from privacy.settings import PrivacySettings
from schemas import topics
from web.auth import TokenStore

BIN = Path(sys.executable).parent / "logwarden"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    """A running worker and how to talk to it."""

    proc: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log: Path

    @property
    def token(self) -> str:
        """An admin token: SQL needs one, and the tests read every row, security lines
        included (a responder's SQL does not see them). Also in ``env`` for the CLI."""
        return self.env["LOGWARDEN_TOKEN"]

    @property
    def redactor(self) -> Redactor:
        """The worker's redaction at ingest (same rules, same hash key)."""
        privacy = PrivacySettings(config_file=ROOT / "deploy/config/privacy.yaml")
        redactor = open_redactor(privacy, Path(self.env["LOGWARDEN_DATA_DIR"]))
        assert redactor is not None, "privacy is off in this worker"
        return redactor

    def hashed(self, value: str) -> str:
        """``value`` (a user id or address) as the worker stores it: its keyed hash."""
        return self.redactor.hash(value)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, sql: str, **params: Any) -> list[list[Any]]:
        body = json.dumps({"sql": sql, "params": params}).encode()
        req = urllib.request.Request(f"{self.api}/api/query", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return list(json.loads(resp.read())["rows"])

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.api}{path}", timeout=10) as resp:
            return bytes(resp.read())

    def wait_for(self, check: Callable[[], bool], timeout: float = 90.0,
                 what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
            try:
                if check():
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; log: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_at_end(bootstrap: str, app_id: str) -> None:
    """Commit the ingest offsets of the deployment ``app_id`` at the end of the contract
    topics, as a deployment started on a busy broker from now on would: its worker then
    reads only what is published after this (not every earlier test's lines)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{app_id}-probe"})
    try:
        ends = []
        known = admin.list_topics(timeout=30).topics  # all of them: asks to create none
        for topic in topics.INGEST_TOPICS:
            meta = known.get(topic)
            for p in meta.partitions if meta is not None else ():
                _, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                ends.append(TopicPartition(topic, p, high))
    finally:
        probe.close()
    if not ends:  # no contract topic yet: the worker reads them from their start
        return
    futures = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(f"{app_id}-ingest", ends)])
    for f in futures.values():
        f.result(timeout=30)


def start_worker(bootstrap: str, data_dir: Path, app_id: str, port: int | None = None,
                 **extra_env: str) -> Worker:
    """Start ``logwarden worker`` (its API on ``port``, a free one by default) and wait until
    its API answers."""
    port = port or free_port()
    env = {**os.environ, "LOGWARDEN_KAFKA_BOOTSTRAP": bootstrap,
           "LOGWARDEN_DATA_DIR": str(data_dir), "LOGWARDEN_STREAM_WEB_PORT": str(port),
           "LOGWARDEN_STREAM_APP_ID": app_id, "LOGWARDEN_STREAM_WINDOW_GRACE_S": "2",
           "LOGWARDEN_CLICKHOUSE_BATCH_SECONDS": "0.3", **extra_env}
    data_dir.mkdir(parents=True, exist_ok=True)
    env["LOGWARDEN_TOKEN"] = TokenStore(data_dir / "api_tokens.json").create("e2e", "admin")
    log = data_dir / "worker.log"
    proc = subprocess.Popen([str(BIN), "worker"], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    w = Worker(proc, port, env, log)
    w.wait_for(lambda: bool(w.get("/api/health")), timeout=120, what="the worker's API")
    return w


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = start_worker(kafka_bootstrap, tmp_path_factory.mktemp("worker"),
                     f"e2e-{uuid.uuid4().hex[:8]}")
    try:
        yield w
    finally:
        w.stop()
