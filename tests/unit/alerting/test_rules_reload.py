"""Rules reload without a restart: ``ConfigHolder.check`` (the worker's reload timer and
SIGHUP) applies a valid edit, and refuses a bad one with file, line and field in the log
while the last good rules stay in force."""

from __future__ import annotations

import os
from pathlib import Path

from structlog.testing import capture_logs

from alerting.config import AlertingSettings
from alerting.reload import ConfigHolder

BASE = """
rules:
  - {name: Errors, kind: threshold, field: error_rate, value: 0.5, severity: critical}
route: {receiver: ops}
receivers:
  - {name: ops, channels: [{type: slack, to: C0OPS}]}
"""


def write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))  # a distinct mtime whatever the filesystem's resolution


def test_valid_edit_is_applied_and_unchanged_file_is_not_reread(tmp_path: Path) -> None:
    f = tmp_path / "alerting.yaml"
    write(f, BASE, 1_000_000)
    h = ConfigHolder(AlertingSettings(config_file=f))
    assert h.check() and h.version == 1
    assert not h.check()  # nothing changed
    write(f, BASE.replace("value: 0.5", "value: 0.9"), 1_000_010)
    assert h.check()
    assert h.config is not None and h.version == 2
    assert h.config.rules[0].model_dump()["value"] == 0.9


def test_invalid_edit_is_refused_with_file_line_field(tmp_path: Path) -> None:
    f = tmp_path / "alerting.yaml"
    write(f, BASE, 1_000_000)
    h = ConfigHolder(AlertingSettings(config_file=f))
    assert h.check()
    good = h.config
    bad = BASE.replace("value: 0.5, severity: critical", "value: 0.5, severity: loud")
    write(f, bad, 1_000_010)
    with capture_logs() as logs:
        assert not h.check()
    assert h.config is good and h.version == 1  # the last good rules stay
    (refused,) = [e for e in logs if e["event"] == "alerting_config_refused"]
    assert refused["log_level"] == "error" and refused["kept"] == "last good"
    assert f"{f}:3: rules.0.severity" in refused["error"]
    assert h.last_error == refused["error"]
    assert not h.check()  # the same bad file is not re-parsed at every timer tick
    write(f, BASE.replace("Errors", "Errs"), 1_000_020)  # fixed: applied again
    assert h.check() and h.config is not None and h.config.rules[0].name == "Errs"


def test_bad_extra_rules_file_keeps_config(tmp_path: Path) -> None:
    f, extra = tmp_path / "alerting.yaml", tmp_path / "more.yaml"
    write(f, BASE, 1_000_000)
    write(extra, "rules:\n  - {name: Slow, kind: threshold, field: p99, value: 900, "
                 "severity: warning}\n", 1_000_000)
    h = ConfigHolder(AlertingSettings(config_file=f, rule_files=[extra]))
    assert h.check() and h.config is not None
    assert [r.name for r in h.config.rules] == ["Errors", "Slow"]
    write(extra, "rules:\n  - {name: Slow, kind: threshold, field: p99, value: [oops, "
                 "severity: warning}\n", 1_000_010)
    with capture_logs() as logs:
        assert not h.check()
    assert [r.name for r in h.config.rules] == ["Errors", "Slow"]
    assert any(f"{extra}:2" in str(e.get("error")) for e in logs)
