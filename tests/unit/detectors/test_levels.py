"""A gauge's levels (``detectors.levels``): bounded, unit-free, restorable."""

from __future__ import annotations

import math
import random

import orjson

from detectors.levels import MAX_BINS, Levels


def test_the_state_stays_bounded_over_any_range_of_values() -> None:
    rng = random.Random(1)
    lv = Levels()
    for _ in range(20_000):
        lv.add(rng.choice((-1.0, 1.0)) * 10 ** rng.uniform(-30, 30))
    assert len(lv.bins) <= MAX_BINS
    assert len(orjson.dumps(lv.to_json(), option=orjson.OPT_NON_STR_KEYS)) < 2048


def test_missing_and_infinite_readings_are_skipped() -> None:
    lv = Levels()
    for x in (math.nan, math.inf, -math.inf):
        lv.add(x)
    assert lv.bins == {} and lv.recent == []


def test_the_unit_does_not_matter() -> None:
    seconds, millis = Levels(), Levels()
    for i in range(400):
        x = 0.2 if i % 10 == 0 else 0.005
        seconds.add(x)
        millis.add(1000 * x)
    assert seconds.seen(0.2, "up") == millis.seen(200.0, "up") > 0.05
    assert seconds.seen(0.4, "up") == millis.seen(400.0, "up") == 0.0


def test_a_level_seen_once_or_twice_is_not_usual() -> None:
    lv = Levels()
    for i in range(60):
        lv.add(90.0 if i in (10, 11) else 2.0)  # two readings at 90 of 60: 3 % of them
    assert lv.seen(90.0, "up") == 0.0 and not lv.usual(90.0, "up")
    lv.add(90.0)
    for _ in range(3):
        lv.add(2.0)
    assert lv.usual(90.0, "up")


def test_a_json_round_trip_restores_it() -> None:
    lv = Levels()
    for i in range(700):
        lv.add(float(i % 37))
    back = Levels.from_json(orjson.loads(orjson.dumps(lv.to_json(),
                                                      option=orjson.OPT_NON_STR_KEYS)))
    assert back.to_json() == lv.to_json()
    assert back.seen(30.0, "up") == lv.seen(30.0, "up")
