"""The logwarden SDK: publish logs, metrics and changes to the ingest topics from a service.

    from sdk import Publisher
    from sdk.logging import KafkaLogHandler
    from sdk.metrics import Metrics
    from sdk.structlog import KafkaProcessor

Depends on confluent-kafka and orjson only (structlog is optional).
"""

from sdk.publisher import Publisher, PublisherStats

__all__ = ["Publisher", "PublisherStats"]
