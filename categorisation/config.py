"""Configuration models of the categorisation hot path: masking, mining, template rates,
the per-service registry and triage.

They live apart from the code they configure so that code can be compiled with mypyc
(``make native``): pydantic builds its validators by introspecting Python functions, which a
compiled module does not have.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import Regex

WILDCARD = "<*>"  # what a variable becomes


class MaskRule(BaseModel):
    """An extra mask: every match of ``pattern`` inside a token becomes ``replacement``."""

    model_config = ConfigDict(frozen=True)

    pattern: Regex
    replacement: str = WILDCARD


class MaskingConfig(BaseModel):
    """Which kinds of variables to mask; one of these per service (or one for all)."""

    model_config = ConfigDict(frozen=True)

    urls: bool = True  # scheme://anything
    emails: bool = True
    uuids: bool = True
    ips: bool = True  # IPv4 and IPv6, with an optional :port
    paths: bool = True  # /a/b, ./a, ~/a, C:\a
    durations: bool = True  # 12ms, 3.5s, 2h
    hex: bool = True  # 0x1f, and long hex strings (>= 8 hex digits holding a digit)
    key_values: bool = False  # the value in key=value (off: the miner generalises key=<*> itself)
    quoted: bool = True  # '...' and "..." (may span spaces)
    dates: bool = True  # timestamps such as "Sun Jul 24 02:38:25 2005" or ISO 8601
    numbers: bool = True  # any word holding a digit (ids such as attempt_12_0003, 1.5e3, 42)
    extra: list[MaskRule] = Field(default_factory=list)  # applied first, in order
    max_line_chars: int = Field(default=4096, ge=16)  # longer lines are cut before masking
    max_tokens: int = Field(default=200, ge=1)  # later tokens are dropped


class MinerConfig(BaseModel):
    """Knobs of the miner; one configuration serves every system.

    The six accuracy knobs (``sim_threshold``, ``prefix_tokens``, ``max_constant_values``,
    ``value_vocabulary``, ``shared_values``, ``diff_runs``) are the grid point chosen on the
    six Loghub development systems; each held-out system's choice is reported by ``logwarden
    eval loghub`` (docs/categorisation.md).
    """

    model_config = ConfigDict(frozen=True)

    sim_threshold: float = Field(default=0.8, gt=0, le=1)  # Drain: share of equal tokens
    prefix_tokens: int = Field(default=1, ge=0, le=8)  # tree depth below the token count
    max_children: int = Field(default=100, ge=2)  # per tree node; more go to a <*> child
    # Brain's column rule: a slot with more distinct values than this is a variable
    max_constant_values: int = Field(default=4, ge=1)
    # a slot all of whose values were seen filling variables elsewhere is a variable
    value_vocabulary: bool = True
    # a pair of values held by slots of two different clusters makes both slots variables
    shared_values: bool = True
    # adjacent differing tokens count as one difference (a variable of several words)
    diff_runs: bool = True
    # Brain's rule for the first token too: more than max_constant_values first tokens
    # before one rest of a line make it a variable; such lines route by their next token
    variable_first_token: bool = True
    collapse_variables: bool = True  # a run of <*> is one variable (lengths meet)
    first_line_only: bool = True  # a multi-line message (stack trace): its first line + <*>
    max_clusters: int = Field(default=20_000, ge=1)  # live templates per service, LRU beyond
    max_leaf_clusters: int = Field(default=300, ge=1)  # per leaf, LRU eviction beyond
    max_aliases: int = Field(default=20_000, ge=0)  # merged ids remembered, oldest dropped
    cache_size: int = Field(default=100_000, ge=0)  # masked line -> template, 0 disables
    masking: MaskingConfig = Field(default_factory=MaskingConfig)


class RatesConfig(BaseModel):
    """Window, warm-up and the thresholds of the three events."""

    model_config = ConfigDict(frozen=True)

    window_s: float = Field(default=60.0, gt=0)
    warmup_s: float = Field(default=3600.0, ge=0)  # per service
    alpha: float = Field(default=0.1, gt=0, le=1)  # EWMA weight of a new window
    min_history: int = Field(default=10, ge=1)  # windows before spikes/vanishing are judged
    spike_z: float = Field(default=6.0, gt=0)
    spike_ratio: float = Field(default=3.0, ge=1)
    spike_min_count: int = Field(default=20, ge=1)
    vanish_windows: int = Field(default=10, ge=1)
    steady_presence: float = Field(default=0.8, gt=0, le=1)
    steady_min_mean: float = Field(default=1.0, ge=0)
    max_series: int = Field(default=200_000, ge=1)  # the longest-absent are forgotten beyond


def _default_miner() -> MinerConfig:
    # Smaller than a lone miner's defaults: thousands of services share one worker.
    return MinerConfig(max_clusters=5_000, cache_size=20_000)


class RegistryConfig(BaseModel):
    """Bounds of the registry, per-service masking and the explosion thresholds."""

    model_config = ConfigDict(frozen=True)

    miner: MinerConfig = Field(default_factory=_default_miner)  # masking here is the default
    masking: dict[str, MaskingConfig] = Field(default_factory=dict)  # service or glob -> masking
    max_services: int = Field(default=2_000, ge=1)
    warmup_lines: int = Field(default=2_000, ge=0)  # per service, before any explosion check
    window_lines: int = Field(default=1_000, ge=10)
    max_new_per_window: int = Field(default=100, ge=1)
    max_templates_per_line: float = Field(default=0.3, gt=0, le=1)


class TeamsConfig(BaseModel):
    """The ``teams.yaml`` file: team -> service names or glob patterns, and a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_team: str = Field(default="unowned", min_length=1)
    teams: dict[str, list[str]] = Field(default_factory=dict)


class TriageConfig(BaseModel):
    """Knobs of feedback learning."""

    model_config = ConfigDict(frozen=True)

    similarity: float = Field(default=0.6, gt=0, le=1)  # Jaccard of word sets
    max_corrections: int = Field(default=10_000, ge=1)  # the oldest are forgotten beyond
    cache_size: int = Field(default=200_000, ge=1)  # templates remembered
