"""The one settings object of the hub (environment variables with the prefix ``HUB_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    # Storage
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/hub"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "hub.events.v1"
    dlq_topic: str = "hub.events.dlq"
    topic_partitions: int = Field(6, ge=1)
    tile_zoom: int = Field(
        12, ge=0, le=20, description="web-mercator zoom of the partition key tile"
    )

    # Fusion worker
    consumer_group: str = "hub-fusion"
    fusion_max_poll_records: int = Field(10_000, ge=1)
    fusion_poll_timeout_ms: int = Field(250, ge=1)
    fusion_session_timeout_ms: int = Field(10_000, ge=1000)
    fusion_max_poll_interval_ms: int = Field(30_000, ge=1000)
    fusion_metrics_port: int = Field(9108, ge=0, le=65535, description="0 disables the endpoint")

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    public_url: str | None = Field(None, description="base URL for links; default from the request")
    community_quiet_period_s: int = Field(3600, ge=1, description="no events for this long: silent")

    # Connectors
    reporter_key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of reporter pseudonyms; raw reporters never leave"
    )

    # Local stack
    state_dir: Path = Path(".hub")
    broker_port: int = Field(9092, ge=1, le=65535)

    @property
    def sync_database_url(self) -> str:
        """The URL for psycopg itself (no SQLAlchemy driver suffix)."""
        return self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
