"""The alert manager: signals, people's actions and ticks in; alerts, groups, escalations,
silences kept in tables; notifications and pages out.

Pure of Faust: the tables are any ``MutableMapping[str, bytes]`` (Faust changelog tables in
the worker, dicts in tests), written only from ``handle``, which the manager agent calls
inside its stream iteration with a message already decoded (``alerting.inputs``). Every
outgoing page or notification is SENT before the state that records it is WRITTEN: a crash
in between re-sends that step once, never loses it. A message no channel delivered goes to
the outbox and is retried (``alerting/outbox.py``). On a tick each group, escalation and
outbox item is its own failure boundary: one that raises is logged and counted, the others
go on.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from alerting import escalation as esc
from alerting import outbox, replycodes
from alerting.config import AlertingConfig, AlertingSettings
from alerting.deadman import CanaryState, HeartbeatState, heartbeat_due, heartbeat_message
from alerting.evaluate import on_composites
from alerting.grouping import GroupState, Notification, add_alert, due, flush
from alerting.inhibit import CallGraph, suppression_reasons
from alerting.inputs import (
    Ack,
    AddSilence,
    CanarySeen,
    CanarySent,
    ExpireSilence,
    ManagerInput,
    Resolve,
    SignalInput,
    SilenceAlert,
    SmsReply,
    Tick,
)
from alerting.lifecycle import (
    Alert,
    AlertState,
    Signal,
    acknowledge,
    alert_code,
    apply_signal,
    refresh_flapping,
    resolve,
)
from alerting.messages import (
    alert_message,
    notification_message,
    page_message,
    rate_limiters,
    receiver_chain,
    recipient_chain,
)
from alerting.notifiers.base import Channel, Deliverer, DeliveryRecord, Message
from alerting.notifiers.slack import SlackChannel
from alerting.notifiers.sms import SmsChannel
from alerting.oncall import on_call_at
from alerting.outbox import OutboxItem, failed_again, retry_at
from alerting.reload import ConfigHolder
from alerting.replycodes import ReplyCode
from alerting.routing import match_routes
from alerting.silences import Matcher, Silence
from sinks.clickhouse import rows

log = structlog.get_logger(__name__)
Table = MutableMapping[str, bytes]


class Sink(Protocol):
    def add_many(self, rows: list[tuple[Any, ...]]) -> None: ...


@dataclass
class ManagerTables:
    """The manager's state, each a changelog table keyed as named."""

    alerts: Table  # fingerprint -> Alert
    groups: Table  # group key -> GroupState
    escalations: Table  # fingerprint|policy -> EscalationState
    silences: Table  # silence id -> Silence
    meta: Table  # "deadman" -> HeartbeatState, "canary" -> CanaryState
    codes: Table = field(default_factory=dict)  # SMS reply code -> ReplyCode
    outbox: Table = field(default_factory=dict)  # message id|recipient -> OutboxItem


class AlertManager:
    """Applies manager messages to the tables; see the module docstring."""

    def __init__(self, holder: ConfigHolder, settings: AlertingSettings, tables: ManagerTables,
                 writers: Mapping[str, Sink], deliverer: Deliverer | None = None,
                 observe_delay: Callable[[float], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.holder, self.settings, self.t, self.writers = holder, settings, tables, writers
        self.deliverer = deliverer or Deliverer(policy=settings.retry)
        self.observe_delay = observe_delay
        self.graph = CallGraph()
        self.rng = rng or random.Random()
        self.errors = 0  # tick parts (a group, an escalation, an outbox item) that raised
        # called when an alert starts a firing episode, unsilenced (runbook actions)
        self.on_firing: Callable[[Alert, float], Awaitable[None]] | None = None
        self._limits_version = -1

    # -- reads (API view; never writes) --

    def alerts(self) -> list[Alert]:
        """Every alert the table holds (active and recently resolved)."""
        return [Alert.model_validate_json(v) for v in list(self.t.alerts.values())]

    def silences(self) -> list[Silence]:
        """Every silence not yet expired."""
        return [Silence.model_validate_json(v) for v in list(self.t.silences.values())]

    def find(self, ref: str) -> Alert | None:
        """An alert by fingerprint or by its short code."""
        raw = self.t.alerts.get(ref)
        if raw is not None:
            return Alert.model_validate_json(raw)
        return next((a for a in self.alerts() if alert_code(a.fingerprint) == ref.upper()),
                    None)

    def reply_code(self, code: str) -> ReplyCode | None:
        """An SMS reply code issued and not yet spent (it may have expired)."""
        raw = self.t.codes.get(code.upper())
        return ReplyCode.model_validate_json(raw) if raw is not None else None

    # -- the one entry point --

    async def handle(self, msg: ManagerInput, now: float) -> None:
        """Apply one message: a signal, a person's action, a tick or a canary report."""
        cfg = self.holder.config
        if cfg is None:
            return
        match msg:
            case SignalInput():
                await self.apply(cfg, msg.signal, now)
            case Tick():
                await self.tick(cfg, now)
            case CanarySent():
                self._put_canary(self._canary().on_sent(msg.ts))
            case CanarySeen():
                self._canary_seen(msg, now)
            case _:
                await self.act(cfg, msg, now)

    async def apply(self, cfg: AlertingConfig, sig: Signal, now: float) -> None:
        """A rule's verdict: dedup into the alert, route state changes to their groups."""
        before = self._alert(sig.fingerprint)
        after = apply_signal(before, sig, now, cfg.flapping)
        if after is None:
            return
        if before is not None and before.state == after.state:
            self.t.alerts[after.fingerprint] = after.model_dump_json().encode()  # refresh
            return
        await self._changed(cfg, before, after, now)

    async def act(self, cfg: AlertingConfig,
                  msg: Ack | Resolve | SilenceAlert | AddSilence | ExpireSilence | SmsReply,
                  now: float) -> None:
        """A person's ack / resolve / silence / expire (API, Slack button, SMS reply)."""
        kind: str
        match msg:
            case AddSilence():
                self._silence(msg.silence, now)
                return
            case ExpireSilence():
                self._expire(msg.id, msg.by, now)
                return
            case SmsReply():
                spent = self._spend_code(msg, now)
                if spent is None:
                    return
                kind, ref, by, via, channel, message_ts = msg.kind, spent, msg.by, "sms", "", ""
            case _:
                kind, ref, by, via = msg.type, msg.ref, msg.by, msg.via
                channel, message_ts = msg.channel, msg.message_ts
        a = self.find(ref)
        if a is None:
            log.warning("alert_action_unknown_alert", stage="alerting", ref=ref, by=by)
            return
        if isinstance(msg, SilenceAlert):  # mute this alert's rule on its service
            ms = [Matcher(name="alertname", value=a.rule)]
            if "service" in a.labels:
                ms.append(Matcher(name="service", value=a.labels["service"]))
            self._silence(Silence(id=f"s-{uuid.uuid4().hex[:12]}", matchers=ms, starts_at=now,
                                  ends_at=now + msg.duration_s, created_by=by,
                                  comment=f"from {via}"), now)
            return
        new = acknowledge(a, by, now) if kind == "ack" else resolve(a, now, cfg.flapping)
        if new != a:
            await self._changed(cfg, a, new, now)
        log.info("alert_action", stage="alerting", kind=kind, by=by, via=via,
                 fingerprint=a.fingerprint, state=new.state.value)
        if channel and message_ts:
            await self._update_slack(channel, message_ts, new, by)

    async def tick(self, cfg: AlertingConfig, now: float) -> None:
        """Timers: composites, removed rules, flapping, pruning, group flushes, escalations,
        retries of undelivered messages, dead-man heartbeat and canary."""
        if self._limits_version != self.holder.version:
            self.deliverer.limits = rate_limiters(cfg)
            self._limits_version = self.holder.version
        names = {r.name for r in cfg.rules}
        alerts = self.alerts()
        for a in alerts:
            # its rule was removed by a reload (security rules live in security.yaml and
            # resolve themselves: alerting.security)
            if a.active and a.rule not in names and a.labels.get("category") != "security":
                await self._changed(cfg, a, resolve(a, now, cfg.flapping), now)
            elif not a.active and now - a.updated_at > cfg.flapping.window_s:
                del self.t.alerts[a.fingerprint]
            elif a.active:
                fresh = refresh_flapping(a, now, cfg.flapping)
                if fresh != a:
                    self.t.alerts[a.fingerprint] = fresh.model_dump_json().encode()
        for sig in on_composites(cfg, self.alerts(), now):
            await self.apply(cfg, sig, now)
        for s in self.silences():
            if s.expired(now):
                self._write("silences", [rows.silence_row(s.model_dump(mode="json"), _ms(now),
                                                          deleted=True)])
                del self.t.silences[s.id]
        replycodes.prune(self.t.codes, {a.fingerprint for a in self.alerts()
                                        if a.state is AlertState.FIRING}, now)
        await self._flush_groups(cfg, now)
        await self._escalate(cfg, now)
        await self._redeliver(cfg, now)
        await self._guarded("deadman", "", self._deadman(cfg, now))

    # -- internals --

    async def _guarded(self, part: str, key: str, work: Awaitable[None]) -> bool:
        """Run one part of a tick as its own failure boundary; False when it raised."""
        try:
            await work
        except Exception:  # one group / escalation / item must not stop the others
            self.errors += 1
            log.exception("alerting_tick_part_failed", stage="alerting", part=part, key=key)
            return False
        return True

    def _alert(self, fp: str) -> Alert | None:
        raw = self.t.alerts.get(fp)
        return Alert.model_validate_json(raw) if raw is not None else None

    def _canary(self) -> CanaryState:
        raw = self.t.meta.get("canary")
        return CanaryState.model_validate_json(raw) if raw else CanaryState()

    def _put_canary(self, st: CanaryState) -> None:
        self.t.meta["canary"] = st.model_dump_json().encode()

    def _write(self, table: str, batch: list[tuple[Any, ...]]) -> None:
        w = self.writers.get(table)
        if w is not None and batch:
            w.add_many(batch)

    def suppressed(self, cfg: AlertingConfig, now: float,
                   alerts: Iterable[Alert] | None = None) -> dict[str, str]:
        """fingerprint -> why it must not page now."""
        return suppression_reasons(self.alerts() if alerts is None else alerts,
                                   self.silences(), cfg.inhibit_rules, now,
                                   cfg.dependency_inhibit, self.graph)

    def _silence(self, s: Silence, now: float) -> None:
        if s.id in self.t.silences:  # ids are the server's: a second add is a replay
            log.warning("silence_exists", stage="alerting", id=s.id, by=s.created_by)
            return
        self.t.silences[s.id] = s.model_dump_json().encode()
        self._write("silences", [rows.silence_row(s.model_dump(mode="json"), _ms(now))])
        log.info("silence_added", stage="alerting", id=s.id, by=s.created_by,
                 matchers=[str(m) for m in s.matchers])

    def _expire(self, sid: str, by: str, now: float) -> None:
        raw = self.t.silences.get(sid)
        if raw is None:
            return
        s = Silence.model_validate_json(raw).model_copy(update={"ends_at": now})
        self._write("silences", [rows.silence_row(s.model_dump(mode="json"), _ms(now),
                                                  deleted=True)])
        del self.t.silences[s.id]
        log.info("silence_expired", stage="alerting", id=sid, by=by)

    def _spend_code(self, msg: SmsReply, now: float) -> str | None:
        """The alert a valid SMS reply acts on; the code is spent. None (logged) if invalid."""
        fp, why = replycodes.spend(self.t.codes, msg.code, msg.phone, now)
        if fp is None:
            log.warning("sms_reply_refused", stage="alerting", phone=msg.phone, by=msg.by,
                        reason=why, message_sid=msg.message_sid)
        return fp

    def _issue_code(self, msg: Message, chain: list[Channel], now: float) -> Message:
        """A firing single-alert message going to phones carries a fresh reply code."""
        phones = [ch.to for ch in chain if isinstance(ch, SmsChannel)]
        if not phones or msg.status != "firing" or not msg.fingerprint or msg.reply_code:
            return msg
        code = replycodes.issue(self.t.codes, msg.fingerprint, phones, now,
                                self.settings.sms_code_ttl_s)
        return msg.model_copy(update={"reply_code": code})

    async def _changed(self, cfg: AlertingConfig, before: Alert | None, after: Alert,
                       now: float) -> None:
        fp = after.fingerprint
        self.t.alerts[fp] = after.model_dump_json().encode()
        reason = self.suppressed(cfg, now).get(fp, "")
        self._write("alerts", [rows.alert_row(after.model_dump(mode="json"), _ms(now), reason)])
        log.info("alert_changed", stage="alerting", rule=after.rule, fingerprint=fp,
                 state=after.state.value, service=after.labels.get("service", ""),
                 suppressed=reason)
        if (self.on_firing is not None and not reason and after.state is AlertState.FIRING
                and (before is None or before.state is AlertState.RESOLVED)):
            await self.on_firing(after, now)
        due_now: list[str] = []
        for m in match_routes(cfg.route, after.labels):
            key = m.group_key(after.labels)
            raw = self.t.groups.get(key)
            g = GroupState.model_validate_json(raw) if raw is not None else None
            if g is None and not after.active:
                continue
            g = add_alert(g, m, after, now)
            self.t.groups[key] = g.model_dump_json().encode()
            if g.last_notified is None and due(g, now):  # group_wait 0: page now, not at
                due_now.append(key)  # the next tick (up to evaluation_interval_s later)
        for key in due_now:
            raw = self.t.groups.get(key)
            if raw is not None:
                await self._guarded("group", key, self._flush_group(
                    cfg, key, raw, lambda: self.suppressed(cfg, now), now))
        for key, st in self._escalations_of(fp):
            if after.state is AlertState.ACKNOWLEDGED:
                self.t.escalations[key] = esc.acknowledge(st, after.acked_by, now) \
                    .model_dump_json().encode()
            elif not after.active:
                st, pages = esc.resolve(st, now)
                await self._page(cfg, pages, now)
                del self.t.escalations[key]

    def _escalations_of(self, fp: str) -> list[tuple[str, esc.EscalationState]]:
        return [(k, esc.EscalationState.model_validate_json(v))
                for k, v in list(self.t.escalations.items()) if k.startswith(fp + "|")]

    async def _flush_groups(self, cfg: AlertingConfig, now: float) -> None:
        cache: list[dict[str, str]] = []

        def reasons() -> dict[str, str]:  # once per tick, when the first group is due
            if not cache:
                cache.append(self.suppressed(cfg, now))
            return cache[0]

        for key, raw in list(self.t.groups.items()):
            await self._guarded("group", key, self._flush_group(cfg, key, raw, reasons, now))

    async def _flush_group(self, cfg: AlertingConfig, key: str, raw: bytes,
                           reasons: Callable[[], dict[str, str]], now: float) -> None:
        g = GroupState.model_validate_json(raw)
        if not due(g, now):
            return
        new, note = flush(g, now, reasons())
        if note is not None:
            await self._notify(cfg, note, now)  # send, then write
        if new is None:
            del self.t.groups[key]
        else:
            self.t.groups[key] = new.model_dump_json().encode()

    async def _notify(self, cfg: AlertingConfig, note: Notification, now: float) -> None:
        r = next((x for x in cfg.receivers if x.name == note.receiver), None)
        if r is None:
            return
        if r.channels:
            msg = notification_message(note, self.settings.public_url)
            await self._send(msg, receiver_chain(r, self.settings), r.name, note.status,
                             "notification", now, recipient=f"channel:{r.name}")
        if r.escalation and r.escalation in {p.name for p in cfg.escalation_policies}:
            policy = cfg.policy(r.escalation)
            for a in note.firing:
                key = f"{a.fingerprint}|{policy.name}"
                if key in self.t.escalations:
                    continue
                st, pages = esc.start(policy, a.fingerprint, now, self._resolver(cfg))
                await self._page(cfg, pages, now)
                self.t.escalations[key] = st.model_dump_json().encode()

    def _resolver(self, cfg: AlertingConfig) -> esc.Resolver:
        schedules = {s.name: s for s in cfg.schedules}
        return lambda t, at: on_call_at(schedules, t.name, at)

    async def _escalate(self, cfg: AlertingConfig, now: float) -> None:
        policies = {p.name: p for p in cfg.escalation_policies}
        for key, raw in list(self.t.escalations.items()):
            await self._guarded("escalation", key, self._escalate_one(cfg, key, raw, policies,
                                                                      now))

    async def _escalate_one(self, cfg: AlertingConfig, key: str, raw: bytes,
                            policies: Mapping[str, esc.EscalationPolicy], now: float) -> None:
        st = esc.EscalationState.model_validate_json(raw)
        policy = policies.get(st.policy)
        if policy is None or st.status != "active":
            return
        new, pages = esc.tick(st, policy, now, self._resolver(cfg))
        await self._page(cfg, pages, now)  # send first ...
        if new != st:
            self.t.escalations[key] = new.model_dump_json().encode()  # ... then write

    def _chain(self, cfg: AlertingConfig, recipient: str) -> list[Channel]:
        try:
            return recipient_chain(recipient, cfg, self.settings)
        except StopIteration:  # a receiver removed by a reload
            return []

    async def _page(self, cfg: AlertingConfig, pages: list[esc.Page], now: float) -> None:
        for p in pages:
            a = self._alert(p.fingerprint)
            if a is None:
                continue
            log.info("page", stage="alerting", key=p.key, recipient=p.recipient,
                     step=p.step, cycle=p.cycle, kind=p.kind)
            resolved = p.kind == "resolved"
            await self._send(page_message(p, a, self.settings.public_url),
                             self._chain(cfg, p.recipient), p.recipient,
                             "resolved" if resolved else "firing",
                             "resolved" if resolved else "page", now)

    async def _send(self, msg: Message, chain: list[Channel], receiver: str, status: str,
                    kind: str, now: float, recipient: str = "") -> bool:
        """Deliver over ``chain``; an undeliverable message (not a heartbeat) is kept in the
        outbox for retries. ``receiver`` names it in the notifications table, ``recipient``
        (default: the receiver) is the address the chain is rebuilt from. True: delivered."""
        if not chain:
            log.warning("no_channel", stage="alerting", receiver=receiver, message=msg.id)
            return False
        msg = self._issue_code(msg, chain, now)
        d = await self.deliverer.deliver(msg, chain)
        self._records(d.records, receiver, status)
        if d.delivered_via is not None:
            return True
        log.error("delivery_failed", stage="alerting", receiver=receiver, message=msg.id)
        if kind != "heartbeat":
            item = OutboxItem(message=msg, recipient=recipient or receiver, receiver=receiver,
                              status=status, kind=kind, first_failed_at=now,
                              next_at=retry_at(1, now, self.settings.outbox, self.rng))
            for old in outbox.put(self.t.outbox, item, self.settings.outbox.max_items):
                log.error("outbox_full_dropped", stage="alerting", message=old.message.id,
                          receiver=old.recipient)
        return False

    async def _redeliver(self, cfg: AlertingConfig, now: float) -> None:
        for key, raw in list(self.t.outbox.items()):
            await self._guarded("outbox", key, self._redeliver_one(cfg, key, raw, now))

    async def _redeliver_one(self, cfg: AlertingConfig, key: str, raw: bytes,
                             now: float) -> None:
        item = OutboxItem.model_validate_json(raw)
        if now < item.next_at:
            return
        pol = self.settings.outbox
        fp = item.message.fingerprint
        a = self._alert(fp) if fp else None
        if item.kind in ("notification", "page") and fp and \
                (a is None or a.state is not AlertState.FIRING):
            del self.t.outbox[key]  # acknowledged or resolved since: its resolve says so
            return
        chain = self._chain(cfg, item.recipient)
        d = await self.deliverer.deliver(item.message, chain) if chain else None
        if d is not None:
            self._records(d.records, item.receiver, item.status)
        if d is not None and d.delivered_via is not None:
            del self.t.outbox[key]
            log.info("redelivered", stage="alerting", message=item.message.id,
                     receiver=item.recipient, failures=item.failures)
            return
        item = failed_again(item, now, pol, self.rng)
        if item.kind == "page" and not item.handed_off and item.failures > pol.handoff_after:
            self._hand_off(fp, now)
            item = item.model_copy(update={"handed_off": True})
        if now - item.first_failed_at > pol.give_up_after_s:
            del self.t.outbox[key]
            log.error("delivery_abandoned", stage="alerting", message=item.message.id,
                      receiver=item.recipient, failures=item.failures)
            return
        self.t.outbox[key] = item.model_dump_json().encode()

    def _hand_off(self, fp: str, now: float) -> None:
        """A page that keeps failing: the escalation's next step is due now."""
        for key, st in self._escalations_of(fp):
            if st.status == "active" and st.next_at > now:
                self.t.escalations[key] = st.model_copy(update={"next_at": now}) \
                    .model_dump_json().encode()
                log.warning("page_handed_off", stage="alerting", fingerprint=fp,
                            escalation=key, step=st.step + 1)

    def _records(self, records: list[DeliveryRecord], receiver: str, status: str) -> None:
        self._write("notifications", [rows.notification_row(r.model_dump(), receiver, status)
                                      for r in records])
        for r in records:
            if r.outcome == "sent" and r.delay_s is not None and self.observe_delay:
                self.observe_delay(r.delay_s)

    async def _update_slack(self, channel: str, ts: str, a: Alert, by: str) -> None:
        note = f"{a.state.value.capitalize()} by {by}"
        try:
            await SlackChannel("slack-update", self.settings.slack, channel).update(
                f"{channel}:{ts}", alert_message(a, a.fingerprint, url=self.settings.public_url),
                note)
        except Exception as e:  # the ack itself is done; a stale Slack message is cosmetic
            log.warning("slack_update_failed", stage="alerting", error=str(e))

    def _canary_seen(self, msg: CanarySeen, now: float) -> None:
        """A window of the canary service reached alerting (``CanaryState.on_seen``)."""
        st, proved = self._canary().on_seen(msg.start, msg.end, now)
        if proved is None:
            return
        self._put_canary(st)
        log.info("canary_seen", stage="alerting", sent=proved, seen=msg.end,
                 round_trip_s=round(now - proved, 1))

    async def _deadman(self, cfg: AlertingConfig, now: float) -> None:
        receiver = cfg.deadman.receiver if cfg.deadman else cfg.route.receiver
        r = next((x for x in cfg.receivers if x.name == receiver), None)
        if r is None:
            return
        if cfg.deadman is not None:
            raw = self.t.meta.get("deadman")
            beat = HeartbeatState.model_validate_json(raw) if raw else HeartbeatState()
            if heartbeat_due(beat.last, now, cfg.deadman.interval):
                await self._send(heartbeat_message(now), receiver_chain(r, self.settings),
                                 r.name, "test", "heartbeat", now)
                self.t.meta["deadman"] = HeartbeatState(last=now).model_dump_json().encode()
        can = self._canary()
        # the oldest canary not proven by a closed window, once it is older than the grace
        sent = can.missing(now, self.settings.canary_grace_s)
        if sent is not None:
            msg = Message(id=f"canary@{int(sent)}", status="firing", severity="critical",
                          title="logwarden canary missing: the pipeline is not alerting",
                          text=f"A canary log sent at {sent:.0f} did not reach alerting "
                               f"within {self.settings.canary_grace_s:.0f} s.",
                          trigger_ts=sent)
            await self._send(msg, receiver_chain(r, self.settings), r.name, "firing",
                             "canary", now, recipient=f"channel:{r.name}")
            self._put_canary(can.model_copy(update={"alarmed": True, "alarmed_for": sent}))
            log.error("canary_missing", stage="alerting", sent=sent)


def _ms(ts: float) -> int:
    return int(ts * 1000)
