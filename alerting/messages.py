"""From alerting decisions to channel messages, and from config to channel objects."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from alerting.config import AlertingConfig, AlertingSettings, ChannelRef, Receiver, User
from alerting.escalation import Page
from alerting.grouping import Notification
from alerting.lifecycle import Alert
from alerting.notifiers.base import Channel, Message, RateLimiter
from alerting.notifiers.email import EmailChannel
from alerting.notifiers.slack import SlackChannel
from alerting.notifiers.sms import SmsChannel
from alerting.notifiers.webhook import WebhookChannel
from alerting.verdicts import verdict_links
from schemas.evidence import describe_value


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _evidence(a: Alert) -> list[str]:
    ev = a.evidence
    out = [ev.summary] if ev.summary else []
    name = a.labels.get("name", "") if a.labels.get("scope") == "metric" else ""
    out += [f"{_when(t)}  {ev.field} {describe_value(ev.field, v, name)}"
            for t, v in ev.series[-6:]]
    if ev.template:
        out.append(f"template: {ev.template}")
    out += ev.log_lines[:5]
    return out


def alert_message(a: Alert, msg_id: str, status: str = "", url: str = "") -> Message:
    """One alert as a message (pages, SMS)."""
    st = status or a.state.value
    return Message(id=msg_id, fingerprint=a.fingerprint, code=a.code,
                   status=st if st in ("firing", "resolved", "acknowledged") else "firing",
                   severity=a.labels.get("severity", "warning"),
                   title=a.annotations.get("summary") or f"{a.rule} on {a.labels.get('service')}",
                   text=a.annotations.get("description", ""),
                   fields={k: v for k, v in a.labels.items() if k not in ("alertname",)}
                   | {"since": _when(a.starts_at)}
                   | ({"runbook": a.annotations["runbook_url"]}
                      if a.annotations.get("runbook_url") else {}),
                   evidence=_evidence(a), url=url, trigger_ts=a.trigger_ts)


def notification_message(n: Notification, url: str = "") -> Message:
    """A group notification: one alert reads like the alert, several as a list."""
    if len(n.firing) + len(n.resolved) == 1:
        a = (n.firing or n.resolved)[0]
        return alert_message(a, n.id, "firing" if n.firing else "resolved", url) \
            .model_copy(update={"trigger_ts": n.trigger_ts})
    lines = [f"FIRING {a.summary()} ({a.code})"
             + (f": {a.evidence.summary}" if a.evidence.summary else "") for a in n.firing]
    lines += [f"RESOLVED {a.summary()}" for a in n.resolved]
    lines += [f"ACKED {a.summary()} by {a.acked_by}" for a in n.acknowledged]
    lines += [f"suppressed {s.fingerprint}: {s.reason}" for s in n.suppressed]
    sev = min((a.labels.get("severity", "warning") for a in n.firing or n.resolved),
              key=["critical", "high", "warning", "info"].index, default="warning")
    title = f"{len(n.firing)} firing, {len(n.resolved)} resolved: " + \
        ", ".join(f"{k}={v}" for k, v in n.group_labels.items())
    fp = n.firing[0].fingerprint if len(n.firing) == 1 else ""
    return Message(id=n.id, fingerprint=fp, status=n.status, severity=sev,
                   title=title, text="\n".join(lines), url=url, trigger_ts=n.trigger_ts)


def page_message(p: Page, a: Alert, url: str = "") -> Message:
    """An escalation page (or its resolve) for one alert."""
    return alert_message(a, p.key, "resolved" if p.kind == "resolved" else "firing", url)


def email_links(settings: AlertingSettings
                ) -> Callable[[Message, str], Mapping[str, str]] | None:
    """Signed verdict links for one alert's e-mail (None without a verdict secret)."""
    secret = settings.verdict_secret.get_secret_value()
    if not secret:
        return None

    def links(msg: Message, recipient: str) -> Mapping[str, str]:
        if not msg.fingerprint or msg.status == "test":
            return {}
        return verdict_links(settings.public_url, "alert", msg.fingerprint, recipient,
                             secret, time.time(), settings.verdict_link_ttl_s)

    return links


def channel(ref: ChannelRef, settings: AlertingSettings, name: str) -> Channel:
    """A channel object for a configured address."""
    if ref.type == "email":
        return EmailChannel(name, settings.smtp, [ref.to], links=email_links(settings))
    if ref.type == "slack":
        return SlackChannel(name, settings.slack, ref.to)
    if ref.type == "webhook":
        return WebhookChannel(name, settings.webhook, ref.to)
    return SmsChannel(name, settings.twilio, ref.to)


def receiver_chain(r: Receiver, settings: AlertingSettings) -> list[Channel]:
    """A receiver's channels in failover order."""
    return [channel(c, settings, f"{r.name}/{c.type}:{i}") for i, c in enumerate(r.channels)]


def user_chain(u: User, settings: AlertingSettings) -> list[Channel]:
    """How to page a person: their channels in their order of preference."""
    addr = {"email": u.email, "slack": u.slack, "sms": u.phone}
    return [channel(ChannelRef(type=t, to=addr[t]), settings, f"user:{u.name}/{t}")
            for t in u.channels if addr[t]]


def recipient_chain(recipient: str, cfg: AlertingConfig,
                    settings: AlertingSettings) -> list[Channel]:
    """Channels for an escalation recipient (``user:alice`` / ``channel:ops``)."""
    kind, _, name = recipient.partition(":")
    if kind == "user":
        u = cfg.user(name)
        return user_chain(u, settings) if u else []
    return receiver_chain(cfg.receiver(name), settings)


def rate_limiters(cfg: AlertingConfig) -> dict[str, RateLimiter]:
    """Per-channel token buckets from ``rate_per_min``."""
    return {f"{r.name}/{c.type}:{i}": RateLimiter(rate=c.rate_per_min / 60,
                                                  burst=max(1.0, c.rate_per_min / 6))
            for r in cfg.receivers for i, c in enumerate(r.channels)}
