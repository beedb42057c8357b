"""Settings of the online detection stage: the champion variant and an optional challenger.

Nested in ``streams.settings.Settings`` as ``detect`` (``LOGWARDEN_DETECT_CHALLENGER='{...}'``,
JSON for the nested models). Promoting the challenger is a config change: copy its fields
into ``champion`` and drop ``challenger``.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field


class VariantConfig(BaseModel):
    """How one variant turns calibrated scores into anomalies."""

    model_config = {"frozen": True}

    version: str = "1"  # stamped on its anomalies
    threshold_q: float = Field(default=6.5, ge=2.5)  # alarm at -log p >= this (+ series adj)
    warmup: int = Field(default=12, ge=0)  # points a series learns before it may alarm
    min_change: float = Field(default=1.0, ge=0)  # factor on each feature's minimum change
    cooldown_s: float = Field(default=300.0, ge=0)  # per series+feature after an alarm ...
    rearm_s: float = Field(default=60.0, ge=0)  # ... unless it was calm this long since
    multivariate: bool = True  # also run the per-service HalfSpaceTrees model
    mv_threshold_q: float = Field(default=10.0, gt=0)
    # The stated false-alarm rate per series and day: when set, the threshold is the tail
    # probability that gives it (-log p = log(windows a day / false_per_day)), not threshold_q
    false_per_day: float | None = Field(default=None, gt=0)
    # ARTime (``detectors.artime``, NAB's best published detector) decides when this
    # variant's gauges and counters raise: a shape its fuzzy ART has not seen, scoring at
    # least ``artime_threshold``; the series detector still gives the band, the direction
    # and "large enough" (docs/detection.md). Off: ~1.9 KB more state per gauge.
    artime: bool = False
    artime_threshold: float = Field(default=0.3, gt=0, lt=1)

    def base_q(self, window_s: int) -> float:
        """The threshold (-log p) before per-series and budget offsets, at ``window_s``.

        >>> VariantConfig(false_per_day=1.0).base_q(10)  # 8640 windows a day, 1 false
        9.06...
        """
        if self.false_per_day is None:
            return self.threshold_q
        return max(math.log(86400 / window_s / self.false_per_day), 2.5)


class BudgetSettings(BaseModel):
    """The loop's knobs (``LOGWARDEN_DETECT_BUDGET='{"target": 0.01}'``)."""

    model_config = {"frozen": True}

    enabled: bool = True
    target: float = Field(default=0.01, gt=0, lt=1)  # false alerts / judged anomalies
    window: int = Field(default=200, ge=10)  # the last judged anomalies it measures over
    aim: float = Field(default=0.5, gt=0, le=1)  # steer to this fraction of the target
    step_q: float = Field(default=0.25, gt=0)  # -log p units per step
    max_q: float = Field(default=3.0, ge=0)  # the highest offset
    min_q: float = Field(default=-1.0, le=0)  # the lowest (more sensitive than configured)
    every_s: float = Field(default=60.0, gt=0)  # how often a worker re-reads the verdicts
    history: int = Field(default=20_000, ge=10)  # verdicts read back (the newest)


class DetectionSettings(BaseModel):
    """The scoring stage (``LOGWARDEN_DETECT_*``)."""

    model_config = {"frozen": True}

    enabled: bool = True
    window_s: tuple[int, ...] = (10,)  # window sizes scored (60 doubles the cost)
    champion: VariantConfig = VariantConfig()
    challenger: VariantConfig | None = None  # shadow variant, stored, never alerted on
    change_lookback_s: float = Field(default=1800.0, ge=0)  # changes attached to anomalies
    snapshot_s: float = Field(default=30.0, gt=0)  # model state snapshot period
    max_gap_windows: int = Field(default=60, ge=0)  # missing windows scored as silence
    min_alive_rate: float = Field(default=0.5, ge=0)  # events/s below which silence is normal
    edges: bool = True  # score dependency edges (caller->callee windows)
    pool_instances: bool = True  # score per-instance metrics pooled + against siblings
    instances: bool = True  # an instance's request latency against its siblings' (pods)
    fleet_demotion: bool = True  # traffic moving on most services at once is load
    discrete_floor: bool = True  # integer gauges need K quanta and Poisson noise to move
    seen_levels: bool = True  # a gauge back at a level it often reaches is not news
    run_start: bool = True  # a latency run is also scored from the level where it began
    slow_calls: bool = True  # sparse routes and edges: calls above their history's p90
    # A gauge (scope metric) alarms after this many of its points in a row beyond the
    # threshold, the same way (a run rule, as in statistical process control): a raw
    # gauge's lone spikes are its normal heavy tail; 1 alarms on single points
    metric_run: int = Field(default=2, ge=1)
    # windows an ARTime detector learns before it may alarm (a variant with ``artime``):
    # ARTime's default, as evaluated on NAB: 600 x 10 s is 100 minutes, and its shapes are
    # 8 points of 5 windows each (probation / 104)
    artime_probation: int = Field(default=600, ge=32)
    calibrate_raise_q: float = Field(default=1.0, ge=0)  # threshold step per false positive
    calibrate_lower_q: float = Field(default=0.2, ge=0)  # step back per confirmed anomaly
    calibrate_max_q: float = Field(default=6.0, ge=0)  # bound on a series' extra threshold
    budget: BudgetSettings = BudgetSettings()  # the detector-wide false-alert loop
