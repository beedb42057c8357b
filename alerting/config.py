"""Alerting settings (environment, secrets as SecretStr) and the alerting YAML file
(rules, routes, receivers, inhibitions, schedules, escalation policies, users)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from alerting.escalation import EscalationPolicy
from alerting.inhibit import DependencyInhibit, InhibitRule
from alerting.lifecycle import FlapConfig
from alerting.notifiers.base import RetryPolicy
from alerting.oncall import Schedule
from alerting.outbox import OutboxPolicy
from alerting.routing import Route, all_runbooks, match_routes, receivers_used, route_runbook
from alerting.rules import RuleSet
from alerting.runbooks import Executor, Runbook
from alerting.yamlfile import Duration, load_yaml_model


class SmtpSettings(BaseModel):
    """The SMTP server alerts are mailed through."""

    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = 8025
    username: str = ""
    password: SecretStr = SecretStr("")
    starttls: bool = False  # upgrade a plain connection
    use_tls: bool = False  # implicit TLS (port 465)
    validate_certs: bool = True
    sender: str = "logwarden@localhost"
    timeout_s: float = 10.0


class SlackSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    token: SecretStr = SecretStr("")
    signing_secret: SecretStr = SecretStr("")
    base_url: str = "https://slack.com/api/"
    timeout_s: float = 10.0


class TwilioSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    from_number: str = ""
    base_url: str = "https://api.twilio.com"
    webhook_url: str = ""  # our public URL of the inbound SMS webhook (signature input)
    timeout_s: float = 10.0


class WebhookSettings(BaseModel):
    """Outgoing webhooks (the ``webhook`` channel and runbook webhook steps)."""

    model_config = ConfigDict(frozen=True)

    secret: SecretStr = SecretStr("")  # HMAC key of X-Logwarden-Signature (empty: unsigned)
    timeout_s: float = 10.0


class RunbookSettings(BaseModel):
    """Runbook actions (``alerting/actions.py``): LOGWARDEN_ALERTING_RUNBOOKS as JSON."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True  # start runbook actions when an alert with a runbook fires
    dry_run: bool = False  # every action only records what it would do
    approval_timeout_s: float = 3600.0  # an action awaiting approval expires after this
    output_limit: int = 4000  # characters of a command's output / a response body kept


class AlertingSettings(BaseModel):
    """Nested in Settings as ``alerting`` (LOGWARDEN_ALERTING_...)."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True  # LOGWARDEN_ALERTING_ENABLED
    config_file: Path = Path("deploy/config/alerting.yaml")
    rule_files: list[Path] = []  # extra rules files next to the config's own rules
    smtp: SmtpSettings = SmtpSettings()
    slack: SlackSettings = SlackSettings()
    twilio: TwilioSettings = TwilioSettings()
    retry: RetryPolicy = RetryPolicy()
    evaluation_interval_s: float = 10.0
    # event time (alerting/watermark.py): a windows partition silent this long (wall clock)
    # stops holding the fleet watermark back; LOGWARDEN_ALERTING_WATERMARK_IDLE_S
    watermark_idle_s: float = Field(default=30.0, gt=0)
    # how late a window may arrive behind the fleet watermark: absence and time-outs wait
    # this much event time more before they conclude; LOGWARDEN_ALERTING_ABSENCE_SETTLE_S
    absence_settle_s: float = Field(default=30.0, ge=0)
    public_url: str = "http://127.0.0.1:6066"  # links in messages
    reload_check_s: float = 5.0  # how often the config file's mtime is checked
    canary_interval_s: float = 300.0  # a synthetic canary log event this often (0: off)
    canary_grace_s: float = 120.0  # the canary's window must reach alerting within this
    outbox: OutboxPolicy = OutboxPolicy()  # retries of notifications no channel delivered
    sms_code_ttl_s: float = 12 * 3600.0  # an SMS reply code works this long (and once)
    webhook: WebhookSettings = WebhookSettings()
    runbooks: RunbookSettings = RunbookSettings()
    # signs the verdict links in e-mails (empty: e-mails carry no verdict links)
    verdict_secret: SecretStr = SecretStr("")
    verdict_link_ttl_s: float = 7 * 86400.0  # a verdict link works this long
    # security detectors on the auth-events topic (alerting/security.py; '' turns them off)
    security_file: Path | None = Path("deploy/config/security.yaml")
    security_history_days: int = 30  # the address book is seeded from this much history


class User(BaseModel):
    """A person who can be paged, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    email: str = ""
    phone: str = ""
    slack: str = ""  # a Slack user or DM channel id
    channels: list[Literal["email", "slack", "sms"]] = ["slack", "email", "sms"]  # failover


class ChannelRef(BaseModel):
    """One channel of a receiver: type plus address; ``rate`` is sends per minute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["email", "slack", "sms", "webhook"]
    to: str  # address, Slack channel id, phone number, webhook URL
    rate_per_min: float = Field(default=30.0, gt=0)


class Receiver(BaseModel):
    """Where notifications go: channels tried in order (failover) and/or an escalation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    channels: list[ChannelRef] = []
    escalation: str | None = None

    @model_validator(mode="after")
    def _has_target(self) -> Receiver:
        if not self.channels and not self.escalation:
            raise ValueError("a receiver needs channels or an escalation policy")
        return self


class DeadMan(BaseModel):
    """The canary: a heartbeat alert sent to ``receiver`` every ``interval``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    receiver: str
    interval: Duration = 3600.0


class AlertingConfig(RuleSet):
    """The alerting YAML file: rules plus everything downstream of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: Route
    receivers: list[Receiver] = Field(min_length=1)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    dependency_inhibit: DependencyInhibit | None = DependencyInhibit()
    schedules: list[Schedule] = Field(default_factory=list)
    escalation_policies: list[EscalationPolicy] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)
    flapping: FlapConfig = FlapConfig()
    deadman: DeadMan | None = None
    executors: list[Executor] = Field(default_factory=list)  # the commands runbooks may run

    @model_validator(mode="after")
    def _runbook_executors(self) -> AlertingConfig:
        known = {e.name for e in self.executors}
        books = [r.runbook for r in self.rules if r.runbook] + all_runbooks(self.route)
        for book in books:
            for step in book.steps:
                if step.command is not None and step.command.executor not in known:
                    raise ValueError(f"runbook step {step.name!r}: unknown executor "
                                     f"{step.command.executor!r} (add it under executors:)")
        return self

    def runbook(self, rule: str, labels: Mapping[str, str]) -> tuple[str, Runbook] | None:
        """The runbook for an alert of ``rule``: the rule's own, else its route's, with where
        it came from (``rule:<name>`` / ``route:<id>``)."""
        r = self.by_name().get(rule)
        if r is not None and r.runbook is not None:
            return f"rule:{rule}", r.runbook
        for m in match_routes(self.route, labels):
            found = route_runbook(self.route, m.route_id)
            if found is not None:
                return f"route:{found[0]}", found[1]
        return None

    def executor(self, name: str) -> Executor | None:
        """An allowed executor by name."""
        return next((e for e in self.executors if e.name == name), None)

    @model_validator(mode="after")
    def _references(self) -> AlertingConfig:
        names = {r.name for r in self.receivers}
        if self.route.receiver is None:
            raise ValueError("the top route needs a receiver")
        missing = receivers_used(self.route) - names
        if self.deadman and self.deadman.receiver not in names:
            missing.add(self.deadman.receiver)
        if missing:
            raise ValueError(f"routes name unknown receivers {sorted(missing)}")
        policies = {p.name: p for p in self.escalation_policies}
        schedules = {s.name for s in self.schedules}
        users = {u.name for u in self.users}
        for r in self.receivers:
            if r.escalation and r.escalation not in policies:
                raise ValueError(f"receiver {r.name!r}: unknown escalation {r.escalation!r}")
        for p in self.escalation_policies:
            for step in p.steps:
                for t in step.notify:
                    known = {"user": users, "schedule": schedules, "channel": names}[t.kind]
                    if t.name not in known:
                        raise ValueError(f"escalation {p.name!r}: unknown {t.kind} {t.name!r}")
        for s in self.schedules:
            for layer in s.layers:
                unknown = [u for u in layer.users if u not in users]
                if unknown:
                    raise ValueError(f"schedule {s.name!r}: unknown users {unknown}")
        return self

    def receiver(self, name: str) -> Receiver:
        return next(r for r in self.receivers if r.name == name)

    def user(self, name: str) -> User | None:
        return next((u for u in self.users if u.name == name), None)

    def policy(self, name: str) -> EscalationPolicy:
        return next(p for p in self.escalation_policies if p.name == name)


def load_alerting(path: Path) -> AlertingConfig:
    """Read the alerting YAML; errors name file, line and field."""
    return load_yaml_model(path, AlertingConfig)
