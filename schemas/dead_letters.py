"""``logwarden.dead-letters.v1``: input that failed, with its original bytes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel

TOPIC_RAW_LIMIT = 256 * 1024  # base64 of this fits the broker's default 1 MB message limit


class DeadLetter(BaseModel):
    """One rejected message: where it came from, why, and its bytes (base64 on the topic)."""

    received_at: datetime
    topic: str
    partition: int
    offset: int
    stage: str
    error: str
    raw: bytes  # cut to TOPIC_RAW_LIMIT on the topic; ``raw_size`` is the original size
    raw_size: int = 0
    key: str = ""

    def to_json(self) -> bytes:
        """orjson bytes; ``raw`` is base64 so binary garbage survives the trip."""
        d = self.model_dump(mode="python")
        d["raw"] = base64.b64encode(self.raw[:TOPIC_RAW_LIMIT]).decode("ascii")
        d["raw_size"] = self.raw_size or len(self.raw)
        d["received_at"] = self.received_at.isoformat()
        return orjson.dumps(d)

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        """Inverse of ``to_json``."""
        d = orjson.loads(data)
        d["raw"] = base64.b64decode(d["raw"])
        return cls.model_validate(d)


def dead_letter_message(row: tuple[Any, ...]) -> bytes:
    """The dead-letter topic message for a ``dead_letters`` row (raw bytes in base64)."""
    received_ms, topic, partition, offset, stage, error, raw, size, key = row
    return DeadLetter(received_at=datetime.fromtimestamp(received_ms / 1000, tz=UTC),
                      topic=topic, partition=partition, offset=offset, stage=stage,
                      error=error, raw=raw, raw_size=size, key=key).to_json()
