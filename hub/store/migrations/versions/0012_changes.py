"""``picture_change``: the change log fusion writes in each batch's transaction, for the stream.

One row per change of the picture, numbered by ``seq`` (an identity: with one fusion worker
writing under the global sequence lock, sequence order is commit order; see
``hub.fusion.changes``). What the stream filters on travels with the row (type, change,
object id, picture, the communities it touches, its bounding box, event type, verification,
level), so a client's filters are one indexed scan; the object itself is re-read through the
caller's reach before it is sent.

``picture_change_mark``: how far fusion has looked, per source (the update sequences of the
incidents, risk cells and resource balances, and the incident timeline's ids): a batch records
the changes of the rows drawn past its mark. Set here to where the stored picture stands, so
that upgrading a hub does not replay its whole picture as changes.

Row-level security as everywhere: the API role sees a change only where it sees its object.

Revision ID: 0012_changes
Revises: 0011_event_ref
Create Date: 2026-12-08
"""

from alembic import op

revision = "0012_changes"
down_revision = "0011_event_ref"
branch_labels = None
depends_on = None

API_ROLE = "hub_api"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE picture_change (
            seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at           timestamptz NOT NULL DEFAULT now(),
            type         text NOT NULL,
            change       text NOT NULL,
            object_id    text NOT NULL,
            status       text NOT NULL,
            communities  text[] NOT NULL DEFAULT '{}',
            bbox         geometry(GEOMETRY, 4326),
            event_type   text,
            verification text,
            level        text,
            CONSTRAINT picture_change_type_check
                CHECK (type IN ('incident', 'warning', 'risk', 'resource')),
            CONSTRAINT picture_change_status_check
                CHECK (status IN ('actual', 'exercise', 'test'))
        );
        CREATE INDEX picture_change_object ON picture_change (type, object_id, seq);
        CREATE TABLE picture_change_mark (
            source text PRIMARY KEY,
            seq    bigint NOT NULL
        );
        INSERT INTO picture_change_mark (source, seq) VALUES
            ('incident', (SELECT coalesce(max(updated_seq), 0) FROM incident)),
            ('risk', (SELECT coalesce(max(updated_seq), 0) FROM risk_cell)),
            ('resource', (SELECT coalesce(max(updated_seq), 0) FROM resource_balance)),
            ('timeline', (SELECT coalesce(max(id), 0) FROM incident_timeline));
        ALTER TABLE picture_change ENABLE ROW LEVEL SECURITY;
        ALTER TABLE picture_change_mark ENABLE ROW LEVEL SECURITY;
        """
    )
    op.execute(
        f"""
        GRANT SELECT ON picture_change TO {API_ROLE};
        -- like every hub table: readable by the API role, no row without a policy that opens it
        GRANT SELECT ON picture_change_mark TO {API_ROLE};
        GRANT SELECT ON SEQUENCE picture_change_seq_seq TO {API_ROLE};
        CREATE POLICY picture_change_by_object ON picture_change FOR SELECT TO {API_ROLE}
            USING (CASE type
                WHEN 'risk' THEN EXISTS (SELECT 1 FROM risk_cell r
                    WHERE r.status = picture_change.status
                    AND r.grid_cell = picture_change.object_id)
                WHEN 'resource' THEN EXISTS (SELECT 1 FROM resource_balance b
                    WHERE b.status = picture_change.status
                    AND b.community_id = picture_change.communities[1]
                    AND concat_ws('/', b.community_id, b.resource_type, b.unit, b.direction)
                        = picture_change.object_id)
                ELSE EXISTS (SELECT 1 FROM incident i
                    WHERE i.id::text = picture_change.object_id)
            END);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE picture_change_mark; DROP TABLE picture_change")
