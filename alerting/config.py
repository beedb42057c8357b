"""Alerting settings (environment, secrets as SecretStr) and the alerting YAML file
(rules, routes, receivers, inhibitions, schedules, escalation policies, users)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from alerting.escalation import EscalationPolicy
from alerting.inhibit import DependencyInhibit, InhibitRule
from alerting.lifecycle import FlapConfig
from alerting.notifiers.base import RetryPolicy
from alerting.oncall import Schedule
from alerting.outbox import OutboxPolicy
from alerting.routing import Route, receivers_used
from alerting.rules import RuleSet
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
    public_url: str = "http://127.0.0.1:6066"  # links in messages
    reload_check_s: float = 5.0  # how often the config file's mtime is checked
    canary_interval_s: float = 300.0  # a synthetic canary log event this often (0: off)
    canary_grace_s: float = 120.0  # the canary's window must reach alerting within this
    outbox: OutboxPolicy = OutboxPolicy()  # retries of notifications no channel delivered
    sms_code_ttl_s: float = 12 * 3600.0  # an SMS reply code works this long (and once)


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

    type: Literal["email", "slack", "sms"]
    to: str  # address, Slack channel id, phone number
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
