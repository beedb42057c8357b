"""Leave one family out: each family is scored at knobs chosen on the others."""

from __future__ import annotations

from typing import Any

from evaluation.scenarios import choose, leave_one_family_out, totals


def _run(family: str, **points: tuple[int, int, int, int]) -> dict[str, Any]:
    return {"family": family, "variants": {
        p: {"anomalies": a, "false_alarms": f, "critical_within_60s": c, "criticals": 2,
            "detected": d, "incidents": 4} for p, (a, f, c, d) in points.items()}}


def test_each_family_is_scored_at_the_point_chosen_without_it() -> None:
    runs = [
        # on "a" and "b" the strict point loses nothing; on "c" it misses a critical
        _run("a", loose=(20, 6, 2, 4), strict=(12, 1, 2, 4)),
        _run("b", loose=(20, 5, 2, 4), strict=(11, 1, 2, 4)),
        _run("c", loose=(30, 9, 2, 4), strict=(10, 0, 1, 3)),
    ]
    folds = {f["family"]: f for f in leave_one_family_out(runs, ["loose", "strict"])}
    # without "c", strict looks best: "c" is scored at strict and shows its missed critical
    assert folds["c"]["chosen"] == "strict" and folds["c"]["critical_within_60s"] == 1
    # without "a" (or "b"), c's missed critical makes loose the choice
    assert folds["a"]["chosen"] == "loose" and folds["a"]["false_alarms"] == 6
    worst = leave_one_family_out(runs, ["loose", "strict"])[0]
    assert worst["family"] == "a" and worst["false_fraction"] == 0.3  # worst first
    assert choose(runs, ["loose", "strict"]) == "loose"
    assert totals(runs, "strict")["false_alarms"] == 2
