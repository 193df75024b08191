"""Walking skeleton: communities, events, consumer offsets, counters.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute(
        """
        CREATE TABLE community (
            id          text PRIMARY KEY,
            name        text NOT NULL,
            geom        geometry(MultiPolygon, 4326) NOT NULL,
            repaired    boolean NOT NULL DEFAULT false,
            properties  jsonb NOT NULL DEFAULT '{}',
            imported_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX community_geom_gist ON community USING gist (geom);

        CREATE TABLE event (
            seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id         uuid NOT NULL UNIQUE,
            community_id     text NOT NULL REFERENCES community (id),
            kind             text NOT NULL,
            category         text NOT NULL,
            severity         text NOT NULL,
            urgency          text NOT NULL,
            certainty        text NOT NULL,
            status           text NOT NULL,
            event_type       text NOT NULL,
            observed_at      timestamptz NOT NULL,
            geom             geometry(Geometry, 4326) NOT NULL,
            source_system    text NOT NULL,
            source_connector text NOT NULL,
            reporter         text,
            properties       jsonb NOT NULL DEFAULT '{}',
            refs             uuid[] NOT NULL DEFAULT '{}',
            sent_at          timestamptz,
            ingested_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
            kafka_partition  integer NOT NULL,
            kafka_offset     bigint NOT NULL
        );
        CREATE INDEX event_geom_gist ON event USING gist (geom);
        CREATE INDEX event_community_seq ON event (community_id, seq);
        CREATE INDEX event_observed_at ON event (observed_at);

        CREATE TABLE consumer_offset (
            group_id    text NOT NULL,
            topic       text NOT NULL,
            partition   integer NOT NULL,
            next_offset bigint NOT NULL,
            topic_id    text,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (group_id, topic, partition)
        );

        CREATE TABLE fusion_stats (
            group_id   text PRIMARY KEY,
            consumed   bigint NOT NULL DEFAULT 0,
            stored     bigint NOT NULL DEFAULT 0,
            duplicates bigint NOT NULL DEFAULT 0,
            dlq        bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE community_stats (
            community_id     text PRIMARY KEY REFERENCES community (id) ON DELETE CASCADE,
            events_stored    bigint NOT NULL DEFAULT 0,
            last_event_at    timestamptz,
            last_observed_at timestamptz
        );
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE community_stats, fusion_stats, consumer_offset, event, community CASCADE"
    )
