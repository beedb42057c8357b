"""The alert manager over plain dict tables, for unit tests: a recording deliverer and sinks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alerting.agents.manage_alerts import AlertManager, ManagerTables
from alerting.config import AlertingSettings
from alerting.notifiers.base import Channel, Deliverer, Delivery, Message
from alerting.reload import ConfigHolder


class Recorder(Deliverer):
    """Delivers nothing; remembers (channel, message) of every send."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[str, Message]] = []

    async def deliver(self, msg: Message, chain: Sequence[Channel]) -> Delivery:
        self.messages.append((chain[0].name, msg))
        return Delivery(chain[0].name, [])

    def sent(self, field: str = "status") -> list[tuple[str, Any]]:
        """(channel, the message's ``field``) of every send, oldest first."""
        return [(channel, getattr(msg, field)) for channel, msg in self.messages]


class Rows:
    """A writer stand-in that keeps the rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add_many(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows += rows


def build_manager(tmp_path: Path, config: str, settings: AlertingSettings | None = None,
                  deliverer: Deliverer | None = None
                  ) -> tuple[AlertManager, ManagerTables, dict[str, Rows]]:
    """A manager reading ``config`` (alerting YAML), its tables and its row sinks."""
    f = tmp_path / "alerting.yaml"
    f.write_text(config)
    s = (settings or AlertingSettings()).model_copy(update={"config_file": f})
    holder = ConfigHolder(s)
    assert holder.check(force=True)
    tables = ManagerTables(alerts={}, groups={}, escalations={}, silences={}, meta={})
    sinks = {"alerts": Rows(), "notifications": Rows(), "silences": Rows()}
    return AlertManager(holder, s, tables, sinks, deliverer or Recorder()), tables, sinks
