"""What a connector needs to know, and nothing of the hub's: connectors run at the communities,
far from the hub's database and API; they need only the broker.

Read from the same environment variables (prefix ``HUB_``, or a ``.env`` file) as the hub's
settings, so one deployment's variables serve both.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConnectorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "hub.events.v1"
    tile_zoom: int = Field(
        12,
        ge=0,
        le=20,
        description="web-mercator zoom of the partition key tile; the hub's HUB_TILE_ZOOM, so "
        "connectors and the API key a place alike",
    )
    reporter_key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of reporter pseudonyms; raw reporters never leave"
    )
    community_snap_m: float = Field(
        100.0,
        ge=0,
        le=10_000,
        description="the hub's HUB_COMMUNITY_SNAP_M, for --communities: a point this close "
        "(metres) to a polygon and in none goes to the nearest, with properties.snapped_m",
    )
    state_dir: Path = Field(Path(".hub"), description="outboxes live in STATE_DIR/outbox")
