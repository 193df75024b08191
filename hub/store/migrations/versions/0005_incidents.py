"""Incidents: reports of the same real-world incident fused into one, with provenance.

Fusion is the only writer (in the same transaction as the events and offsets), so a crash or a
replay gives the same incidents. Operators' decisions (verify, refute, split) reach fusion as
events of kind ``verification`` on the same topic, and are applied in order with the reports.

- ``incident``: the fused picture, one row per incident and picture (``status``: actual,
  exercise, test). ``id`` is the smallest seed of its members (``hub.fusion.correlate``: a
  UUIDv8 of the observed time and the event id): the same members give the same id whatever
  the order of arrival, and an incident is named after its earliest report. When two incidents
  merge, the id that disappears is kept in ``incident_alias``.
- ``incident_report``: which event is in which incident; ``pinned`` = split out by an operator
  (never merged automatically again); ``cancelled`` = withdrawn by a ``cancel`` event.
- ``incident_timeline``: what happened to an incident, in order (report joined, updated,
  cancelled, merged, split, verified...).

Row-level security: incidents are visible to a principal like the events are (geometry within
a department's jurisdiction or a community's neighbour zone, its own communities); reports,
aliases and timelines through their incident.

Revision ID: 0005_incidents
Revises: 0004_grids
Create Date: 2026-11-23
"""

from alembic import op

revision = "0005_incidents"
down_revision = "0004_grids"
branch_labels = None
depends_on = None

API_ROLE = "hub_api"
TABLES = ("incident", "incident_report", "incident_alias", "incident_timeline")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE incident (
            id                uuid PRIMARY KEY,
            status            text NOT NULL CHECK (status IN ('actual', 'exercise', 'test')),
            state             text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
            warning           boolean NOT NULL DEFAULT false,
            category          text NOT NULL,
            event_type        text NOT NULL,
            severity          text NOT NULL,
            certainty         text NOT NULL,
            verification      text NOT NULL CHECK (verification IN
                                  ('reported', 'corroborated', 'verified', 'refuted')),
            decided_by        text,
            decided_at        timestamptz,
            decision_reason   text,
            sources           integer NOT NULL,
            reports           integer NOT NULL,
            communities       text[] NOT NULL,
            neighbours        text[] NOT NULL DEFAULT '{}',
            grid_cells        text[] NOT NULL DEFAULT '{}',
            first_observed_at timestamptz NOT NULL,
            last_observed_at  timestamptz NOT NULL,
            geom              geometry(Geometry, 4326) NOT NULL,
            updated_seq       bigint NOT NULL
        );
        CREATE INDEX incident_geom_gist ON incident USING gist (geom);
        CREATE INDEX incident_updated_seq ON incident (updated_seq);
        CREATE INDEX incident_last_observed ON incident (status, last_observed_at);
        CREATE SEQUENCE incident_update_seq;

        CREATE TABLE incident_report (
            event_id    uuid PRIMARY KEY REFERENCES event (event_id),
            incident_id uuid NOT NULL REFERENCES incident (id) DEFERRABLE INITIALLY DEFERRED,
            pinned      boolean NOT NULL DEFAULT false,
            cancelled   boolean NOT NULL DEFAULT false
        );
        CREATE INDEX incident_report_incident ON incident_report (incident_id);

        CREATE TABLE incident_alias (
            alias       uuid PRIMARY KEY,
            incident_id uuid NOT NULL
        );

        CREATE TABLE incident_timeline (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            incident_id uuid NOT NULL,
            at          timestamptz NOT NULL,
            what        text NOT NULL,
            event_id    uuid,
            detail      jsonb NOT NULL DEFAULT '{}'
        );
        CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, id);

        -- updates and cancels name the events they concern: found by GIN, not by a scan
        CREATE INDEX event_refs_gin ON event USING gin (refs) WHERE refs <> '{}';
        """
    )
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"GRANT SELECT ON {table} TO {API_ROLE}")
    # As the event policy of 0003: settings read once per query (scalar subqueries).
    op.execute(
        f"""
        CREATE FUNCTION hub_sees_incident(
            communities text[], category text, status text, geom geometry)
            RETURNS boolean LANGUAGE sql STABLE AS $$
            SELECT coalesce(CASE (SELECT hub_setting('hub.principal_kind'))
                WHEN 'admin' THEN true
                WHEN 'analyst' THEN true
                WHEN 'department' THEN
                    ST_Intersects(geom, (SELECT hub_setting_geom('hub.jurisdiction')))
                    AND ((SELECT hub_setting('hub.categories')) IS NULL
                         OR category = ANY (CAST((SELECT string_to_array(
                             hub_setting('hub.categories'), ',')) AS text[])))
                WHEN 'community' THEN
                    (SELECT hub_setting('hub.community_id')) = ANY (communities)
                    -- neighbours share real incidents, not their drills
                    OR (status = 'actual'
                        AND ST_Intersects(geom, (SELECT hub_setting_geom('hub.neighbour_zone'))))
                ELSE false
            END, false)
        $$;
        CREATE POLICY incident_by_principal ON incident FOR SELECT TO {API_ROLE}
            USING (hub_sees_incident(communities, category, status, geom));
        CREATE POLICY incident_report_by_incident ON incident_report FOR SELECT TO {API_ROLE}
            USING (EXISTS (SELECT 1 FROM incident i WHERE i.id = incident_id));
        CREATE POLICY incident_alias_by_incident ON incident_alias FOR SELECT TO {API_ROLE}
            USING (EXISTS (SELECT 1 FROM incident i WHERE i.id = incident_id));
        CREATE POLICY incident_timeline_by_incident ON incident_timeline FOR SELECT
            TO {API_ROLE} USING (EXISTS (SELECT 1 FROM incident i WHERE i.id = incident_id));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX event_refs_gin;
        DROP TABLE incident_timeline, incident_alias, incident_report, incident;
        DROP SEQUENCE incident_update_seq;
        DROP FUNCTION hub_sees_incident(text[], text, text, geometry);
        """
    )
