"""The rules that hold across fleets (``detectors.pooling`` in ``WindowScorer``): small
integer gauges, pods that come and go, one pod unlike its siblings, fleet-wide shifts,
thresholds from a stated false-alarm rate."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from detectors.scoring import WindowScorer
from detectors.settings import DetectionSettings, VariantConfig
from schemas.anomalies import AnomalyEvent
from schemas.windows import WindowStats

T0 = 1_700_000_000


def _win(series: str, scope: str, i: int, service: str = "", **kw: Any) -> WindowStats:
    t = T0 + 10 * i
    name = series.split("/")[1].split("{")[0] if scope == "metric" else ""
    return WindowStats(series=series, service=service or series.split("/")[0], scope=scope,
                       name=name, window_s=10, start=datetime.fromtimestamp(t - 10, UTC),
                       end=datetime.fromtimestamp(t, UTC), **kw)


def _gauge(series: str, i: int, value: float, service: str = "") -> WindowStats:
    return _win(series, "metric", i, service, count=1, mean=value, min=value, max=value,
                last=value)


def _run(steps: list[list[WindowStats]], settings: DetectionSettings | None = None
         ) -> list[AnomalyEvent]:
    sc = WindowScorer(settings or DetectionSettings())
    return [a for ws in steps for a in sc.score_batch(ws) if a.variant == "champion"]


def test_a_small_integer_gauge_moving_between_0_1_and_2_is_not_news() -> None:
    rng = random.Random(3)
    # mostly 0, now and then 1 or 2, and after a long calm a run of 2s and a 3
    values = [rng.choice((0, 0, 0, 0, 0, 0, 0, 1)) for _ in range(400)]
    values += [2, 2, 1, 3, 2, 0, 0, 1, 2, 2]
    steps = [[_gauge("notifications/queue_depth", i, float(v))] for i, v in enumerate(values)]
    assert _run(steps) == []
    # the same gauge filling up for real (0 -> 40) is an anomaly
    big = steps[:400] + [[_gauge("notifications/queue_depth", 400 + k, 40.0)] for k in range(3)]
    assert [(a.series, a.feature) for a in _run(big)][:1] == [
        ("notifications/queue_depth", "mean")]
    # without the floor (the rule off), the small moves do alarm: the floor is what helps
    off = DetectionSettings(discrete_floor=False)
    calm = [[_gauge("notifications/queue_depth", i, 0.0)] for i in range(300)]
    assert _run(calm + [[_gauge("notifications/queue_depth", 300 + k, 2.0)]
                        for k in range(3)], off) != []
    assert _run(calm + [[_gauge("notifications/queue_depth", 300 + k, 2.0)]
                        for k in range(3)]) == []


def test_a_gauge_that_moves_in_sixes_needs_three_of_its_own_quanta() -> None:
    # failures per minute, sampled every 10 s as a tally x 6: 0, 6, 12 is one or two failures
    rng = random.Random(4)
    values = [rng.choice((0, 0, 0, 0, 0, 0, 0, 0, 0, 6)) for _ in range(300)] + [6, 12, 6, 0]
    steps = [[_gauge("auth/login_failures_per_min", i, float(v))] for i, v in enumerate(values)]
    assert _run(steps) == []
    attack = steps[:300] + [[_gauge("auth/login_failures_per_min", 300 + k, 600.0)]
                            for k in range(3)]
    assert [a.feature for a in _run(attack)][:1] == ["mean"]


def _bucketed(n: int) -> list[float]:
    """A latency percentile read from histogram buckets: 5 ms, now and then 49 ms, and
    every 40 minutes 4 minutes at the 28.8 s bucket (one slow request a minute)."""
    rng = random.Random(6)
    return [28.8 if i % 40 < 4 else rng.choice((0.005, 0.005, 0.005, 0.049)) for i in range(n)]


def test_a_gauge_back_at_a_level_it_often_reaches_is_not_news() -> None:
    series = "orders/client_latency_p99_s"
    steps = [[_gauge(series, i, v)] for i, v in enumerate(_bucketed(600))]
    assert _run(steps) == []
    # the rule is what helps: without it the trips to the 28.8 s bucket alarm
    assert len(_run(steps, DetectionSettings(seen_levels=False))) >= 3
    # a level it never reached is still news, and so is one it left long ago
    new = [[_gauge(series, 600 + k, 300.0)] for k in range(3)]
    assert [(a.series, a.direction) for a in _run(steps + new)] == [(series, "up")]


def test_a_gauges_levels_survive_a_restart() -> None:
    series = "orders/client_latency_p99_s"
    values = _bucketed(600)
    sc = WindowScorer(DetectionSettings())
    for i, v in enumerate(values[:300]):
        sc.score_batch([_gauge(series, i, v)])
    again = WindowScorer(DetectionSettings())
    again.restore(series, sc.snapshot()[series])
    kept, had = again.states[series].levels, sc.states[series].levels
    assert kept is not None and had is not None and kept.to_json() == had.to_json()
    rest = [[_gauge(series, 300 + i, v)] for i, v in enumerate(values[300:])]
    assert [a for ws in rest for a in again.score_batch(ws)] == []


def _pods(generation: int, n: int) -> list[str]:
    return [f"search-{generation:04x}-p{k}" for k in range(n)]


def test_new_pod_series_after_deploys_and_autoscaling_are_not_anomalies() -> None:
    rng = random.Random(5)
    steps = []
    born: dict[int, tuple[int, int]] = {}  # pod slot -> (generation, window it started)
    for i in range(600):
        n = 3 + (i // 45) % 3  # the autoscaler: 3, 4 or 5 pods
        ws = []
        for k in range(n):
            # a rolling deploy every 90 windows replaces one pod every 5 windows
            gen = (i - 5 * k) // 90
            if k not in born or born[k][0] != gen:
                born[k] = (gen, i)
            age = i - born[k][1]
            pod = f"cart-{gen:04x}-p{k}"
            # a new pod starts a little cold and warms up; its queue is small integers
            ws.append(_gauge(f"cart/memory_mb{{env=prod,pod={pod}}}", i,
                             380 + min(age, 10) * 2 + rng.gauss(0, 3), "cart"))
            ws.append(_gauge(f"cart/queue_depth{{env=prod,pod={pod}}}", i,
                             float(rng.choice((0, 0, 1, 2))), "cart"))
        steps.append(ws)
    assert _run(steps) == []
    # the pods were scored as one service-level series each
    sc = WindowScorer(DetectionSettings())
    for ws in steps[:50]:
        sc.score_batch(ws)
    assert {"cart/memory_mb{env=prod,pod=*}", "cart/queue_depth{env=prod,pod=*}"} <= set(
        sc.states)
    assert not any("pod=cart-" in s for s in sc.states)


def test_one_pod_unlike_its_siblings_is_flagged_naming_the_pod() -> None:
    rng = random.Random(7)
    pods = _pods(1, 4)
    steps = []
    for i in range(200):
        ws = []
        for k, pod in enumerate(pods):
            cpu = 30 + rng.gauss(0, 2)
            if k == 2 and i >= 150:
                cpu = 88 + rng.gauss(0, 3)  # starved: CPU contention on one pod
            ws.append(_gauge(f"search/cpu_percent{{pod={pod}}}", i, cpu, "search"))
        steps.append(ws)
    got = _run(steps)
    sib = [a for a in got if a.detector == "siblings"]
    assert sib, got
    first = sib[0]
    assert first.series == f"search/cpu_percent{{pod={pods[2]}}}"
    assert first.direction == "up" and first.ts == (T0 + 10 * 151) * 1000  # 2 windows in a row
    assert 25 < first.expected < 35 and first.observed > 75
    assert len(sib) == 1  # one event for the episode (cooldown)
    assert all(a.series.startswith("search/cpu_percent") for a in got)


def _service(name: str, i: int, rate: float, errors: float = 0.002) -> WindowStats:
    return _win(name, "service", i, count=int(rate * 10), rate_per_s=rate,
                error_rate=errors, p95=100.0, p99=150.0, samples=int(rate * 10))


def _fleet(spike: set[str], factor: float, errors_on: str = "") -> list[list[WindowStats]]:
    rng = random.Random(11)
    names = ["gw", "cart", "catalog", "search", "users", "auth"]
    base = {n: 40.0 + 10 * k for k, n in enumerate(names)}
    steps = []
    for i in range(400):
        ws = []
        for n in names:
            f = factor if i >= 380 and n in spike else 1.0
            err = 0.3 if i >= 380 and n == errors_on else abs(rng.gauss(0.002, 0.001))
            ws.append(_service(n, i, base[n] * f + rng.gauss(0, 1.5), err))
        steps.append(ws)
    return steps


def test_traffic_moving_on_the_whole_fleet_at_once_is_load_not_an_incident() -> None:
    names = {"gw", "cart", "catalog", "search", "users", "auth"}
    alone = _run(_fleet({"cart"}, 2.2))
    assert [(a.service, a.feature) for a in alone] == [("cart", "rate_per_s")]
    assert _run(_fleet(names, 2.2)) == []
    # the rule off: every service alarms
    assert len(_run(_fleet(names, 2.2), DetectionSettings(fleet_demotion=False))) == 6
    # ... unless errors move too: that service's anomaly stays
    got = _run(_fleet(names, 2.2, errors_on="search"))
    assert {(a.service, a.feature) for a in got} == {("search", "error_rate")}
    # a collapse (critical) of one service is never demoted
    drop = _run(_fleet(names - {"gw"}, 2.0) + [[_service(n, 400 + k, 0.5 if n == "gw" else 80.0)
                                                for n in sorted(names)] for k in range(2)])
    assert ("gw", "rate_per_s", "critical") in {(a.service, a.feature, a.severity)
                                               for a in drop}


def _surge_batches(errors_on: str = "", logs_after: int = 1) -> list[list[WindowStats]]:
    """`_fleet` under a surge, each service with a per-pod CPU gauge that rises with it, as
    a worker reads them: the metrics windows of an end in one batch, the services' traffic
    windows of that end ``logs_after`` batches later (their own partitions)."""
    rng = random.Random(12)
    traffic = [[w.model_copy(update={"source": "logs:0"}) for w in ws]
               for ws in _fleet({"gw", "cart", "catalog", "search", "users", "auth"}, 2.2,
                                errors_on)]
    metrics = []
    for i, ws in enumerate(traffic):
        load = 2.2 if i >= 380 else 1.0
        metrics.append([_gauge(f"{w.service}/cpu_percent{{pod={w.service}-{p}}}", i,
                               30.0 * load + rng.gauss(0, 1.0)).model_copy(
                                   update={"source": "metrics:0"})
                        for w in ws for p in range(3)])
    out: list[list[WindowStats]] = []
    for i in range(len(traffic) + logs_after):
        out.append(metrics[i] if i < len(metrics) else [])
        out.append(traffic[i - logs_after] if i >= logs_after else [])
    return out


def _run_clocked(batches: list[list[WindowStats]], settings: DetectionSettings | None = None
                 ) -> tuple[WindowScorer, list[AnomalyEvent]]:
    sc, now = WindowScorer(settings or DetectionSettings()), [0.0]
    sc.clock = lambda: now[0]
    out = []
    for b in batches:
        now[0] += 0.1  # a worker reading at full speed
        out += [a for a in sc.score_batch(b) if a.variant == "champion"]
    return sc, out


def test_gauges_read_ahead_of_the_fleets_traffic_wait_for_it_before_the_load_demotion(
        ) -> None:
    """A worker reads metrics and logs partitions in batches of their own: the pods' CPU
    under a fleet-wide surge is scored before the surge is seen, and must still be load."""
    _, off = _run_clocked(_surge_batches(), DetectionSettings(fleet_demotion=False))
    assert {a.service for a in off if a.scope == "metric"} >= {"gw", "search"}
    for behind in (1, 3):  # the logs a batch, or three, behind the metrics
        sc, got = _run_clocked(_surge_batches(logs_after=behind))
        assert got == [] and sc.held == []
    # errors on one service: the same anomalies as when each end's windows come together
    apart = _surge_batches(errors_on="search")
    _, got = _run_clocked(apart)
    _, together = _run_clocked([apart[i] + apart[i + 1] for i in range(0, len(apart), 2)])
    assert [(a.service, a.feature, a.ts) for a in got] == [
        (a.service, a.feature, a.ts) for a in together]
    assert {(a.service, a.feature) for a in got} == {("search", "error_rate")}
    # the logs never come: the held anomalies go out after SOURCE_IDLE_S of the clock, or
    # when the worker snapshots its state (``release``)
    surge_end = T0 + 10 * 380
    batches = [[w for w in b if w.scope == "metric" or w.end.timestamp() < surge_end]
               for b in _surge_batches()]  # the surge's traffic windows never arrive
    sc, got = _run_clocked(batches)
    assert got == [] and sc.held
    assert {a.service for a in sc.release()} >= {"gw", "search"} and sc.held == []
    sc, got = _run_clocked(batches + [[]] * 400)
    assert {a.service for a in got} >= {"gw", "search"} and sc.held == []


def test_false_per_day_sets_the_threshold_from_a_stated_false_alarm_rate() -> None:
    assert VariantConfig().base_q(10) == 6.5
    one = VariantConfig(false_per_day=1.0)
    tenth = VariantConfig(false_per_day=0.1)
    assert round(one.base_q(10), 2) == 9.06 and round(one.base_q(60), 2) == 7.27
    assert tenth.base_q(10) > one.base_q(10)
    # a rarer stated rate alarms on fewer, larger changes: jumps of 4, 7, 13 and 27 sd
    rng = random.Random(2)
    jumps = {300: 12, 360: 20, 420: 40, 480: 80}
    steps = [[_gauge("api/cpu", i, 30 + rng.gauss(0, 3) + jumps.get(i, 0))] for i in range(540)]

    def alarms(per_day: float) -> set[int]:
        got = _run(steps, DetectionSettings(champion=VariantConfig(false_per_day=per_day),
                                            metric_run=1))  # single points: no run rule
        return {(a.ts // 1000 - T0) // 10 for a in got}

    many, some, few = alarms(1000.0), alarms(100.0), alarms(10.0)
    assert many >= some >= few and len(many) > len(some) > len(few) >= 1
    assert {420, 480} <= some and 480 in few


def test_a_gauge_alarms_on_two_points_in_a_row_not_on_a_lone_spike() -> None:
    rng = random.Random(5)
    spikes = {300: 90.0, 400: 90.0, 401: 90.0, 402: 90.0}  # a lone spike, then a shift
    steps = [[_gauge("api/cpu", i, 30 + rng.gauss(0, 3) + spikes.get(i, 0.0))]
             for i in range(460)]
    got = {(a.ts // 1000 - T0) // 10 for a in _run(steps)}
    assert got == {401}  # the shift, at its second point; the lone spike is the gauge's tail
    single = {(a.ts // 1000 - T0) // 10 for a in _run(steps, DetectionSettings(metric_run=1))}
    assert {300, 400} <= single


def test_a_gauge_going_back_to_normal_after_an_episode_is_not_a_second_anomaly() -> None:
    # a connection pool held at its maximum for ten minutes, then released: the detector
    # had partly adopted the full pool, but the return to the old normal is not news
    rng = random.Random(6)

    def run(after: float) -> list[tuple[int, str]]:
        steps = [[_gauge("db/open_connections", i, round(30 + rng.gauss(0, 2))
                         + (70.0 if 400 <= i < 460 else 0.0) + (after if i >= 460 else 0.0))]
                 for i in range(560)]
        return [((a.ts // 1000 - T0) // 10, a.direction) for a in _run(steps)]

    assert run(0.0) == [(401, "up")]
    # draining far below the old normal (30 -> 0) is news, recovery or not
    assert run(-30.0) == [(401, "up"), (461, "down")]


def test_a_restarted_scorer_still_knows_the_episode_and_forgets_it_once_it_is_over() -> None:
    rng = random.Random(6)
    series = "db/open_connections"
    steps = [[_gauge(series, i, round(30 + rng.gauss(0, 2)) + (70.0 if 400 <= i < 460 else 0.0))]
             for i in range(700)]
    sc = WindowScorer(DetectionSettings())
    first = [a for ws in steps[:430] for a in sc.score_batch(ws) if a.variant == "champion"]
    assert [a.direction for a in first] == ["up"]
    # a worker restarted mid-episode (state from its snapshot) still sees the release as
    # the recovery it is, not a second anomaly
    again = WindowScorer(DetectionSettings())
    again.restore(series, sc.snapshot()[series])
    rest = [a for ws in steps[430:] for a in again.score_batch(ws) if a.variant == "champion"]
    assert rest == []
    # half an hour after the episode's last alarm it decides nothing: the snapshot drops it
    assert again.states[series].episodes
    again.snapshot()
    assert not again.states[series].episodes


def _failures(lines_per_failure: int, last: list[int]) -> list[AnomalyEvent]:
    """A service of 50 log lines a window whose requests fail now and then (Poisson, one
    failure every 20 windows on average), each failure logging ``lines_per_failure`` error
    lines; then windows with ``last`` error lines. Its error_rate anomalies in those."""
    rng = random.Random(5)
    steps = []
    for i in range(720 + len(last)):
        fails = sum(rng.random() < 0.05 / 4 for _ in range(4)) if i < 720 else 0
        errors = fails * lines_per_failure if i < 720 else last[i - 720]
        steps.append([_win("mail", "service", i, count=50, rate_per_s=5.0,
                           error_rate=errors / 50, error_count=errors)])
    return [a for a in _run(steps) if a.feature == "error_rate" and a.ts >= (T0 + 7200) * 1000]


def test_error_lines_are_counted_in_failures_when_each_failure_logs_several() -> None:
    # six error lines in a window: three failures where each logs two lines (the exception
    # and the access line), not news; six failures where each logs one line, an anomaly
    assert _failures(2, [6]) == []
    assert [a.direction for a in _failures(1, [6])] == ["up"]
    # a real burst still is one: twenty failures of two lines
    assert [a.direction for a in _failures(2, [40])] == ["up"]
