"""Settings of log categorisation and the YAML files they point at, loaded and checked once.

``LOGWARDEN_CATEGORISE_*`` names the files: ``categories.yaml`` (rules, see
`categorisation.categories`), ``teams.yaml`` (service -> team, see `categorisation.triage`) and an
optional ``masking.yaml`` (service name or glob -> `MaskingConfig`, for the services whose
variables the default masking misses). The defaults are the files in ``deploy/config/``.
A file that does not validate stops the worker at start-up with file, line and field.

>>> import tempfile, pathlib
>>> bad = pathlib.Path(tempfile.mkdtemp()) / "teams.yaml"
>>> _ = bad.write_text("default_team: sre\\nteams:\\n  web: nope\\n")
>>> try:
...     load_categorisation(CategorisationSettings(teams_file=bad))
... except ConfigError as e:
...     print(str(e).rsplit("/", 1)[1])
teams.yaml:3: teams.web: Input should be a valid list
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, RootModel

from categorisation.categories import CategoriesConfig, load_yaml_model
from categorisation.config import MaskingConfig, TeamsConfig
from schemas.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "deploy" / "config"


class MaskingFile(RootModel[dict[str, MaskingConfig]]):
    """The ``masking.yaml`` file: service name or glob pattern -> masking switches."""


class CategorisationSettings(BaseModel):
    """Where the categorisation config lives and how often its state is saved and reported."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True  # LOGWARDEN_CATEGORISE_ENABLED
    categories_file: Path | None = None  # None: deploy/config/categories.yaml if present
    teams_file: Path | None = None  # None: deploy/config/teams.yaml if present
    masking_file: Path | None = None  # None: default masking for every service
    snapshot_interval_s: float = Field(default=10.0, gt=0)  # template state -> state topic
    report_interval_s: float = Field(default=5.0, gt=0)  # templates/events rows -> ClickHouse
    accuracy_period_s: float = Field(default=60.0, gt=0)  # one accuracy row per period
    max_services: int = Field(default=2_000, ge=1)
    max_templates: int = Field(default=10_000, ge=10)  # per service (LRU beyond)


@dataclass(frozen=True)
class CategorisationConfig:
    """The loaded files."""

    categories: CategoriesConfig
    teams: TeamsConfig
    masking: dict[str, MaskingConfig]


def _file(given: Path | None, default_name: str) -> Path | None:
    if given is not None:
        return given  # named explicitly: it must exist
    default = CONFIG_DIR / default_name
    return default if default.is_file() else None


def load_categorisation(s: CategorisationSettings) -> CategorisationConfig:
    """Read and validate the files; raises ConfigError naming file, line and field."""
    cats = _file(s.categories_file, "categories.yaml")
    teams = _file(s.teams_file, "teams.yaml")
    masking = s.masking_file
    if masking is not None and not masking.is_file():
        raise ConfigError(f"{masking}: no such file")
    return CategorisationConfig(
        categories=load_yaml_model(cats, CategoriesConfig) if cats else CategoriesConfig(),
        teams=load_yaml_model(teams, TeamsConfig) if teams else TeamsConfig(),
        masking=load_yaml_model(masking, MaskingFile).root if masking else {},
    )
