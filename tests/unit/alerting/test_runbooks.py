"""Runbooks in the alerting file and the action runner on commands (real subprocesses):
order, approval, dry run, timeout, expiry, refusals, and never twice on redelivery."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from alerting.actions import (
    ActionRunner,
    ActionsTick,
    Approve,
    Reject,
    RunbookTrigger,
    action_id,
    decode_runbook_input,
    encode_runbook_input,
)
from alerting.config import AlertingConfig, RunbookSettings, WebhookSettings
from alerting.runbooks import command_argv
from alerting.yamlfile import parse_yaml_model
from schemas.errors import ConfigError

# appends one line per run to the file named by {out}: how tests count executions
APPEND = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + chr(10))"


def config(out: Path, extra_steps: str = "", route_runbook: str = "") -> AlertingConfig:
    text = f"""
executors:
  - name: append
    argv: ["{sys.executable}", "-c", "{APPEND}", "{{out}}", "{{service}}"]
    timeout: 20s
  - name: sleep
    argv: ["{sys.executable}", "-c", "import time; time.sleep(30)"]
rules:
  - name: Errors
    kind: threshold
    field: error_rate
    value: 0.1
    runbook:
      url: https://wiki.example/errors
      steps:
        - name: look
          text: "Look at the {{service}} dashboard"
        - name: first
          command: {{executor: append, args: {{out: "{out}"}}}}
{extra_steps}
  - name: Slow
    kind: threshold
    field: p95
    value: 800
route:
  receiver: ops
  routes:
    - matchers: ['service="payments"']
{route_runbook}
receivers:
  - name: ops
    channels: [{{type: email, to: ops@example.test}}]
"""
    return parse_yaml_model(text, AlertingConfig, source="alerting.yaml")


def runner(cfg: AlertingConfig, table: dict[str, bytes] | None = None, **kw: Any
           ) -> ActionRunner:
    return ActionRunner(lambda: cfg, RunbookSettings(**kw), WebhookSettings(),
                        {} if table is None else table, sink=Rows())


class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add_many(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows.extend(rows)


TRIG = RunbookTrigger(rule="Errors", labels={"alertname": "Errors", "service": "checkout"},
                      fingerprint="0123456789abcdef", episode=1000.0, ts=1000.0)


def runs(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


async def test_steps_run_once_and_a_redelivered_trigger_runs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    cfg = config(out, """        - name: second
          command: {executor: append, args: {out: "OUT"}}""".replace("OUT", str(out)))
    table: dict[str, bytes] = {}
    r = runner(cfg, table)
    await r.handle(TRIG, 1000.0)
    assert runs(out) == ["checkout", "checkout"]
    assert {a.step: a.status for a in r.actions()} == {"first": "succeeded",
                                                       "second": "succeeded"}
    # the same message again, and again after a "restart" (a new runner, the same table)
    await r.handle(TRIG, 1001.0)
    await runner(cfg, table).handle(decode_runbook_input(encode_runbook_input(TRIG)), 1002.0)
    assert runs(out) == ["checkout", "checkout"]
    # a new firing episode of the same alert is new actions
    await r.handle(TRIG.model_copy(update={"episode": 5000.0}), 5000.0)
    assert len(runs(out)) == 4
    assert isinstance(r.sink, Rows)
    outcomes = [row[9] for row in r.sink.rows]
    assert outcomes.count("running") == 4 and outcomes.count("succeeded") == 4


async def test_incident_key_makes_actions_once_per_incident(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    r = runner(config(out))
    for fp in ("aa" * 8, "bb" * 8):  # two alerts of one incident
        await r.handle(TRIG.model_copy(update={"fingerprint": fp, "incident_id": "inc-7"}),
                       1000.0)
    assert runs(out) == ["checkout"]
    assert r.actions()[0].incident_id == "inc-7"
    assert r.actions()[0].id == action_id("inc-7", "rule:Errors", "first")


async def test_approval_holds_later_steps_until_approved_once(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    cfg = config(out, """          approval: true
        - name: second
          command: {executor: append, args: {out: "OUT"}}""".replace("OUT", str(out)))
    r = runner(cfg, approval_timeout_s=600)
    await r.handle(TRIG, 1000.0)
    (waiting,) = r.actions()
    assert waiting.status == "awaiting_approval" and runs(out) == []
    assert waiting.plan.endswith(f"{out} checkout") and waiting.expires_at == 1600.0
    await r.handle(Approve(action_id=waiting.id, by="alice"), 1010.0)
    assert runs(out) == ["checkout", "checkout"]  # the approved step, then the next one
    first = r.get(waiting.id)
    assert first is not None and first.status == "succeeded" and first.by == "alice"
    await r.handle(Approve(action_id=waiting.id, by="bob"), 1020.0)  # a second click
    await r.handle(TRIG, 1030.0)  # a redelivered trigger
    assert len(runs(out)) == 2


async def test_reject_expiry_and_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    cfg = config(out, "          approval: true")
    r = runner(cfg, approval_timeout_s=60)
    await r.handle(TRIG, 1000.0)
    aid = r.actions()[0].id
    await r.handle(Reject(action_id=aid, by="alice"), 1001.0)
    await r.handle(Approve(action_id=aid, by="bob"), 1002.0)  # too late: rejected
    assert r.actions()[0].status == "rejected" and runs(out) == []

    r = runner(cfg, approval_timeout_s=60)
    await r.handle(TRIG, 1000.0)
    await r.handle(ActionsTick(), 1061.0)
    assert r.actions()[0].status == "expired"

    r = runner(cfg, dry_run=True)
    await r.handle(TRIG, 1000.0)
    (a,) = r.actions()
    assert a.status == "dry_run" and "checkout" in a.plan and runs(out) == []


async def test_timeout_kills_the_command(tmp_path: Path) -> None:
    text = """executors:
  - name: sleep
    argv: ["PY", "-c", "import time; time.sleep(30)"]
rules:
  - name: Errors
    kind: threshold
    field: error_rate
    value: 0.1
    runbook:
      steps:
        - {name: wait, command: {executor: sleep}, timeout: 0.5s}
        - {name: never, webhook: {url: "http://127.0.0.1:9/never"}}
route: {receiver: ops}
receivers: [{name: ops, channels: [{type: email, to: a@b.c}]}]
""".replace("PY", sys.executable)
    r = runner(parse_yaml_model(text, AlertingConfig))
    await r.handle(TRIG, 1000.0)
    (a,) = r.actions()  # the failed step stops the runbook
    assert a.status == "timed_out" and "killed after 0.5 s" in a.detail


async def test_unsafe_label_is_refused_not_run(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    r = runner(config(out))
    await r.handle(TRIG.model_copy(update={"labels": {"service": "x; rm -rf /"}}), 1000.0)
    (a,) = r.actions()
    assert a.status == "failed" and "unsafe value for {service}" in a.detail
    assert runs(out) == []
    cfg = config(out)
    ex = cfg.executor("append")
    assert ex is not None
    with pytest.raises(ValueError, match="unsafe"):
        command_argv(ex, {"out": "-o", "service": "a"})


async def test_route_runbook_applies_when_the_rule_has_none(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    cfg = config(out, route_runbook="""      runbook:
        url: https://wiki.example/payments
        steps:
          - {name: page-dba, command: {executor: append, args: {out: "OUT"}}}"""
                 .replace("OUT", str(out)))
    assert cfg.runbook("Slow", {"service": "checkout"}) is None
    source, book = cfg.runbook("Slow", {"service": "payments"}) or ("", None)
    assert source == "route:0.0" and book is not None and book.url.endswith("payments")
    assert cfg.runbook("Errors", {"service": "payments"})[0] == "rule:Errors"  # type: ignore[index]
    r = runner(cfg)
    await r.handle(TRIG.model_copy(update={"rule": "Slow",
                                           "labels": {"service": "payments"}}), 1000.0)
    assert runs(out) == ["payments"]


def test_bad_runbooks_are_refused_with_line_and_field(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    good = config(out)
    assert good.rules[0].runbook is not None
    with pytest.raises(ConfigError, match="unknown executor 'nope'"):
        config(out, "        - {name: x, command: {executor: nope}}")
    with pytest.raises(ConfigError, match=r"alerting.yaml:\d+: .*webhook or a command"):
        config(out, "        - {name: x, command: {executor: append}, "
                    "webhook: {url: 'http://a'}}")
    with pytest.raises(ConfigError, match="argv"):
        parse_yaml_model("executors: [{name: x, argv: ['{prog}']}]\nroute: {receiver: o}\n"
                         "receivers: [{name: o, channels: [{type: email, to: a}]}]",
                         AlertingConfig)
