"""On-call schedules, escalation state machine, webhook parsing, delivery maths, config files."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerting.backtest import backtest
from alerting.config import load_alerting
from alerting.escalation import EscalationPolicy, Target, acknowledge, resolve, start, tick
from alerting.notifiers.base import Message, RateLimiter, RetryPolicy, backoff
from alerting.notifiers.sms import sms_text
from alerting.oncall import Schedule, on_call_at, who_is_on_call
from alerting.rules import RuleSet
from alerting.webhooks import parse_sms_reply, sign_slack, verify_slack
from schemas.errors import ConfigError
from schemas.windows import WindowStats

REPO = Path(__file__).resolve().parents[3]
SCHED = Schedule.model_validate({
    "name": "primary", "tz": "Europe/Paris",
    "layers": [
        {"users": ["alice", "bob"], "rotation": "weekly", "start": "2025-01-06",
         "handoff": "09:00"},
        {"users": ["carol"], "rotation": "daily", "start": "2025-01-04", "handoff": "20:00",
         "restrictions": [{"days": ["sat", "sun"], "start": "20:00", "end": "08:00"}]},
    ],
    "overrides": [{"user": "dave", "start": "2025-01-15T12:00:00+01:00",
                   "end": "2025-01-15T14:00:00+01:00"}]})


def paris(y: int, mo: int, d: int, h: int, mi: int) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo("Europe/Paris"))


def test_weekly_rotation_handoff_restrictions_overrides() -> None:
    assert who_is_on_call(SCHED, paris(2025, 1, 6, 9, 0)) == ["alice"]
    assert who_is_on_call(SCHED, paris(2025, 1, 13, 8, 59)) == ["alice"]  # before hand-off
    assert who_is_on_call(SCHED, paris(2025, 1, 13, 9, 0)) == ["bob"]
    assert who_is_on_call(SCHED, paris(2025, 1, 20, 10, 0)) == ["alice"]
    assert who_is_on_call(SCHED, paris(2025, 1, 11, 23, 0)) == ["carol"]  # Sat night layer
    assert who_is_on_call(SCHED, paris(2025, 1, 13, 7, 0)) == ["carol"]  # Sun night into Mon
    assert who_is_on_call(SCHED, paris(2025, 1, 8, 7, 0)) == ["alice"]  # a weekday: no carol
    assert who_is_on_call(SCHED, paris(2025, 1, 15, 13, 0)) == ["dave"]
    assert who_is_on_call(SCHED, paris(2025, 1, 1, 12, 0)) == []  # before any layer starts
    # across the March DST change the hand-off stays at 09:00 local
    assert who_is_on_call(SCHED, paris(2025, 3, 31, 8, 59)) == who_is_on_call(
        SCHED, paris(2025, 3, 30, 12, 0))
    assert who_is_on_call(SCHED, paris(2025, 3, 31, 9, 0)) != who_is_on_call(
        SCHED, paris(2025, 3, 31, 8, 59))


POLICY = EscalationPolicy.model_validate({
    "name": "p", "repeat": 1,
    "steps": [{"notify": [{"kind": "schedule", "name": "primary"}], "wait": "10m"},
              {"notify": [{"kind": "user", "name": "carol"},
                          {"kind": "channel", "name": "ops"}], "wait": "5m"}]})
T = paris(2025, 1, 8, 12, 0).timestamp()


def resolver(t: Target, at: float) -> list[str]:
    return on_call_at({"primary": SCHED}, t.name, at)


def test_escalation_steps_repeat_and_exhaust() -> None:
    st, pages = start(POLICY, "fp1", T, resolver)
    assert [p.recipient for p in pages] == ["user:alice"]
    st, pages = tick(st, POLICY, T + 599, resolver)
    assert pages == []
    st, pages = tick(st, POLICY, T + 600, resolver)
    assert [p.recipient for p in pages] == ["user:carol", "channel:ops"]
    st, pages = tick(st, POLICY, T + 900, resolver)  # repeat: back to step 0
    assert [(p.recipient, p.cycle) for p in pages] == [("user:alice", 1)]
    st, pages = tick(st, POLICY, T + 10_000, resolver)
    assert [p.recipient for p in pages] == ["user:carol", "channel:ops"]
    assert st.status == "exhausted"


def test_restart_mid_escalation_resumes_at_right_step() -> None:
    st, _ = start(POLICY, "fp1", T, resolver)
    saved = st.model_dump_json()  # what the changelog table holds
    # the worker was down 12 minutes: the missed step is paged on the first tick, once
    from alerting.escalation import EscalationState
    st2, pages = tick(EscalationState.model_validate_json(saved), POLICY, T + 720, resolver)
    assert [(p.step, p.recipient) for p in pages] == [(1, "user:carol"), (1, "channel:ops")]
    _, again = tick(st2, POLICY, T + 721, resolver)
    assert again == []
    # a replayed tick from the same saved state yields the same page keys (dedupable)
    _, replay = tick(EscalationState.model_validate_json(saved), POLICY, T + 720, resolver)
    assert [p.key for p in replay] == [p.key for p in pages]


def test_ack_stops_and_resolve_tells_everyone_paged() -> None:
    st, _ = start(POLICY, "fp1", T, resolver)
    st, _ = tick(st, POLICY, T + 600, resolver)
    st = acknowledge(st, "carol", T + 650)
    st, pages = tick(st, POLICY, T + 5000, resolver)
    assert pages == [] and st.status == "acknowledged"
    st, pages = resolve(st, T + 6000)
    assert sorted(p.recipient for p in pages) == ["channel:ops", "user:alice", "user:carol"]
    assert all(p.kind == "resolved" for p in pages)
    assert resolve(st, T + 6001)[1] == []


def test_slack_signature_and_sms_reply_parsing() -> None:
    body = b"payload=%7B%7D"
    sig = sign_slack(body, "1000", "s3cret")
    assert verify_slack(body, "1000", sig, "s3cret", now=1100)
    assert not verify_slack(body, "1000", sig, "s3cret", now=1000 + 301)  # replay
    assert not verify_slack(body + b"x", "1000", sig, "s3cret", now=1100)
    assert not verify_slack(body, "1000", sig, "other", now=1100)
    assert not verify_slack(body, None, sig, "s3cret", now=1100)
    a = parse_sms_reply({"Body": " ack k3f7qz please", "From": "+1555", "MessageSid": "SM1"})
    assert a is not None and (a.kind, a.code, a.phone, a.message_sid) == (
        "ack", "K3F7QZ", "+1555", "SM1")
    assert parse_sms_reply({"Body": "RESOLVE K3F7QZ"}).kind == "resolve"  # type: ignore[union-attr]
    assert parse_sms_reply({"Body": "hello"}) is None


def test_backoff_rate_limit_and_sms_length() -> None:
    pol = RetryPolicy(base_s=1, max_s=8)
    rng = random.Random(3)
    waits = [backoff(n, pol, rng) for n in range(1, 8)]
    assert all(0 <= w <= min(8, 2 ** (n - 1)) for n, w in enumerate(waits, 1))
    assert len({round(w, 6) for w in waits}) == len(waits)  # jittered
    lim = RateLimiter(rate=1.0, burst=2)
    assert [lim.wait_s(0.0), lim.wait_s(0.0)] == [0.0, 0.0]
    assert lim.wait_s(0.0) == pytest.approx(1.0)
    assert lim.wait_s(1.0) == 0.0
    text = sms_text(Message(id="1", code="ABCDEF", reply_code="QZ7K3F", title="x" * 300,
                            severity="critical"))
    assert len(text) <= 160 and text.endswith("Reply ACK QZ7K3F")
    assert "ABCDEF" not in text  # the derived alert code is no SMS reply code


def test_example_config_loads_and_bad_reference_is_refused(tmp_path: Path) -> None:
    src = REPO / "deploy/config/alerting.yaml"
    cfg = load_alerting(src)
    assert cfg.route.receiver == "ops-default" and cfg.policy("primary").repeat == 1
    bad = tmp_path / "alerting.yaml"
    bad.write_text(src.read_text().replace("escalation: primary\n", "escalation: nobody\n", 1))
    with pytest.raises(ConfigError, match="unknown escalation 'nobody'"):
        load_alerting(bad)


def test_backtest_counts_episodes() -> None:
    rs = RuleSet.model_validate({"rules": [{"name": "Err", "kind": "threshold",
                                            "field": "error_rate", "value": 0.1, "for": "2m"}]})
    t0 = 1_700_000_040
    rates = [0.0] * 5 + [0.5] * 5 + [0.0] * 5 + [0.5] * 3 + [0.0] * 2
    ws = [WindowStats(series="api", service="api", scope="service", window_s=60,
                      start=datetime.fromtimestamp(t0 + 60 * i, tz=UTC),
                      end=datetime.fromtimestamp(t0 + 60 * i + 60, tz=UTC), count=100,
                      error_rate=r) for i, r in enumerate(rates)]
    rep = backtest(rs, ws)
    err = rep.rules[0]
    assert (err.fired, err.resolved, rep.inputs) == (2, 2, 20)
    assert err.firing_s == 240 + 120
