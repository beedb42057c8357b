"""Ingest contract, internal messages and table rows (pydantic v2, orjson)."""

from schemas.native import check_fresh

check_fresh()
