"""The alerting configuration in force: reloaded when its files change, a bad file refused.

``ConfigHolder.check`` is called on a timer (and on SIGHUP with ``force``); it re-reads the
config file plus any extra rules files when one of their modification times moved. A file
that fails to parse or validate is logged and the last good configuration stays.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from alerting.config import AlertingConfig, AlertingSettings, load_alerting
from alerting.rules import RuleSet, load_rules
from schemas.errors import ConfigError

log = structlog.get_logger(__name__)


def load_full(settings: AlertingSettings) -> AlertingConfig:
    """The config file with the rules of ``rule_files`` appended (validated together)."""
    cfg = load_alerting(settings.config_file)
    extra = [r for p in settings.rule_files for r in load_rules(p).rules]
    if not extra:
        return cfg
    rules = RuleSet.model_validate({"rules": [r.model_dump(by_alias=True)
                                              for r in [*cfg.rules, *extra]]})
    return cfg.model_copy(update={"rules": rules.rules})


class ConfigHolder:
    """The last good configuration and the file times it was read at."""

    def __init__(self, settings: AlertingSettings) -> None:
        self.settings = settings
        self.config: AlertingConfig | None = None
        self.last_error: str | None = None
        self.version = 0  # bumps at every successful load
        self._mtimes: tuple[float, ...] = ()
        # Told of every reload after the first load: (what, outcome, detail); the worker
        # points it at the audit trail.
        self.on_change: Callable[[str, str, str], None] | None = None

    def _stat(self) -> tuple[float, ...]:
        out = []
        for p in (self.settings.config_file, *self.settings.rule_files):
            try:
                out.append(Path(p).stat().st_mtime)
            except OSError:
                out.append(-1.0)
        return tuple(out)

    def check(self, force: bool = False) -> bool:
        """Reload if a file changed (or ``force``); True when a new config is in force."""
        mtimes = self._stat()
        if not force and mtimes == self._mtimes:
            return False
        self._mtimes = mtimes
        try:
            cfg = load_full(self.settings)
        except (ConfigError, ValueError) as e:
            self.last_error = str(e)
            log.error("alerting_config_refused", stage="alerting", error=self.last_error,
                      kept="last good" if self.config else "none")
            if self.on_change is not None:
                self.on_change(str(self.settings.config_file), "refused", self.last_error)
            return False
        self.config, self.last_error = cfg, None
        self.version += 1
        if self.on_change is not None:
            self.on_change(str(self.settings.config_file), "loaded",
                           f"version {self.version}: {len(cfg.rules)} rules, "
                           f"{len(cfg.receivers)} receivers")
        log.info("alerting_config_loaded", stage="alerting", rules=len(cfg.rules),
                 receivers=len(cfg.receivers), version=self.version)
        return True
