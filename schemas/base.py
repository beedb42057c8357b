"""The base of every contract model: unknown fields are kept in ``attrs``, orjson out."""

from __future__ import annotations

from typing import Any, ClassVar, Self, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from schemas.common import MAX_MESSAGE_BYTES
from schemas.errors import InvalidEvent

M = TypeVar("M", bound=BaseModel)


class ContractModel(BaseModel):
    """A message of the ingest contract. Unknown top-level fields move into ``attrs``."""

    model_config = ConfigDict(extra="ignore", str_max_length=MAX_MESSAGE_BYTES, frozen=False)
    keeps_unknown: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _unknown_into_attrs(cls, data: Any) -> Any:
        if not cls.keeps_unknown or not isinstance(data, dict):
            return data
        unknown = [k for k in data if k not in cls.model_fields]
        if not unknown:
            return data
        data = dict(data)
        attrs = data.get("attrs")
        attrs = dict(attrs) if isinstance(attrs, dict) else {}
        for k in unknown:
            attrs.setdefault(k, data.pop(k))
        data["attrs"] = attrs
        return data

    def to_json(self) -> bytes:
        """Serialise with orjson (UTC timestamps as RFC 3339)."""
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_json(cls, raw: bytes, *, stage: str = "ingest") -> Self:
        """Parse and validate one message, or raise ``InvalidEvent`` saying why."""
        return decode(cls, raw, stage=stage)


def decode(model: type[M], raw: bytes | str, *, stage: str = "ingest") -> M:
    """Decode one JSON message into ``model``, raising ``InvalidEvent`` with a clear reason."""
    size = len(raw)
    if size > MAX_MESSAGE_BYTES:
        raise InvalidEvent(f"message is {size} bytes, over the {MAX_MESSAGE_BYTES} byte limit",
                           stage=stage)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid UTF-8 JSON: {exc}", stage=stage) from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}", stage=stage)
    return validate(model, data, stage=stage)


def validate(model: type[M], data: dict[str, Any], *, stage: str = "ingest") -> M:
    """Validate a decoded object, raising ``InvalidEvent`` naming the fields at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(describe(exc), stage=stage) from None


def describe(exc: ValidationError) -> str:
    """One line per field error: ``field.path: message``."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
