"""The report and the cluster-mode API as real processes on a real worker's data:
``logwarden report weekly --email`` mails the HTML with the PDF attached through the alerting
SMTP settings to an SMTP server on loopback, and ``logwarden api`` serves the chDB store the
worker left behind (OpenAPI, paginated lists with its data, writes refused without a token)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from email.message import Message
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from conftest import BIN, free_port, start_worker  # type: ignore[import-not-found]

from devstack.peers import MailHandler
from schemas import topics

pytestmark = pytest.mark.e2e
EVENTS = 300


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def row_key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True)


def test_report_email_and_api_process(kafka_bootstrap: str, tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    service = f"rep-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "w"
    w = start_worker(kafka_bootstrap, data, f"e2e-{uuid.uuid4().hex[:8]}")
    try:
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        now_ms = int(time.time() * 1000)
        for i in range(EVENTS):
            p.produce(topics.LOGS, orjson.dumps({
                "ts": now_ms - 120_000 + i * 200, "service": service,
                "level": "ERROR" if i % 10 == 0 else "INFO", "message": f"request {i} done",
                "event_id": f"{service}-{i}"}), key=service)
        assert p.flush(30) == 0
        w.wait_for(lambda: w.query("SELECT count() FROM logwarden.logs WHERE service = "
                                   "{s:String}", s=service)[0][0] == EVENTS,
                   what="the events in the store")

        mails = MailHandler()
        smtp_port = free_port()
        ctl = Controller(mails, hostname="127.0.0.1", port=smtp_port)
        ctl.start()
        try:
            env = {**os.environ, "LOGWARDEN_TOKEN": w.token,
                   "LOGWARDEN_ALERTING_SMTP": f'{{"host": "127.0.0.1", "port": {smtp_port}, '
                                              '"sender": "reports@example.test"}'}
            done = subprocess.run(
                [str(BIN), "report", "weekly", "--api", w.api, "--out", str(tmp_path / "out"),
                 "--email", "boss@example.test"], env=env, capture_output=True, text=True,
                timeout=300, stdin=subprocess.DEVNULL)
        finally:
            ctl.stop()
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["emailed"] == ["boss@example.test"]
        (mail,) = mails.mails
        assert mails.envelopes == [("reports@example.test", ["boss@example.test"])]
        assert mail["Subject"] == "logwarden weekly report"
        parts: list[Message] = list(mail.walk())
        html = next(x for x in parts if x.get_content_type() == "text/html")
        body = html.get_payload(decode=True)
        assert isinstance(body, bytes)
        sent = body.decode().replace("\r\n", "\n").rstrip()  # SMTP lines end in CRLF
        assert sent == Path(result["html"]).read_text().rstrip()
        assert b"<html" in body.lower()
        (pdf,) = [x for x in parts if x.get_content_type() == "application/pdf"]
        assert pdf.get_filename() == Path(result["pdf"]).name
        assert pdf.get_payload(decode=True) == Path(result["pdf"]).read_bytes()
        assert Path(result["pdf"]).read_bytes().startswith(b"%PDF")
    finally:
        w.stop()

    port = free_port()
    env = {**os.environ, "LOGWARDEN_DATA_DIR": str(data), "LOGWARDEN_CLICKHOUSE_URL": "",
           "LOGWARDEN_WEB_API_PORT": str(port)}
    log = tmp_path / "api.log"
    proc = subprocess.Popen([str(BIN), "api"], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                status, health = get(f"{base}/api/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        assert status == 200 and health["mode"] == "api"
        status, doc = get(f"{base}/api/openapi.json")
        assert status == 200 and "/api/logs" in doc["paths"]
        status, services = get(f"{base}/api/services?range=1h")
        assert status == 200, services
        assert service in json.dumps(services)
        status, first = get(f"{base}/api/logs?service={service}&range=1h&limit=7")
        assert status == 200, first
        assert len(first["items"]) == 7
        assert {r["service"] for r in first["items"]} == {service}
        status, second = get(f"{base}/api/logs?service={service}&range=1h&limit=7&offset=7")
        assert status == 200 and len(second["items"]) == 7
        assert not {row_key(r) for r in first["items"]} & {row_key(r) for r in second["items"]}
        status, errors = get(f"{base}/api/logs?service={service}&range=1h&level=ERROR"
                             "&limit=1000")
        assert status == 200 and len(errors["items"]) == EVENTS // 10
        status, refused = get(f"{base}/api/logs?limit=1001")
        assert status == 400, refused
        req = urllib.request.Request(
            f"{base}/api/feedback", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"target_kind": "alert", "target_id": "x",
                             "verdict": "false_positive"}).encode())
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 401
    finally:
        proc.terminate()
        proc.wait(30)
