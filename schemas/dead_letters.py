"""``logwarden.dead-letters.v1``: input that failed, with its original bytes."""

from __future__ import annotations

import base64
from datetime import datetime

import orjson
from pydantic import BaseModel


class DeadLetter(BaseModel):
    """One rejected message: where it came from, why, and its bytes (base64 on the topic)."""

    received_at: datetime
    topic: str
    partition: int
    offset: int
    stage: str
    error: str
    raw: bytes
    key: str = ""

    def to_json(self) -> bytes:
        """orjson bytes; ``raw`` is base64 so binary garbage survives the trip."""
        d = self.model_dump(mode="python")
        d["raw"] = base64.b64encode(self.raw).decode("ascii")
        d["received_at"] = self.received_at.isoformat()
        return orjson.dumps(d)

    @classmethod
    def from_json(cls, data: bytes) -> DeadLetter:
        """Inverse of ``to_json``."""
        d = orjson.loads(data)
        d["raw"] = base64.b64decode(d["raw"])
        return cls.model_validate(d)
