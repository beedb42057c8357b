"""Privacy settings (``LOGWARDEN_PRIVACY_*``) and the YAML rule file they point at."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from alerting.yamlfile import load_yaml_model
from privacy.rules import BUILTINS, SCREEN_BITS

Action = Literal["redact", "hash"]
Target = Literal["message", "user.id", "user.ip", "user.action", "attrs"]


class PrivacySettings(BaseModel):
    """Whether ingest redacts, the rule file, and the key of the keyed hash."""

    model_config = {"frozen": True}

    enabled: bool = True  # LOGWARDEN_PRIVACY_ENABLED
    config_file: Path = Path("deploy/config/privacy.yaml")  # LOGWARDEN_PRIVACY_CONFIG_FILE
    # LOGWARDEN_PRIVACY_HASH_KEY: the key of the keyed hash. Empty: a random key kept in
    # <data dir>/privacy_hash_key (mode 0600); a cluster must give every worker the same one.
    hash_key: SecretStr = SecretStr("")


class RuleConfig(BaseModel):
    """One rule: a built-in ``kind`` or a custom ``pattern``, and what to do with a match."""

    model_config = {"extra": "forbid", "frozen": True}

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    kind: str = "custom"  # one of privacy.rules.BUILTINS, or custom (needs ``pattern``)
    pattern: str | None = None  # custom: a Python regex; group 1 if it has one, else all
    # custom: words (any case) one of which every match contains, so lines without them
    # skip the regex; empty = the regex runs on every line (costly: say so in a review).
    screen_words: tuple[str, ...] = ()
    action: Action = "redact"
    fields: tuple[Target, ...] = ("message", "attrs")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v != "custom" and v not in BUILTINS:
            raise ValueError(f"kind must be custom or one of {', '.join(BUILTINS)}")
        return v

    def problem(self) -> tuple[str, str] | None:
        """(field, reason) when the rule cannot work, else None."""
        if self.kind == "custom":
            if not self.pattern:
                return "pattern", "a custom rule needs a pattern"
            try:
                rx = re.compile(self.pattern)
            except re.error as exc:
                return "pattern", f"not a valid regex: {exc}"
            if rx.groups > 1:
                return "pattern", "at most one capturing group (the part replaced)"
        elif self.pattern:
            return "pattern", "only custom rules take a pattern"
        return None


class UserFieldConfig(BaseModel):
    """What happens to a whole ``user`` field (its value is an identifier as a whole)."""

    model_config = {"extra": "forbid", "frozen": True}

    id: Action | Literal["keep"] = "hash"
    ip: Action | Literal["keep"] = "hash"


class PrivacyConfig(BaseModel):
    """The rule file (deploy/config/privacy.yaml)."""

    model_config = {"extra": "forbid", "frozen": True}

    rules: tuple[RuleConfig, ...] = ()
    user: UserFieldConfig = UserFieldConfig()
    hash_chars: int = Field(default=16, ge=8, le=64)  # hex characters of a hash kept

    @model_validator(mode="after")
    def _unique(self) -> PrivacyConfig:
        seen: set[str] = set()
        for i, r in enumerate(self.rules):
            bad = r.problem()
            if bad is not None:
                raise ValueError(f"at rules.{i}.{bad[0]}: {bad[1]}")
            if r.name in seen:
                raise ValueError(f"at rules.{i}.name: duplicate rule name {r.name!r}")
            seen.add(r.name)
        return self


def load_privacy(path: Path) -> PrivacyConfig:
    """Read and validate the rule file; errors name file, line and field."""
    return load_yaml_model(path, PrivacyConfig)


assert set(SCREEN_BITS) >= {b.screen for b in BUILTINS.values()}


def hash_key(s: PrivacySettings, data_dir: Path) -> bytes:
    """The key of the keyed hash: the setting, else one kept in ``<data dir>`` (made once,
    random, mode 0600), so hashes stay the same across restarts of one machine."""
    given = s.hash_key.get_secret_value()
    if given:
        return given.encode()
    path = data_dir / "privacy_hash_key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    import secrets

    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(secrets.token_hex(32).encode())
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)  # a second worker starting at once keeps the first one's key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()
