"""Security alerts in the alert manager: their rules are not in the alerting config, yet a
tick does not resolve them as alerts of removed rules; they are paged like any alert."""

from __future__ import annotations

from pathlib import Path

from manager_kit import Recorder, build_manager  # type: ignore[import-not-found]
from test_alert_manager import CONFIG  # type: ignore[import-not-found]

from alerting.inputs import SignalInput, Tick
from alerting.lifecycle import Signal


async def test_security_alerts_stay_firing_and_page(tmp_path: Path) -> None:
    rec = Recorder()
    m, _, _ = build_manager(tmp_path, CONFIG, deliverer=rec)
    sig = Signal(status="firing", rule="CredentialStuffing", ts=1000.0,
                 labels={"alertname": "CredentialStuffing", "severity": "critical",
                         "category": "security", "ip": "203.0.113.9", "service": "shop"},
                 annotations={"summary": "CredentialStuffing (ip 203.0.113.9): 8 users"})
    await m.handle(SignalInput(signal=sig), 1000)
    for t in (1010, 1020, 1100):
        await m.handle(Tick(ts=t), t)
    [alert] = m.alerts()
    assert alert.active and alert.rule == "CredentialStuffing"
    assert rec.messages, "the security alert was not paged"
