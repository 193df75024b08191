"""The rest of the shared picture: the reach of live reports, sensor thresholds, risk per grid
cell, resources.

- ``incident_report`` repeats its event's status, event_type and observed_at, indexed for the
  live, unpinned reports: fusion's candidate search is then one index range scan per event type
  of the batch, however long the history behind it.
- ``sensor_state``: the threshold level each sensor (per event type and picture) is in now, so
  that a crossing raises one warning and a sensor flapping around a threshold does not raise
  more (hysteresis). Fusion's own state: no API access.
- ``risk_cell``: per grid cell and picture, the risk score of its open incidents and its
  four-colour level (blue, yellow, orange, red), which changes with hysteresis. ``geom`` is the
  cell's, copied so the policy needs no join. ``picture_clock``: the picture's time (the latest
  observed_at fusion stored), from which risk decays; a replay of old data decays as it did.
- ``resource_balance``: per community, picture, resource type, unit and direction (available or
  needed), the quantity of the latest statement (a ``resource`` event), where it stands.

Row-level security:
- risk cells like events: a department's jurisdiction; a community its own cells and, of real
  (``actual``) risk, the cells in its neighbour zone (aggregated risk, no reports);
- resource balances are shared for mutual aid: every principal sees every community's real
  stock and needs (a department those of the communities its jurisdiction touches), and a
  community its own drills.

Revision ID: 0006_picture
Revises: 0005_incidents
Create Date: 2026-11-23
"""

from alembic import op

revision = "0006_picture"
down_revision = "0005_incidents"
branch_labels = None
depends_on = None

API_ROLE = "hub_api"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE incident_report
            ADD COLUMN status text, ADD COLUMN event_type text, ADD COLUMN observed_at timestamptz;
        UPDATE incident_report r
            SET status = e.status, event_type = e.event_type, observed_at = e.observed_at
            FROM event e WHERE e.event_id = r.event_id;
        ALTER TABLE incident_report
            ALTER COLUMN status SET NOT NULL, ALTER COLUMN event_type SET NOT NULL,
            ALTER COLUMN observed_at SET NOT NULL;
        CREATE INDEX incident_report_reach ON incident_report (status, event_type, observed_at)
            WHERE NOT cancelled AND NOT pinned;
        -- fusion COPYs brand-new incidents straight into the table: the sequence by default
        ALTER TABLE incident ALTER COLUMN updated_seq SET DEFAULT nextval('incident_update_seq');

        CREATE TABLE sensor_state (
            status      text NOT NULL,
            sensor      text NOT NULL,
            event_type  text NOT NULL,
            community_id text NOT NULL,
            level       text NOT NULL,
            value       double precision,
            observed_at timestamptz NOT NULL,
            event_id    uuid NOT NULL,
            warning_event_id uuid,
            PRIMARY KEY (status, sensor, event_type)
        );

        CREATE TABLE picture_clock (
            status text PRIMARY KEY CHECK (status IN ('actual', 'exercise', 'test')),
            at     timestamptz NOT NULL
        );

        CREATE TABLE risk_cell (
            status       text NOT NULL CHECK (status IN ('actual', 'exercise', 'test')),
            grid_cell    text NOT NULL,
            community_id text,
            score        double precision NOT NULL,
            level        text NOT NULL CHECK (level IN ('blue', 'yellow', 'orange', 'red')),
            level_since  timestamptz NOT NULL,
            incidents    integer NOT NULL,
            as_of        timestamptz NOT NULL,
            geom         geometry(MultiPolygon, 4326) NOT NULL,
            updated_seq  bigint NOT NULL,
            PRIMARY KEY (status, grid_cell)
        );
        CREATE INDEX risk_cell_geom_gist ON risk_cell USING gist (geom);
        CREATE INDEX risk_cell_raised ON risk_cell (status, level) WHERE level <> 'blue';
        -- fusion re-scores the cells of a picture whose score is oldest (decay)
        CREATE INDEX risk_cell_age ON risk_cell (status, as_of);
        CREATE SEQUENCE risk_update_seq;

        CREATE TABLE resource_balance (
            community_id  text NOT NULL REFERENCES community (id),
            status        text NOT NULL CHECK (status IN ('actual', 'exercise', 'test')),
            resource_type text NOT NULL,
            unit          text NOT NULL,
            direction     text NOT NULL CHECK (direction IN ('available', 'needed')),
            quantity      double precision NOT NULL CHECK (quantity >= 0),
            event_id      uuid NOT NULL,
            observed_at   timestamptz NOT NULL,
            geom          geometry(Point, 4326) NOT NULL,
            updated_seq   bigint NOT NULL,
            PRIMARY KEY (community_id, status, resource_type, unit, direction)
        );
        CREATE INDEX resource_balance_type ON resource_balance (status, resource_type, direction);
        CREATE SEQUENCE resource_update_seq;
        -- a balance's statements, latest first: the current one, or the one a cancel falls
        -- back to, is one index range scan (only resource events are indexed)
        CREATE INDEX event_resource_statement ON event (community_id, status,
            (properties->>'resource_type'), (properties->>'unit'), (properties->>'direction'),
            observed_at DESC, event_id DESC) WHERE kind = 'resource';
        """
    )
    # Granted like every hub table, row-level security deciding; sensor_state has no policy, so
    # the API role sees none of its rows (a sensor's level reaches the API in its warnings).
    for table in ("sensor_state", "picture_clock", "risk_cell", "resource_balance"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"GRANT SELECT ON {table} TO {API_ROLE}")
    op.execute(
        f"""
        CREATE FUNCTION hub_sees_place(community_id text, status text, geom geometry)
            RETURNS boolean LANGUAGE sql STABLE AS $$
            SELECT coalesce(CASE (SELECT hub_setting('hub.principal_kind'))
                WHEN 'admin' THEN true
                WHEN 'analyst' THEN true
                WHEN 'department' THEN
                    ST_Intersects(geom, (SELECT hub_setting_geom('hub.jurisdiction')))
                WHEN 'community' THEN
                    (SELECT hub_setting('hub.community_id')) = community_id
                    OR (status = 'actual'
                        AND ST_Intersects(geom, (SELECT hub_setting_geom('hub.neighbour_zone'))))
                ELSE false
            END, false)
        $$;
        CREATE POLICY risk_cell_by_principal ON risk_cell FOR SELECT TO {API_ROLE}
            USING (hub_sees_place(community_id, status, geom));
        CREATE POLICY picture_clock_any_principal ON picture_clock FOR SELECT TO {API_ROLE}
            USING ((SELECT hub_setting('hub.principal_kind')) IS NOT NULL);
        CREATE POLICY resource_balance_shared ON resource_balance FOR SELECT TO {API_ROLE}
            USING (coalesce(CASE (SELECT hub_setting('hub.principal_kind'))
                WHEN 'admin' THEN true
                WHEN 'analyst' THEN status = 'actual'
                WHEN 'department' THEN status = 'actual' AND EXISTS (
                    SELECT 1 FROM community c WHERE c.id = community_id
                    AND ST_Intersects(c.geom, (SELECT hub_setting_geom('hub.jurisdiction'))))
                WHEN 'community' THEN status = 'actual'
                    OR community_id = (SELECT hub_setting('hub.community_id'))
                ELSE false
            END, false));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE resource_balance, risk_cell, picture_clock, sensor_state;
        DROP SEQUENCE resource_update_seq, risk_update_seq;
        DROP INDEX event_resource_statement;
        DROP FUNCTION hub_sees_place(text, text, geometry);
        DROP INDEX incident_report_reach;
        ALTER TABLE incident ALTER COLUMN updated_seq DROP DEFAULT;
        ALTER TABLE incident_report
            DROP COLUMN status, DROP COLUMN event_type, DROP COLUMN observed_at;
        """
    )
