"""Rule files: validation errors name file, line and field; reload keeps the last good set."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.rules import RulesHolder, ThresholdRule, load_rules, render
from schemas.errors import ConfigError

GOOD = """\
rules:
  - name: HighErrorRate
    kind: threshold
    field: error_rate
    value: 0.05
    for: 5m
    annotations: {summary: "{service} at {value:.1%}"}
"""


def test_good_file_loads_with_durations(tmp_path: Path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text(GOOD)
    rules = load_rules(p)
    r = rules.rules[0]
    assert isinstance(r, ThresholdRule) and r.for_ == 300.0 and r.op == ">"


@pytest.mark.parametrize(("text", "line", "field"), [
    (GOOD.replace("value: 0.05", "value: lots"), 5, "rules.0.value"),
    (GOOD.replace("field: error_rate", "field: errors"), 4, "rules.0.field"),
    (GOOD.replace("for: 5m", "for: soon"), 6, "rules.0.for"),
    (GOOD.replace("kind: threshold", "kind: magic"), 3, "rules.0.kind"),
    (GOOD + "  - name: X\n    kind: composite\n    all: [Nope]\n", 10, "rules.1.all"),
    (GOOD.replace("{service} at", "{service.__class__} at"), 7, "rules.0.annotations"),
    (GOOD.replace("    field:", "    select: {service: 'pay(ments'}\n    field:"), 4,
     "rules.0.select.service"),
    # a template rule's service regex too (it used to fail on the first template event)
    (GOOD + "  - name: T\n    kind: template\n    service: '[oops'\n", 10, "rules.1.service"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, text: str, line: int,
                                         field: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_rules(p)
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"{p}:{line}: {field}"), first


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("rules:\n  - name: [x\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_rules(p)


def test_reload_refuses_bad_file_and_keeps_last_good(tmp_path: Path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text(GOOD)
    holder = RulesHolder([p])
    assert holder.reload() is None and len(holder.rules.rules) == 1
    p.write_text(GOOD.replace("value: 0.05", "value: [1]"))
    err = holder.reload()
    assert err is not None and "r.yaml:5" in err
    assert [r.name for r in holder.rules.rules] == ["HighErrorRate"]
    p.write_text(GOOD.replace("HighErrorRate", "Renamed"))
    assert holder.reload() is None and holder.rules.rules[0].name == "Renamed"


def test_render_is_safe_with_missing_and_bad_values() -> None:
    assert render("{service} {value:.1%}", {"service": "api", "value": 0.123}) == "api 12.3%"
    assert render("{service} {nope}", {"service": "api"}) == "api ?"
    assert render("{value:.1%}", {"value": "n/a"}) == "n/a"
