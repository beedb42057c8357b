"""One template miner per service, bounded, with a warning when a service's templates explode.

Memory is bounded twice: at most ``max_services`` miners (the least recently used is evicted
and counted) and at most ``miner.max_clusters`` templates in each (the miner's own LRU).
Each service gets the masking of the first ``masking`` entry naming it (exact name first,
then glob patterns in order), else the default masking.

A normal service settles on a few hundred templates and then rarely makes a new one. When
unmasked variables (a request id, a random token) reach the miner, every line makes a new
template. After ``warmup_lines`` lines of a service, every ``window_lines`` lines it is
checked: more than ``max_new_per_window`` new templates in the window, or more than
``max_templates_per_line`` templates per line seen so far, raises one `TemplateExplosion`
event (collected by `pop_events`); the flag re-arms once a window is quiet again.

>>> import random, string
>>> rnd = random.Random(7)
>>> def token() -> str:
...     return "".join(rnd.choices(string.ascii_letters, k=10))
>>> reg = TemplateRegistry(RegistryConfig(warmup_lines=100, window_lines=100))
>>> for i in range(300):
...     _ = reg.add("web", f"GET /items/{i} 200 in {i % 50}ms")
...     _ = reg.add("bad", f"{token()} {token()} session {token()} opened")  # unmasked
>>> [(e.service, e.message) for e in reg.pop_events()]
[('bad', 'template explosion — likely a masking bug')]
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from categorisation.config import MinerConfig, RegistryConfig
from categorisation.miner import Match, TemplateMiner

_SNAPSHOT_VERSION = 1
EXPLOSION_MESSAGE = "template explosion — likely a masking bug"


@dataclass(frozen=True, slots=True)
class TemplateExplosion:
    """A service's template count grows explosively: probably a variable is not masked."""

    service: str
    lines: int  # lines of the service seen
    templates: int  # live templates of the service
    created: int  # templates created so far (live + evicted)
    new_in_window: int
    window_lines: int
    samples: tuple[str, ...]  # a few of the latest new templates
    message: str = EXPLOSION_MESSAGE


@dataclass(slots=True)
class _Service:
    miner: TemplateMiner
    lines: int = 0
    created: int = 0
    merged: int = 0  # templates merged into another (their ids are aliases)
    window_lines: int = 0
    window_new: int = 0
    exploding: bool = False
    samples: list[str] = field(default_factory=list)


class TemplateRegistry:
    """Template miners of many services behind one `add(service, content)`."""

    def __init__(self, config: RegistryConfig | None = None) -> None:
        self.config = config or RegistryConfig()
        self._services: OrderedDict[str, _Service] = OrderedDict()  # LRU order, oldest first
        self._events: list[TemplateExplosion] = []
        self._merges: list[tuple[str, str, str]] = []
        self._exact = {k: v for k, v in self.config.masking.items() if "*" not in k
                       and "?" not in k and "[" not in k}
        self._globs = [(k, v) for k, v in self.config.masking.items() if k not in self._exact]
        self.evicted_services = 0

    def __len__(self) -> int:
        return len(self._services)

    def __contains__(self, service: object) -> bool:
        return service in self._services

    def miner_config(self, service: str) -> MinerConfig:
        """The miner configuration (with its masking) ``service`` gets."""
        mask = self._exact.get(service) or next(
            (m for p, m in self._globs if fnmatch.fnmatchcase(service, p)), None)
        base = self.config.miner
        return base if mask is None else base.model_copy(update={"masking": mask})

    def miner(self, service: str) -> TemplateMiner:
        """The miner of ``service``, created (and the LRU service evicted) if needed."""
        return self._state(service).miner

    def _state(self, service: str) -> _Service:
        st = self._services.get(service)
        if st is not None:
            self._services.move_to_end(service)
            return st
        st = _Service(TemplateMiner(service, self.miner_config(service)))
        if self._services:  # one index of slot values for the fleet (shared_values)
            st.miner.share_values_with(next(iter(self._services.values())).miner)
        self._services[service] = st
        while len(self._services) > self.config.max_services:
            self._services.popitem(last=False)
            self.evicted_services += 1
        return st

    def add(self, service: str, content: str) -> Match:
        """Mine one message of ``service``; explosion warnings queue up for `pop_events`."""
        st = self._services.get(service)
        if st is None:
            st = self._state(service)
        else:
            self._services.move_to_end(service)
        m = st.miner.add(content)
        st.lines += 1
        st.window_lines += 1
        if m.change == "new":
            st.created += 1
            st.window_new += 1
            if len(st.samples) >= 3:
                del st.samples[0]
            st.samples.append(m.template)
        if m.change != "same":  # a merge here can flip a slot in another service too
            self._collect(st)
            for miner in st.miner.pop_touched():
                other = self._services.get(miner.service)
                if other is not None and other.miner is miner:
                    self._collect(other)
        if st.window_lines >= self.config.window_lines:
            self._check(service, st)
        return m

    def _collect(self, st: _Service) -> None:
        merges = st.miner.pop_merges()
        if merges:
            st.merged += len(merges)
            self._merges.extend((st.miner.service, old, new) for old, new in merges)

    def pop_merges(self) -> list[tuple[str, str, str]]:
        """(service, absorbed id, surviving id) of the templates merged since the last call:
        a slot of the survivor turned out to be a variable (`TemplateMiner.resolve`)."""
        merges, self._merges = self._merges, []
        return merges

    def find(self, template_id: str) -> tuple[str, str] | None:
        """(service, live id) of an id merged into another, searching every service (for
        feedback that names no service; rare, so a scan is fine)."""
        for name, st in self._services.items():
            live = st.miner.resolve(template_id)
            if live != template_id:
                return name, live
        return None

    def resolve(self, service: str, template_id: str) -> str:
        """The live id ``template_id`` of ``service`` stands for (itself if not merged)."""
        st = self._services.get(service)
        return template_id if st is None else st.miner.resolve(template_id)

    def _check(self, service: str, st: _Service) -> None:
        """Close one window of a service: raise or re-arm its explosion flag."""
        cfg = self.config
        if st.lines > cfg.warmup_lines:
            hot = (st.window_new > cfg.max_new_per_window
                   or st.created - st.merged > cfg.max_templates_per_line * st.lines)
            if hot and not st.exploding:
                self._events.append(TemplateExplosion(
                    service, st.lines, len(st.miner), st.created, st.window_new,
                    st.window_lines, tuple(st.samples)))
            st.exploding = hot or (st.exploding and st.window_new > cfg.max_new_per_window / 2)
        st.window_lines = st.window_new = 0

    def pop_events(self) -> list[TemplateExplosion]:
        """The explosion warnings raised since the last call."""
        events, self._events = self._events, []
        return events

    def evicted_templates(self, service: str) -> int:
        """How many templates of ``service`` the miner's LRU has dropped."""
        st = self._services.get(service)
        return 0 if st is None else max(0, st.created - st.merged - len(st.miner))

    def stats(self) -> dict[str, int]:
        """Counters for metrics: services, templates, evictions."""
        return {
            "services": len(self._services),
            "templates": sum(len(s.miner) for s in self._services.values()),
            "evicted_services": self.evicted_services,
            "evicted_templates": sum(self.evicted_templates(n) for n in self._services),
            "exploding_services": sum(s.exploding for s in self._services.values()),
        }

    def snapshot_service(self, service: str) -> bytes | None:
        """One service's miner and counters as JSON (for a table keyed by service)."""
        st = self._services.get(service)
        if st is None:
            return None
        return orjson.dumps(self._doc(st))

    def restore_service(self, service: str, data: bytes) -> None:
        """Replace one service's state with a `snapshot_service`."""
        self._load(service, orjson.loads(data))

    @staticmethod
    def _doc(st: _Service) -> dict[str, object]:
        return {"v": _SNAPSHOT_VERSION, "lines": st.lines, "created": st.created,
                "merged": st.merged,
                "exploding": st.exploding, "miner": orjson.Fragment(st.miner.snapshot())}

    def _load(self, service: str, doc: dict[str, object]) -> None:
        if doc.get("v") != _SNAPSHOT_VERSION:
            raise ValueError(f"unknown registry snapshot version {doc.get('v')!r}")
        st = self._state(service)
        st.miner.restore(orjson.dumps(doc["miner"]))
        st.lines = int(doc["lines"])  # type: ignore[call-overload]
        st.created = max(int(doc["created"]), len(st.miner))  # type: ignore[call-overload]
        st.merged = int(doc.get("merged", 0))  # type: ignore[call-overload]
        st.exploding = bool(doc["exploding"])
        st.window_lines = st.window_new = 0
        st.samples.clear()

    def snapshot(self) -> bytes:
        """Every service's state as one JSON document; `restore` reads it back."""
        return orjson.dumps({"v": _SNAPSHOT_VERSION,
                             "services": {n: self._doc(s) for n, s in self._services.items()}})

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a `snapshot` (LRU order kept)."""
        doc = orjson.loads(data)
        if doc.get("v") != _SNAPSHOT_VERSION:
            raise ValueError(f"unknown registry snapshot version {doc.get('v')!r}")
        self._services.clear()
        self._events.clear()
        for name, sdoc in doc["services"].items():
            self._load(str(name), sdoc)
