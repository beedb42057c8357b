"""Settings of the OTLP/HTTP receiver (``LOGWARDEN_OTLP_*``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class OtlpSettings(BaseModel):
    """Where the receiver listens, who may send, and the bounds that keep its memory flat."""

    model_config = {"frozen": True}

    enabled: bool = False  # LOGWARDEN_OTLP_ENABLED: the worker serves the receiver too
    host: str = "127.0.0.1"  # LOGWARDEN_OTLP_HOST (0.0.0.0 in a container)
    port: int = Field(default=4318, ge=0, le=65535)  # the standard OTLP/HTTP port
    # Senders present ``Authorization: Bearer <token>``. Empty: refused at start unless
    # ``allow_anonymous`` (loopback development only).
    token: SecretStr = SecretStr("")  # LOGWARDEN_OTLP_TOKEN (a Kubernetes Secret)
    allow_anonymous: bool = False  # LOGWARDEN_OTLP_ALLOW_ANONYMOUS
    # One request: its body as sent (413 past it) and once gunzipped (413 past it too).
    max_body_bytes: int = Field(default=4 << 20, ge=1024)
    max_decompressed_bytes: int = Field(default=32 << 20, ge=1024)
    # Requests decoded or waiting for Kafka at once; one more gets 429 + Retry-After.
    # Memory stays under about max_inflight x max_decompressed_bytes + the producer queue.
    max_inflight: int = Field(default=16, ge=1, le=1024)
    # The producer's local queue (librdkafka queue.buffering.max.kbytes); past
    # ``high_water`` of it, requests get 429 until Kafka has drained it.
    queue_kbytes: int = Field(default=65_536, ge=64)
    high_water: float = Field(default=0.8, gt=0, le=1)
    # How long a request waits for Kafka to acknowledge its records; then 503 (the sender
    # retries; the records that did land are deduplicated by their event ids).
    ack_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: int = Field(default=2, ge=1, le=300)  # the Retry-After we suggest

    def check(self) -> None:
        """Refuse an open receiver unless asked for one (ValueError with what to set)."""
        if not self.token.get_secret_value() and not self.allow_anonymous:
            raise ValueError("the OTLP receiver needs a token: set LOGWARDEN_OTLP_TOKEN (or "
                             "LOGWARDEN_OTLP_ALLOW_ANONYMOUS=true on a trusted network)")
