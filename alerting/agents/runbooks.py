"""The runbook stage as a Faust agent: triggers, approvals and ticks from
``logwarden.runbook-actions.v1`` in, actions run and recorded (``alerting/actions.py``).

Like the alert manager it is a singleton: every message goes to partition 0 and the action
table (``alerting-actions``, a changelog table) holds the claims that make a redelivered
message a no-op, also after a restart. An action runs inside the stream iteration, so a
long command holds later messages up to its timeout; actions are rare and bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import faust
import structlog
from pydantic import ValidationError

from alerting.actions import (
    ActionRunner,
    ActionState,
    ActionsTick,
    ApprovalNotice,
    AuditRecorder,
    RunbookInput,
    RunbookTrigger,
    decode_runbook_input,
    encode_runbook_input,
)
from alerting.config import AlertingSettings
from alerting.lifecycle import Alert
from alerting.notifiers.slack import SlackChannel, approval_blocks
from alerting.reload import ConfigHolder
from alerting.runbooks import Runbook

log = structlog.get_logger(__name__)
PARTITION = 0
TICK_S = 30.0


class RunbookStage:
    """Handles of the registered stage: the runner (read-only view) and ``send``."""

    def __init__(self, runner: ActionRunner, topic: Any, holder: ConfigHolder) -> None:
        self.runner, self.topic, self.holder = runner, topic, holder
        self.counts = {"inputs": 0, "bad_inputs": 0, "errors": 0}
        # (service, event time ms) -> the open incident that holds it: set by the worker
        # when the incidents stage runs in the same process (streams/app.py)
        self.incident_of: Callable[[str, int], str | None] | None = None

    async def send(self, msg: RunbookInput) -> None:
        """Queue a trigger, an approval or a tick for the runner."""
        key = (msg.action_id if hasattr(msg, "action_id") else msg.type).encode()
        await self.topic.send(key=key, value=encode_runbook_input(msg), partition=PARTITION)

    async def on_firing(self, alert: Alert, now: float) -> None:
        """The alert manager's hook: an alert with an automated runbook started firing."""
        cfg = self.holder.config
        found = cfg.runbook(alert.rule, alert.labels) if cfg else None
        if found is None or not found[1].automated:
            return
        incident = (self.incident_of(alert.labels.get("service", ""),
                                     int(alert.trigger_ts * 1000))
                    if self.incident_of is not None else None)
        await self.send(RunbookTrigger(rule=alert.rule, labels=alert.labels,
                                       fingerprint=alert.fingerprint, episode=alert.starts_at,
                                       ts=now, incident_id=incident or ""))


def slack_approval(settings: AlertingSettings) -> ApprovalNotice:
    """Ask for approval in the runbook's Slack channel (when it names one)."""

    async def notice(st: ActionState, book: Runbook) -> None:
        if not book.approval_channel:
            return
        ch = SlackChannel("runbook-approval", settings.slack, book.approval_channel)
        title = f"Approve '{st.step}' for {st.rule} ({st.labels.get('service', '')})?"
        await ch.post(title, approval_blocks(st.id, title, st.plan, book.url))

    return notice


def register_runbooks(app: faust.App, settings: AlertingSettings, holder: ConfigHolder,
                      topic_name: str, partitions: int, sink: Any,
                      audit: AuditRecorder | None = None) -> RunbookStage:
    """Create the action table, topic, agent and timer on ``app``."""
    table = app.Table("alerting-actions", default=None, partitions=partitions, key_type=str,
                      value_type=bytes)
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    runner = ActionRunner(lambda: holder.config, settings.runbooks, settings.webhook, table,
                          sink, on_approval=slack_approval(settings), audit=audit)
    stage = RunbookStage(runner, topic, holder)

    @app.agent(topic, name="alerting-runbooks")
    async def runbooks_agent(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                msg = decode_runbook_input(event.value)
            except ValidationError as e:
                stage.counts["bad_inputs"] += 1
                log.warning("runbook_message_refused", stage="runbooks",
                            offset=event.message.offset, error=str(e)[:300])
                continue
            stage.counts["inputs"] += 1
            try:
                await runner.handle(msg, time.time())
            except Exception:  # the stage boundary: one bad message must not stop actions
                stage.counts["errors"] += 1
                log.exception("runbook_message_failed", stage="runbooks", kind=msg.type,
                              offset=event.message.offset)

    @app.timer(TICK_S)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        await stage.send(ActionsTick(ts=time.time()))

    return stage
