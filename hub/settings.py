"""The one settings object of the hub (environment variables with the prefix ``HUB_``)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from schemas.event import CATEGORIES

API_ROLE = "hub_api"  # the database role the API connects as (see migration 0002_rls)

# The kinds of principal and the scopes of a token: configuration (IssuerRole below checks a
# deployment's mappings against them), so they live in this leaf; hub.access.principal is where
# the rest of the hub takes them from.
Kind = Literal["community", "department", "analyst", "admin"]
KINDS: tuple[str, ...] = get_args(Kind)

Scope = Literal[
    "events:write",
    "incidents:read",
    "incidents:verify",
    "risk:read",
    "resources:read",
    "resources:write",
    "subscriptions:write",
    "admin",
]
SCOPES: tuple[str, ...] = get_args(Scope)

# resources:read for every kind: mutual aid is shared. A community must see its neighbours'
# surplus to ask for it, a department the stock and needs of the communities it serves, an
# analyst the whole region's; what each sees of them is the row policy's business.
DEFAULT_SCOPES: dict[str, frozenset[str]] = {
    "community": frozenset(SCOPES) - {"admin"},
    "department": frozenset(
        {"incidents:read", "risk:read", "incidents:verify", "resources:read", "subscriptions:write"}
    ),
    "analyst": frozenset({"incidents:read", "risk:read", "resources:read"}),
    "admin": frozenset(SCOPES),
}


class IssuerRole(BaseModel):
    """What a person holding one group/role of a trusted issuer may do at the hub."""

    kind: Kind
    community_id: str | None = None
    jurisdiction: Path | None = Field(None, description="GeoJSON file of a department's area")
    categories: list[str] | None = None
    scopes: list[str] | None = Field(None, description="default: the kind's default scopes")

    @model_validator(mode="after")
    def _consistent(self) -> IssuerRole:
        # The same rules as `hub client create`, so a misconfigured mapping fails at start-up.
        if (self.kind == "community") != (self.community_id is not None):
            raise ValueError("community_id is required for, and only for, kind community")
        if (self.kind == "department") != (self.jurisdiction is not None):
            raise ValueError("jurisdiction is required for, and only for, kind department")
        if self.categories is not None and self.kind != "department":
            raise ValueError("categories only narrow a department")
        if self.categories is not None and not set(self.categories) <= set(CATEGORIES):
            raise ValueError(f"categories are CAP words: {', '.join(CATEGORIES)}")
        if self.scopes is not None and not set(self.scopes) <= DEFAULT_SCOPES[self.kind]:
            raise ValueError(f"scopes beyond what kind {self.kind} may hold")
        return self


class TrustedIssuer(BaseModel):
    """An OpenID Connect provider whose people's access tokens the hub accepts."""

    issuer: str = Field(description="exact `iss` of its tokens")
    jwks_url: str = Field(description="its JWKS (https, or http on loopback only)")
    audience: str = Field("hub", description="the `aud` its tokens must carry for the hub")
    claim: str = Field("groups", description="claim holding groups/roles; dotted for nesting")
    mapping: dict[str, IssuerRole] = Field(
        description="claim value -> role; the first value in this order that the person holds wins"
    )
    token_types: list[str] = Field(["at+jwt"], description="accepted `typ` headers")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    # Storage
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/hub"
    api_database_url: str | None = Field(
        None,
        description="how the API connects: a role without BYPASSRLS that does not own the "
        "tables (see `hub db upgrade`); default: database_url with the user hub_api",
    )

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "hub.events.v1"
    dlq_topic: str = "hub.events.dlq"
    topic_partitions: int = Field(6, ge=1)
    tile_zoom: int = Field(
        12, ge=0, le=20, description="web-mercator zoom of the partition key tile"
    )
    grid_h3_resolution: int = Field(
        9, ge=0, le=15, description="H3 resolution of the generated grid (communities without one)"
    )
    community_snap_m: float = Field(
        100.0,
        ge=0,
        le=10_000,
        description="a point outside every community but this close (metres) to one is assigned "
        "to the nearest, with properties.snapped_m (a pier, a shoreline, GPS error); 0: off",
    )

    # Fusion worker
    fusion_incidents: bool = Field(
        True,
        description="build the shared picture in fusion's transaction: incidents, warnings, "
        "risk per grid cell, resources (off: events only, the walking skeleton)",
    )
    correlation_rules: Path | None = Field(
        None, description="rules of incident correlation (TOML); default config/correlation.toml"
    )
    thresholds: Path | None = Field(
        None, description="sensor thresholds of warnings (TOML); default config/thresholds.toml"
    )
    risk_rules: Path | None = Field(
        None, description="risk per grid cell: weights, decay, levels; default config/risk.toml"
    )
    consumer_group: str = "hub-fusion"
    fusion_max_poll_records: int = Field(10_000, ge=1)
    fusion_poll_timeout_ms: int = Field(250, ge=1)
    fusion_session_timeout_ms: int = Field(10_000, ge=1000)
    fusion_max_poll_interval_ms: int = Field(30_000, ge=1000)
    fusion_metrics_port: int = Field(9108, ge=0, le=65535, description="0 disables the endpoint")
    fusion_neighbourhood_cache_rows: int = Field(
        400_000,
        ge=0,
        description="reports of recently partitioned neighbourhoods fusion keeps in memory "
        "between batches instead of reading them back (0: none; ~300 bytes each)",
    )

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    public_url: str | None = Field(None, description="base URL for links; default from the request")
    community_quiet_period_s: int = Field(3600, ge=1, description="no events for this long: silent")
    neighbour_distance_m: float = Field(
        2000.0,
        ge=0,
        le=50_000,
        description="a community sees neighbours' events this close, and is flagged of "
        "warnings this close to it",
    )
    metrics_scrapers: list[str] = Field(
        ["127.0.0.1/32", "::1/128"],
        description="IPs/CIDRs allowed to read /metrics (the Prometheus scrape address)",
    )
    api_max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="larger request bodies answer 413"
    )
    api_max_json_depth: int = Field(32, ge=4, le=512, description="deeper JSON bodies answer 400")
    api_max_batch: int = Field(1000, ge=1, description="events per POST /v1/events")
    api_decision_wait_s: float = Field(
        5.0,
        ge=0.0,
        le=30.0,
        description="how long a verification or split waits for fusion to apply it (200) "
        "before answering 202",
    )
    rate_limit_per_s: float = Field(
        50.0, gt=0, description="sustained requests per second per client on /v1 (429 beyond)"
    )
    rate_limit_burst: int = Field(100, ge=1, description="requests a client may send at once")
    stream_max_clients: int = Field(
        500, ge=1, description="open /v1/stream connections per API process (503 beyond)"
    )
    stream_ping_s: float = Field(
        15.0, gt=0, le=300, description="heartbeat comment interval on /v1/stream"
    )
    stream_poll_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="/v1/stream reads the change log this often when no "
        "NOTIFY arrives (the fallback)",
    )
    stream_send_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a stream client that takes longer to accept one message is dropped",
    )
    api_auth_disabled: bool = Field(
        False,
        description="BENCHMARKS ONLY: no token checks and no policy (admin for everyone); "
        "refused unless the API binds a loopback address",
    )

    # Authorization (OAuth2 client credentials, JWT access tokens)
    token_ttl_s: int = Field(900, ge=60, le=86_400, description="access token lifetime")
    token_audience: str = Field("hub", description="`aud` of the hub's access tokens")
    token_leeway_s: int = Field(30, ge=0, le=300, description="clock skew allowed on exp/nbf/iat")
    auth_client_cache_s: float = Field(
        1.0, ge=0, le=5, description="how long a client's revocation status may be cached"
    )
    trusted_issuers: list[TrustedIssuer] = Field(
        default_factory=list, description="OpenID Connect issuers of people's tokens (JSON)"
    )
    jwks_timeout_s: float = Field(3.0, gt=0, le=30, description="fetching a trusted issuer's JWKS")
    signing_key_secret: SecretStr | None = Field(
        None, description="encrypts the token signing keys at rest (AES-256-GCM); unset: plain"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="proxy IPs/CIDRs whose X-Forwarded-For is believed (audit client address)",
    )

    # CAP alerts out, the Atom feed, languages
    cap_sender: str = Field(
        "community-risk-hub",
        pattern=r"^[^\s,<&]+$",
        description="CAP <sender>, also the prefix of every alert's identifier "
        "({sender}:{incident id}:{revision}); no spaces, commas, '<' or '&'",
    )
    cap_signing_key: Path | None = Field(
        None, description="PEM private key (RSA or EC) that signs CAP alerts (XML signature)"
    )
    cap_signing_cert: Path | None = Field(
        None, description="PEM certificate of cap_signing_key, sent in each signature"
    )
    names_extra: Path | None = Field(
        None,
        description="TOML file of more display names (event types, categories, communities) "
        "over config/names.toml",
    )
    # Webhooks (the notifier, `hub notify run`)
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="webhook hosts (names, IPs or CIDRs) allowed although they are or resolve "
        "to private, loopback or link-local addresses (JSON list)",
    )
    webhook_max_failures: int = Field(
        10, ge=1, description="consecutive failed attempts that disable a subscription"
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=120, description="a receiver's answer to one delivery, at most"
    )
    webhook_backoff_s: float = Field(
        2.0, gt=0, le=3600, description="wait before the first retry; doubled per failure"
    )
    webhook_backoff_max_s: float = Field(
        600.0, gt=0, le=86_400, description="the longest wait between two retries"
    )
    webhook_poll_s: float = Field(
        5.0, gt=0, le=300, description="the notifier reads the change log this often without NOTIFY"
    )
    webhook_concurrency: int = Field(
        32, ge=1, le=1000, description="subscriptions delivered to at once"
    )
    notify_metrics_port: int = Field(9110, ge=0, le=65535, description="0 disables the endpoint")

    # Local stack
    state_dir: Path = Path(".hub")
    broker_port: int = Field(9092, ge=1, le=65535)

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Settings:
        if self.api_auth_disabled and not _is_loopback(self.api_host):
            raise ValueError(
                f"api_auth_disabled is for benchmarks on loopback only; api_host is {self.api_host}"
            )
        return self

    @model_validator(mode="after")
    def _cap_key_and_cert(self) -> Settings:
        if (self.cap_signing_key is None) != (self.cap_signing_cert is None):
            raise ValueError("cap_signing_key and cap_signing_cert are set together, or neither")
        return self

    @property
    def api_db_url(self) -> str:
        """The API's database URL: ``api_database_url``, or ``database_url`` as user hub_api."""
        if self.api_database_url is not None:
            return self.api_database_url
        owner = make_url(self.database_url)
        url = URL.create(
            owner.drivername, API_ROLE, None, owner.host, owner.port, owner.database, owner.query
        )
        return url.render_as_string(hide_password=False)

    @property
    def token_issuer(self) -> str:
        """`iss` of the hub's tokens: from the configuration, never from a request's Host."""
        return (self.public_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")

    @property
    def sync_database_url(self) -> str:
        """The URL for psycopg itself (no SQLAlchemy driver suffix)."""
        return _libpq(self.database_url)

    @property
    def sync_api_db_url(self) -> str:
        return _libpq(self.api_db_url)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()
