"""The alert manager: signals, people's actions and ticks in; alerts, groups, escalations,
silences kept in tables; notifications and pages out.

Pure of Faust: the tables are any ``MutableMapping[str, bytes]`` (Faust changelog tables in
the worker, dicts in tests), written only from ``handle``, which the manager agent calls
inside its stream iteration. Every outgoing page or notification is SENT before the state
that records it is WRITTEN: a crash in between re-sends that step once, never loses it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import structlog

from alerting import escalation as esc
from alerting.config import AlertingConfig, AlertingSettings
from alerting.deadman import heartbeat_due, heartbeat_message
from alerting.evaluate import on_composites
from alerting.grouping import GroupState, Notification, add_alert, due, flush
from alerting.inhibit import CallGraph, suppression_reasons
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
from alerting.oncall import on_call_at
from alerting.reload import ConfigHolder
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
    meta: Table  # "deadman", "canary" -> small JSON documents


class AlertManager:
    """Applies manager messages to the tables; see the module docstring."""

    def __init__(self, holder: ConfigHolder, settings: AlertingSettings, tables: ManagerTables,
                 writers: Mapping[str, Sink], deliverer: Deliverer | None = None,
                 observe_delay: Callable[[float], None] | None = None) -> None:
        self.holder, self.settings, self.t, self.writers = holder, settings, tables, writers
        self.deliverer = deliverer or Deliverer(policy=settings.retry)
        self.observe_delay = observe_delay
        self.graph = CallGraph()
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

    # -- the one entry point --

    async def handle(self, msg: Mapping[str, Any], now: float) -> None:
        """Apply one message: signal, action, tick, canary_sent or canary_seen."""
        cfg = self.holder.config
        kind = msg.get("type")
        if cfg is None:
            return
        if kind == "signal":
            await self.apply(cfg, Signal.model_validate(msg["signal"]), now)
        elif kind == "action":
            await self.act(cfg, msg, now)
        elif kind == "tick":
            await self.tick(cfg, now)
        elif kind == "canary_sent":
            doc = self._meta("canary")
            sends = [x for x in doc.get("sends", []) if x > doc.get("seen_sent", 0.0)]
            ts = float(msg["ts"])
            doc.update(sent=ts, sends=[*sends, ts][-MAX_PENDING_CANARIES:], alarmed=False)
            self.t.meta["canary"] = orjson.dumps(doc)
        elif kind == "canary_seen":
            self._canary_seen(msg, now)

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

    async def act(self, cfg: AlertingConfig, msg: Mapping[str, Any], now: float) -> None:
        """A person's ack / resolve / silence / expire (API, Slack button, SMS reply)."""
        kind, by = msg.get("kind"), str(msg.get("by", ""))
        if kind == "silence" and msg.get("silence"):
            self._silence(Silence.model_validate(msg["silence"]), now)
            return
        if kind == "expire":
            raw = self.t.silences.get(str(msg.get("id", "")))
            if raw is not None:
                s = Silence.model_validate_json(raw).model_copy(update={"ends_at": now})
                self._write("silences", [rows.silence_row(s.model_dump(mode="json"),
                                                          _ms(now), deleted=True)])
                del self.t.silences[s.id]
            return
        a = self.find(str(msg.get("ref", "")))
        if a is None:
            log.warning("alert_action_unknown_alert", stage="alerting", ref=msg.get("ref"))
            return
        if kind == "silence":  # a Slack button: mute this alert's rule on its service for 1h
            ms = [Matcher(name="alertname", value=a.rule)]
            if "service" in a.labels:
                ms.append(Matcher(name="service", value=a.labels["service"]))
            self._silence(Silence(id=f"s-{uuid.uuid4().hex[:12]}", matchers=ms, starts_at=now,
                                  ends_at=now + 3600, created_by=by, comment="from Slack"), now)
            return
        new = acknowledge(a, by, now) if kind == "ack" else resolve(a, now, cfg.flapping)
        if new != a:
            await self._changed(cfg, a, new, now)
        log.info("alert_action", stage="alerting", kind=kind, by=by, via=msg.get("via"),
                 fingerprint=a.fingerprint, state=new.state.value)
        if msg.get("channel") and msg.get("message_ts"):
            await self._update_slack(str(msg["channel"]), str(msg["message_ts"]), new, by)

    async def tick(self, cfg: AlertingConfig, now: float) -> None:
        """Timers: composites, removed rules, flapping, pruning, group flushes, escalations,
        dead-man heartbeat and canary."""
        if self._limits_version != self.holder.version:
            self.deliverer.limits = rate_limiters(cfg)
            self._limits_version = self.holder.version
        names = {r.name for r in cfg.rules}
        alerts = self.alerts()
        for a in alerts:
            if a.active and a.rule not in names:  # its rule was removed by a reload
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
        await self._flush_groups(cfg, now)
        await self._escalate(cfg, now)
        await self._deadman(cfg, now)

    # -- internals --

    def _alert(self, fp: str) -> Alert | None:
        raw = self.t.alerts.get(fp)
        return Alert.model_validate_json(raw) if raw is not None else None

    def _meta(self, key: str) -> dict[str, Any]:
        raw = self.t.meta.get(key)
        return dict(orjson.loads(raw)) if raw else {}

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
        self.t.silences[s.id] = s.model_dump_json().encode()
        self._write("silences", [rows.silence_row(s.model_dump(mode="json"), _ms(now))])
        log.info("silence_added", stage="alerting", id=s.id, by=s.created_by,
                 matchers=[str(m) for m in s.matchers])

    async def _changed(self, cfg: AlertingConfig, before: Alert | None, after: Alert,
                       now: float) -> None:
        fp = after.fingerprint
        self.t.alerts[fp] = after.model_dump_json().encode()
        reason = self.suppressed(cfg, now).get(fp, "")
        self._write("alerts", [rows.alert_row(after.model_dump(mode="json"), _ms(now), reason)])
        log.info("alert_changed", stage="alerting", rule=after.rule, fingerprint=fp,
                 state=after.state.value, service=after.labels.get("service", ""),
                 suppressed=reason)
        for m in match_routes(cfg.route, after.labels):
            key = m.group_key(after.labels)
            raw = self.t.groups.get(key)
            g = GroupState.model_validate_json(raw) if raw is not None else None
            if g is None and not after.active:
                continue
            self.t.groups[key] = add_alert(g, m, after, now).model_dump_json().encode()
        for key, st in self._escalations_of(fp):
            if after.state is AlertState.ACKNOWLEDGED:
                self.t.escalations[key] = esc.acknowledge(st, after.acked_by, now) \
                    .model_dump_json().encode()
            elif not after.active:
                st, pages = esc.resolve(st, now)
                await self._page(cfg, pages)
                del self.t.escalations[key]

    def _escalations_of(self, fp: str) -> list[tuple[str, esc.EscalationState]]:
        return [(k, esc.EscalationState.model_validate_json(v))
                for k, v in list(self.t.escalations.items()) if k.startswith(fp + "|")]

    async def _flush_groups(self, cfg: AlertingConfig, now: float) -> None:
        suppressed = None
        for key, raw in list(self.t.groups.items()):
            g = GroupState.model_validate_json(raw)
            if not due(g, now):
                continue
            if suppressed is None:
                suppressed = self.suppressed(cfg, now)
            new, note = flush(g, now, suppressed)
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
            await self._send(msg, receiver_chain(r, self.settings), r.name, note.status)
        if r.escalation and r.escalation in {p.name for p in cfg.escalation_policies}:
            policy = cfg.policy(r.escalation)
            for a in note.firing:
                key = f"{a.fingerprint}|{policy.name}"
                if key in self.t.escalations:
                    continue
                st, pages = esc.start(policy, a.fingerprint, now, self._resolver(cfg))
                await self._page(cfg, pages)
                self.t.escalations[key] = st.model_dump_json().encode()

    def _resolver(self, cfg: AlertingConfig) -> esc.Resolver:
        schedules = {s.name: s for s in cfg.schedules}
        return lambda t, at: on_call_at(schedules, t.name, at)

    async def _escalate(self, cfg: AlertingConfig, now: float) -> None:
        policies = {p.name: p for p in cfg.escalation_policies}
        for key, raw in list(self.t.escalations.items()):
            st = esc.EscalationState.model_validate_json(raw)
            policy = policies.get(st.policy)
            if policy is None or st.status != "active":
                continue
            new, pages = esc.tick(st, policy, now, self._resolver(cfg))
            await self._page(cfg, pages)  # send first ...
            if new != st:
                self.t.escalations[key] = new.model_dump_json().encode()  # ... then write

    async def _page(self, cfg: AlertingConfig, pages: list[esc.Page]) -> None:
        for p in pages:
            a = self._alert(p.fingerprint)
            if a is None:
                continue
            try:
                chain = recipient_chain(p.recipient, cfg, self.settings)
            except StopIteration:  # a receiver removed by a reload
                chain = []
            log.info("page", stage="alerting", key=p.key, recipient=p.recipient,
                     step=p.step, cycle=p.cycle, kind=p.kind)
            await self._send(page_message(p, a, self.settings.public_url), chain,
                             p.recipient, "resolved" if p.kind == "resolved" else "firing")

    async def _send(self, msg: Message, chain: list[Channel], receiver: str,
                    status: str) -> None:
        if not chain:
            log.warning("no_channel", stage="alerting", receiver=receiver, message=msg.id)
            return
        d = await self.deliverer.deliver(msg, chain)
        self._records(d.records, receiver, status)
        if d.delivered_via is None:
            log.error("delivery_failed", stage="alerting", receiver=receiver, message=msg.id)

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

    def _canary_seen(self, msg: Mapping[str, Any], now: float) -> None:
        """A window of the canary service reached alerting. It proves the canaries sent
        within it, once it is closed (``end <= now``): a window flushed early (an idle
        service's open window or rollup) may predate a canary's arrival. Any outstanding
        canary counts, not only the latest: the next canary is often sent before the window
        of the previous one closes."""
        doc = self._meta("canary")
        end = float(msg["ts"])
        start = float(msg.get("start", end))
        covered = [x for x in doc.get("sends", []) if start <= x < end]
        if not covered or end > now:
            return
        doc["seen"] = max(float(doc.get("seen", 0.0)), end)
        doc["seen_sent"] = max(float(doc.get("seen_sent", 0.0)), max(covered))
        self.t.meta["canary"] = orjson.dumps(doc)
        log.info("canary_seen", stage="alerting", sent=max(covered), seen=end,
                 round_trip_s=round(now - max(covered), 1))

    async def _deadman(self, cfg: AlertingConfig, now: float) -> None:
        receiver = cfg.deadman.receiver if cfg.deadman else cfg.route.receiver
        r = next((x for x in cfg.receivers if x.name == receiver), None)
        if r is None:
            return
        if cfg.deadman is not None:
            doc = self._meta("deadman")
            if heartbeat_due(doc.get("last"), now, cfg.deadman.interval):
                await self._send(heartbeat_message(now), receiver_chain(r, self.settings),
                                 r.name, "test")
                self.t.meta["deadman"] = orjson.dumps({"last": now})
        can = self._meta("canary")
        # the oldest canary not proven by a closed window, once it is older than the grace
        pending = [x for x in can.get("sends", []) if x > can.get("seen_sent", 0.0)]
        sent = min(pending) if pending else None
        if sent is not None and can.get("alarmed_for") != sent \
                and now - sent > self.settings.canary_grace_s:
            msg = Message(id=f"canary@{int(sent)}", status="firing", severity="critical",
                          title="logwarden canary missing: the pipeline is not alerting",
                          text=f"A canary log sent at {sent:.0f} did not reach alerting "
                               f"within {self.settings.canary_grace_s:.0f} s.",
                          trigger_ts=sent)
            await self._send(msg, receiver_chain(r, self.settings), r.name, "firing")
            self.t.meta["canary"] = orjson.dumps({**can, "alarmed": True, "alarmed_for": sent})
            log.error("canary_missing", stage="alerting", sent=sent)


MAX_PENDING_CANARIES = 100  # canaries remembered while none of them is proven


def _ms(ts: float) -> int:
    return int(ts * 1000)


def decode(raw: bytes, kind: str | None = None) -> dict[str, Any] | None:
    """A manager message, or None when it is not one. ``kind`` is the type of everything on
    the topic it came from: people's actions (from the API, Slack, SMS) carry no ``type``."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if kind is not None:
        return {**doc, "type": kind}
    return doc if "type" in doc else None

