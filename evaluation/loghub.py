"""Template mining scored on the Loghub 2k samples, leave one system out.

Every knob of the miner that affects accuracy is chosen *without* the system it is scored on:
for each held-out system, the grid point with the best mean grouping accuracy (GA) on the
other systems is run on it (ties: the better worst system, then grid order, which starts with
the shipped configuration). The headline is the mean and the worst of those held-out scores;
the scores of the shipped configuration on the systems it was developed on are reported apart.

Scores group lines by their template's *final* text (the scorer's default), after aliases
resolve: a line's id may since have merged into an older template.

>>> rx = header_regex(LOGHUB_FORMATS["Apache"])
>>> split_header(rx, "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok")[1]
'workerEnv.init() ok'
>>> folds = leave_one_out({"a": {"A": 1.0, "B": 0.5}, "b": {"A": 0.9, "B": 0.9}})
>>> [(f.held_out, f.config, f.ga) for f in folds]
[('A', 'b', 0.9), ('B', 'a', 0.5)]
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from categorisation.config import MinerConfig, RegistryConfig
from categorisation.miner import TemplateMiner
from categorisation.registry import TemplateRegistry

# Header layouts of the Loghub benchmark systems (Zhu et al. 2019, logpai/logparser): the
# only per-system input; the miner configuration is the same for all.
LOGHUB_FORMATS = {
    "HDFS": r"<Date> <Time> <Pid> <Level> <Component>: <Content>",
    "Hadoop": r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>",
    "Spark": r"<Date> <Time> <Level> <Component>: <Content>",
    "Zookeeper": r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
    "BGL": r"<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> "
           r"<Content>",
    "HPC": r"<LogId> <Node> <Component> <State> <Time> <Flag> <Content>",
    "Thunderbird": r"<Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> "
                   r"<Component>(\[<PID>\])?: <Content>",
    "Windows": r"<Date> <Time>, <Level>                  <Component>    <Content>",
    "Linux": r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>",
    "Android": r"<Date> <Time>  <Pid>  <Tid> <Level> <Component>: <Content>",
    "HealthApp": r"<Time>\|<Component>\|<Pid>\|<Content>",
    "Apache": r"\[<Time>\] \[<Level>\] <Content>",
    "Proxifier": r"\[<Time>\] <Program> - <Content>",
    "OpenSSH": r"<Date> <Day> <Time> <Component> sshd\[<Pid>\]: <Content>",
    "OpenStack": r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>",
    "Mac": r"<Month>  <Date> <Time> <User> <Component>\[<PID>\]( \(<Address>\))?: <Content>",
}

# Drain on the corrected ground truth (Loghub-2.0 paper, 2k): GA, FGA, PA. Tuned per system.
PUBLISHED_DRAIN = {
    "HDFS": (0.998, 0.839, 0.500),
    "Hadoop": (0.948, 0.820, 0.269),
    "Zookeeper": (0.967, 0.854, 0.497),
    "Apache": (1.000, 1.000, 0.694),
    "OpenSSH": (0.789, 0.880, 0.508),
    "Linux": (0.690, 0.930, 0.183),
}

# The knobs chosen leave-one-system-out, and their candidate values. The shipped
# configuration (MinerConfig's defaults) is one of the points, and the first.
GRID: dict[str, tuple[Any, ...]] = {
    "sim_threshold": (0.8, 0.7),
    "prefix_tokens": (1, 0, 2),
    "max_constant_values": (4, 3, 2),
    "value_vocabulary": (True, False),
    "shared_values": (True, False),
    "diff_runs": (True, False),
}
DEMO = "demo-fleet"  # the labelled demo traffic, scored as one more development system

_FIELD = re.compile(r"(<[^<>]+>)")


def header_regex(fmt: str) -> re.Pattern[str]:
    """A regex for a Loghub-style header format; a space matches any whitespace run.

    >>> header_regex("<Date> <Level>: <Content>").match("2024-01-01 INFO: hi there")["Content"]
    'hi there'
    """
    parts = _FIELD.split(fmt)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.sub(" +", r"\\s+", part))
        else:
            name = part[1:-1]
            out.append("(?P<Content>.*)" if name == "Content" else f"(?P<{name}>.*?)")
    if "<Content>" not in parts:
        raise ValueError(f"header format has no <Content> field: {fmt!r}")
    return re.compile("^" + "".join(out) + "$")


def split_header(rx: re.Pattern[str] | None, line: str) -> tuple[dict[str, str], str]:
    """The header fields and the content of a line; a line off the format is all content."""
    if rx is not None:
        m = rx.match(line.strip())
        if m is not None:
            fields = {k: v for k, v in m.groupdict().items() if v is not None}
            return fields, fields.pop("Content")
    return {}, line


@dataclass(frozen=True, slots=True)
class System:
    """One labelled sample: message contents and ground truth (scorer format)."""

    name: str
    contents: list[str]
    truth: dict[int, tuple[str, str]]  # line id -> (group key, template), from the scorer
    services: list[str] | None = None  # per line, for a fleet: one miner per service


@dataclass(frozen=True, slots=True)
class Fold:
    """One held-out system: the grid point chosen on the others and its score here."""

    held_out: str
    config: str  # the grid point's label (`label`)
    ga: float
    train_ga: float  # mean GA of that point on the other systems


def load_system(loghub: Path, name: str, scorer: Any) -> System:
    """Read one system's raw lines (header stripped) and its corrected ground truth."""
    gt = loghub / name / f"{name}_2k.log_structured_corrected.csv"
    if not gt.exists():
        gt = loghub / name / f"{name}_2k.log_structured.csv"
    fmt = LOGHUB_FORMATS.get(name)
    rx = header_regex(fmt) if fmt else None
    with (loghub / name / f"{name}_2k.log").open("rb") as f:
        lines = [raw.decode("utf-8", errors="replace").rstrip("\r\n") for raw in f]
    return System(name, [split_header(rx, line)[1] for line in lines],
                  scorer.read_gt(str(gt)))


def mine(contents: Iterable[str], miner: TemplateMiner) -> dict[int, tuple[str, str]]:
    """Line id (from 1) -> (final template id, final template) after every line was mined."""
    ids = [miner.add(c).template_id for c in contents]
    texts = miner.templates()
    out = {}
    for line_id, tid in enumerate(ids, start=1):
        live = miner.resolve(tid)
        out[line_id] = (live, texts.get(live, ""))
    return out


def mine_fleet(contents: Iterable[str], services: Iterable[str], config: MinerConfig
               ) -> dict[int, tuple[str, str]]:
    """`mine` for the lines of many services (a registry: one miner each, shared value
    index); ids and templates are prefixed with the service so that services stay apart."""
    reg = TemplateRegistry(RegistryConfig(miner=config, max_services=100_000))
    got = [(svc, reg.add(svc, c).template_id) for c, svc in zip(contents, services, strict=True)]
    out = {}
    for line_id, (svc, tid) in enumerate(got, start=1):
        live = reg.resolve(svc, tid)
        out[line_id] = (f"{svc}/{live}", f"{svc}: {reg.miner(svc).text(live) or ''}")
    return out


def demo_system(events: Iterable[Mapping[str, Any]]) -> System:
    """The labelled log events of the demo (``attrs.label.template``) as a fleet `System`."""
    contents, services, truth = [], [], {}
    for e in events:
        attrs = e.get("attrs")
        label = attrs.get("label") if isinstance(attrs, dict) else None
        template = label.get("template") if isinstance(label, dict) else None
        if isinstance(template, str):
            svc = str(e.get("service", ""))
            contents.append(str(e.get("message", "")))
            services.append(svc)
            truth[len(contents)] = (f"{svc}: {template}", f"{svc}: {template}")
    return System(DEMO, contents, truth, services)


def score(system: System, config: MinerConfig, scorer: Any) -> dict[str, Any]:
    """The scorer's metrics for one system mined with ``config``."""
    if system.services is not None:
        pred = mine_fleet(system.contents, system.services, config)
    else:
        pred = mine(system.contents, TemplateMiner(system.name, config))
    result: dict[str, Any] = scorer.score(system.truth, pred)
    return result


def grid_points(base: MinerConfig | None = None) -> list[tuple[str, MinerConfig]]:
    """Every grid point as (label, config), the shipped configuration first."""
    base = base or MinerConfig()
    out = []
    for values in itertools.product(*GRID.values()):
        update = dict(zip(GRID, values, strict=True))
        label = " ".join(f"{k}={v}" for k, v in update.items())
        out.append((label, base.model_copy(update=update)))
    return out


def leave_one_out(scores: dict[str, dict[str, float]], tiebreak: str | None = None,
                  tolerance: float = 0.0) -> list[Fold]:
    """Per held-out system, the grid point best on the others (``scores``: point -> system
    -> GA, points in preference order) and its GA on the held-out system.

    With ``tiebreak``, that system is never part of the mean: among the points within
    ``tolerance`` of the best mean, the one best on it wins (it gets a fold of its own, chosen
    on all the others).
    """
    systems = sorted({s for per in scores.values() for s in per})
    folds = []
    for held in systems:
        pick = choose(scores, tiebreak, tolerance, held_out=held)
        others = [g for s, g in scores[pick].items() if s not in (held, tiebreak)]
        folds.append(Fold(held, pick, scores[pick][held],
                          sum(others) / len(others) if others else 0.0))
    return folds


def choose(scores: dict[str, dict[str, float]], tiebreak: str | None = None,
           tolerance: float = 0.0, held_out: str | None = None) -> str:
    """The grid point with the best mean GA over the systems but ``held_out`` and
    ``tiebreak``; near ties (``tolerance``) go to the better ``tiebreak`` score, then the
    better worst system, then the earlier point."""
    points = list(scores)

    def train(p: str) -> tuple[float, float]:
        others = [g for s, g in scores[p].items() if s not in (held_out, tiebreak)]
        return (sum(others) / len(others) if others else 0.0, min(others, default=0.0))
    best = max(train(p)[0] for p in points)

    def rank(p: str) -> tuple[bool, float, float, float, int]:
        mean, worst = train(p)
        near = mean >= best - tolerance - 1e-9
        second = scores[p].get(tiebreak, 0.0) if near and tiebreak not in (None, held_out) else 0.0
        return (near, second, round(mean, 9), worst, -points.index(p))
    return max(points, key=rank)
