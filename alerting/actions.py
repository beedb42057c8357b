"""Runbook actions: the automated steps of a runbook, run once per incident (or per alert
episode), with a dry run, an optional approval, a timeout and a recorded outcome.

Messages (``logwarden.runbook-actions.v1``, all on partition 0, decoded by
``decode_runbook_input``):

- ``trigger``: an alert with a runbook started firing (from the alert manager), or an
  incident opened (``incident_id`` set). It names the rule and labels only: the steps,
  URLs and commands always come from the config file this process loaded, never from the
  message (nothing read back from Kafka is executed).
- ``approve`` / ``reject``: a responder's answer (the API, a Slack button).
- ``tick``: expire approvals nobody gave, mark actions a crash interrupted.

**Never twice.** An action's id is a hash of its key (the incident id, else the alert's
fingerprint and episode start), the runbook's source and the step name, so a redelivered
trigger names the same actions. The runner keeps one state per id in a table (a Faust
changelog table in the worker, so it survives restarts) and **claims** an action, writing
``running``, before it executes it. A redelivered trigger or approval finds the claim and
does nothing; an action interrupted by a crash is marked ``interrupted`` and not retried
(a person decides). Webhooks also carry ``Idempotency-Key: <action id>``.

Steps run in order: one awaiting approval holds the steps after it, and one that failed
stops them. Every state change is a row of the ``actions`` table (migration 0009) that the
incident timeline and ``GET /api/actions`` read.

Statuses: ``awaiting_approval`` -> ``running`` -> ``succeeded`` | ``failed`` |
``timed_out``; or ``dry_run``, ``rejected``, ``expired``, ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Annotated, Any, Literal, Protocol

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from alerting.config import AlertingConfig, RunbookSettings, WebhookSettings
from alerting.notifiers.base import PermanentError, TransientError
from alerting.notifiers.webhook import post_json, signed_headers
from alerting.runbooks import Runbook, Step, command_argv, render_deep
from sinks.clickhouse import rows

log = structlog.get_logger(__name__)
Table = MutableMapping[str, bytes]
Status = Literal["awaiting_approval", "running", "succeeded", "failed", "timed_out",
                 "dry_run", "rejected", "expired", "interrupted"]
DONE_OK = frozenset({"succeeded", "dry_run"})
INTERRUPT_GRACE_S = 60.0  # a ``running`` action older than its timeout plus this was cut off
WEBHOOK_SCHEMA = "logwarden.action.v1"


class _Msg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunbookTrigger(_Msg):
    """Start (or continue) the runbook of an alert or incident."""

    type: Literal["trigger"] = "trigger"
    rule: str
    labels: dict[str, str]
    fingerprint: str = ""
    episode: float = 0.0  # the alert's ``starts_at``: a new firing episode, new actions
    incident_id: str = ""  # set by incidents: actions are then once per incident
    ts: float = 0.0

    @property
    def key(self) -> str:
        """What actions are idempotent per: the incident, else the alert episode."""
        return self.incident_id or f"{self.fingerprint}@{int(self.episode)}"


class Approve(_Msg):
    """A responder approves an action awaiting approval."""

    type: Literal["approve"] = "approve"
    action_id: str
    by: str
    via: Literal["api", "slack", "cli"] = "api"


class Reject(_Msg):
    """A responder refuses an action awaiting approval."""

    type: Literal["reject"] = "reject"
    action_id: str
    by: str
    via: Literal["api", "slack", "cli"] = "api"


class ActionsTick(_Msg):
    """The runner's timer."""

    type: Literal["tick"] = "tick"
    ts: float = 0.0


RunbookInput = Annotated[RunbookTrigger | Approve | Reject | ActionsTick,
                         Field(discriminator="type")]
_ADAPTER: TypeAdapter[RunbookInput] = TypeAdapter(RunbookInput)


def decode_runbook_input(raw: bytes) -> RunbookInput:
    """Bytes of the runbook-actions topic as a message; raises ``pydantic.ValidationError``."""
    return _ADAPTER.validate_json(raw)


def encode_runbook_input(msg: RunbookInput) -> bytes:
    """The JSON the runbook-actions topic carries for ``msg``."""
    return msg.model_dump_json().encode()


def action_id(key: str, source: str, step: str) -> str:
    """The deterministic id of one step's action for one incident / alert episode.

    >>> action_id("inc-1", "rule:Errors", "restart") == action_id("inc-1", "rule:Errors",
    ...                                                            "restart")
    True
    """
    return "a-" + hashlib.sha256(f"{key}|{source}|{step}".encode()).hexdigest()[:20]


class AuditRecorder(Protocol):
    """Where actions are audited (``audit.trail.AuditTrail`` in the worker)."""

    def record(self, actor: str, role: str, action: str, target: str = "", detail: str = "",
               outcome: str = "ok", ts_ms: int | None = None) -> object: ...


class ActionState(BaseModel):
    """One action: what, for which alert or incident, where it stands."""

    model_config = ConfigDict(frozen=True)

    id: str
    key: str
    incident_id: str = ""
    fingerprint: str = ""
    episode: float = 0.0
    rule: str
    labels: dict[str, str]
    source: str  # rule:<name> / route:<id>
    runbook_url: str = ""
    step: str
    step_index: int
    kind: Literal["webhook", "command"]
    status: Status
    plan: str  # what it does (or would do): the request or the command line
    created_at: float
    updated_at: float
    expires_at: float | None = None  # approval deadline
    timeout_s: float = 30.0
    by: str = ""  # who approved or rejected
    detail: str = ""  # response, output or error
    duration_ms: float = 0.0
    version: int = 0

    def trigger(self) -> RunbookTrigger:
        """The trigger that continues this action's runbook."""
        return RunbookTrigger(rule=self.rule, labels=self.labels, fingerprint=self.fingerprint,
                              incident_id=self.incident_id, episode=self.episode)


class Sink(Protocol):
    def add_many(self, rows: list[tuple[Any, ...]]) -> None: ...


Outcome = tuple[Status, str]  # status, detail
ApprovalNotice = Callable[[ActionState, Runbook], Awaitable[None]]


def template_values(trig: RunbookTrigger | ActionState, action: str) -> dict[str, str]:
    """What step templates may use: the labels plus ids."""
    return {**trig.labels, "rule": trig.rule, "fingerprint": trig.fingerprint,
            "incident_id": trig.incident_id, "action_id": action}


def plan_of(cfg: AlertingConfig, step: Step, values: Mapping[str, str]) -> str:
    """What a step would do, as a line for people (raises ValueError when it cannot run)."""
    if step.webhook is not None:
        body = render_deep(step.webhook.body, values)
        return f"{step.webhook.method} {step.webhook.url} {orjson.dumps(body).decode()}"
    assert step.command is not None
    ex = cfg.executor(step.command.executor)
    if ex is None:
        raise ValueError(f"unknown executor {step.command.executor!r}")
    args = {k: str(render_deep(v, values)) for k, v in step.command.args.items()}
    return " ".join(command_argv(ex, {**values, **args}))


class ActionRunner:
    """Applies runbook messages to the action table and runs what is due (module doc)."""

    def __init__(self, config: Callable[[], AlertingConfig | None], settings: RunbookSettings,
                 webhook: WebhookSettings, table: Table, sink: Sink | None = None,
                 on_approval: ApprovalNotice | None = None,
                 clock: Callable[[], float] = time.time,
                 audit: AuditRecorder | None = None) -> None:
        self.config, self.settings, self.webhook = config, settings, webhook
        self.table, self.sink, self.on_approval, self.clock = table, sink, on_approval, clock
        self.audit = audit  # every state change of an action goes to the audit trail
        self.counts = {"ran": 0, "skipped_claimed": 0, "refused": 0}

    # -- reads --

    def actions(self) -> list[ActionState]:
        """Every action the table holds."""
        return [ActionState.model_validate_json(v) for v in list(self.table.values())]

    def get(self, aid: str) -> ActionState | None:
        """One action by id."""
        raw = self.table.get(aid)
        return ActionState.model_validate_json(raw) if raw is not None else None

    # -- the entry point --

    async def handle(self, msg: RunbookInput, now: float) -> None:
        """Apply one message."""
        cfg = self.config()
        if cfg is None:
            return
        match msg:
            case RunbookTrigger():
                await self._advance(cfg, msg, now)
            case Approve():
                await self._approve(cfg, msg, now)
            case Reject():
                st = self.get(msg.action_id)
                if st is None or st.status != "awaiting_approval":
                    self._ignored(msg.action_id, st, "reject")
                    return
                self._save(st, "rejected", now, by=msg.by, detail=f"rejected via {msg.via}")
            case ActionsTick():
                self._tick(now)

    async def _advance(self, cfg: AlertingConfig, trig: RunbookTrigger, now: float) -> None:
        """Run the runbook's steps in order, as far as they may go now."""
        found = cfg.runbook(trig.rule, trig.labels)
        if found is None:
            return
        source, book = found
        for i, step in enumerate(book.steps):
            if step.kind == "manual":
                continue
            aid = action_id(trig.key, source, step.name)
            st = self.get(aid)
            if st is not None:
                if st.status in DONE_OK:
                    continue
                self.counts["skipped_claimed"] += 1  # waiting, running (claimed) or failed
                log.info("runbook_action_claimed", stage="runbooks", action=aid,
                         status=st.status)
                return
            values = template_values(trig, aid)
            base = ActionState(id=aid, key=trig.key, incident_id=trig.incident_id,
                               fingerprint=trig.fingerprint, episode=trig.episode,
                               rule=trig.rule,
                               labels=trig.labels, source=source, runbook_url=book.url,
                               step=step.name, step_index=i,
                               kind=step.kind,
                               status="awaiting_approval", plan="", created_at=now,
                               updated_at=now, timeout_s=step.timeout)
            try:
                plan = plan_of(cfg, step, values)
            except ValueError as e:
                self.counts["refused"] += 1
                self._save(base, "failed", now, detail=f"refused: {e}")
                return
            base = base.model_copy(update={"plan": plan})
            if self.settings.dry_run or step.dry_run:
                self._save(base, "dry_run", now, detail="dry run: not executed")
                continue
            if step.approval:
                st = self._save(base, "awaiting_approval", now,
                                expires_at=now + self.settings.approval_timeout_s)
                if self.on_approval is not None:
                    try:
                        await self.on_approval(st, book)
                    except Exception:  # the request stays in the table and the API
                        log.exception("runbook_approval_notice_failed", stage="runbooks",
                                      action=aid)
                return
            done = await self._run(cfg, base, step, now)
            if done.status not in DONE_OK:
                return

    async def _approve(self, cfg: AlertingConfig, msg: Approve, now: float) -> None:
        st = self.get(msg.action_id)
        if st is None or st.status != "awaiting_approval":
            self._ignored(msg.action_id, st, "approve")
            return
        if st.expires_at is not None and now >= st.expires_at:
            self._save(st, "expired", now, detail="approval came after the deadline")
            return
        found = cfg.runbook(st.rule, st.labels)
        step = None
        if found is not None and found[0] == st.source:
            step = next((s for s in found[1].steps if s.name == st.step), None)
        if step is None or step.kind != st.kind:
            self._save(st, "failed", now, by=msg.by,
                       detail="the step is no longer in the runbook")
            return
        try:  # the config may have changed since: run what it says now, re-checked
            plan = plan_of(cfg, step, template_values(st, st.id))
        except ValueError as e:
            self._save(st, "failed", now, by=msg.by, detail=f"refused: {e}")
            return
        done = await self._run(cfg, st.model_copy(update={"by": msg.by, "plan": plan}), step,
                               now)
        if done.status in DONE_OK:
            await self._advance(cfg, st.trigger(), self.clock())

    async def _run(self, cfg: AlertingConfig, st: ActionState, step: Step,
                   now: float) -> ActionState:
        """Claim (write ``running``), execute, record the outcome."""
        claimed = self._save(st, "running", now)
        t0 = time.perf_counter()
        status, detail = await self._execute(cfg, claimed, step)
        ms = (time.perf_counter() - t0) * 1000
        self.counts["ran"] += 1
        log.info("runbook_action_done", stage="runbooks", action=st.id, step=st.step,
                 kind=st.kind, status=status, duration_ms=round(ms, 1))
        return self._save(claimed, status, self.clock(), detail=detail, duration_ms=ms)

    async def _execute(self, cfg: AlertingConfig, st: ActionState, step: Step) -> Outcome:
        if step.webhook is not None:
            return await self._webhook(st, step)
        assert step.command is not None
        ex = cfg.executor(step.command.executor)
        if ex is None:
            return "failed", f"unknown executor {step.command.executor!r}"
        values = template_values(st, st.id)
        args = {k: str(render_deep(v, values)) for k, v in step.command.args.items()}
        try:
            argv = command_argv(ex, {**values, **args})
        except ValueError as e:
            return "failed", f"refused: {e}"
        return await run_command(argv, min(step.timeout, ex.timeout), self.settings.output_limit)

    async def _webhook(self, st: ActionState, step: Step) -> Outcome:
        assert step.webhook is not None
        values = template_values(st, st.id)
        doc = {"schema": WEBHOOK_SCHEMA, "action_id": st.id, "key": st.key,
               "incident_id": st.incident_id, "fingerprint": st.fingerprint, "rule": st.rule,
               "labels": st.labels, "step": st.step, "approved_by": st.by,
               "runbook_url": st.runbook_url, **render_deep(step.webhook.body, values)}
        body = orjson.dumps(doc)
        secret = self.webhook.secret.get_secret_value()
        deadline = time.monotonic() + step.timeout
        attempt = 0
        while True:
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0:
                return "timed_out", f"no answer within {step.timeout:g} s ({attempt - 1} tries)"
            try:  # the same Idempotency-Key on every try: the receiver acts once
                status, text = await post_json(step.webhook.url, body,
                                               signed_headers(body, secret, st.id), left,
                                               step.webhook.method)
                return "succeeded", f"HTTP {status} {text[:self.settings.output_limit]}"
            except PermanentError as e:
                return "failed", str(e)
            except TransientError as e:
                wait = min(2.0 ** (attempt - 1), deadline - time.monotonic())
                if wait <= 0:
                    return "timed_out", f"{e} (after {attempt} tries)"
                await asyncio.sleep(wait)

    def _tick(self, now: float) -> None:
        for st in self.actions():
            if st.status == "awaiting_approval" and st.expires_at is not None \
                    and now >= st.expires_at:
                self._save(st, "expired", now, detail="nobody approved it in time")
            elif st.status == "running" and now > st.updated_at + st.timeout_s \
                    + INTERRUPT_GRACE_S:
                self._save(st, "interrupted", now,
                           detail="the worker stopped while it ran; not retried")

    def _ignored(self, aid: str, st: ActionState | None, what: str) -> None:
        self.counts["skipped_claimed"] += 1
        log.info("runbook_answer_ignored", stage="runbooks", action=aid, answer=what,
                 status=st.status if st else "unknown")

    def _save(self, st: ActionState, status: Status, now: float, **update: Any) -> ActionState:
        new = st.model_copy(update={"status": status, "updated_at": now,
                                    "version": st.version + 1, **update})
        self.table[new.id] = new.model_dump_json().encode()
        if self.sink is not None:
            self.sink.add_many([rows.action_row(new.model_dump())])
        if self.audit is not None:
            self.audit.record(new.by or "system", "", f"runbook.{status}", new.id,
                              f"{new.step} ({new.kind}): {new.plan}"[:500], status,
                              int(now * 1000))
        return new


async def run_command(argv: list[str], timeout_s: float, limit: int) -> Outcome:
    """Run ``argv`` without a shell; kill its process group after ``timeout_s``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return "failed", f"cannot start {argv[0]}: {e}"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return "timed_out", f"killed after {timeout_s:g} s"
    text = out.decode(errors="replace")[-limit:]
    if proc.returncode == 0:
        return "succeeded", text
    return "failed", f"exit {proc.returncode}: {text}"
