"""``incident_report.component_id``: the linked neighbourhood each report is in; ``lon`` and
``lat``: its representative point, so the candidate search tests place as well as time in one
index range scan, without reading the events.

Incidents are no longer the connected components of the link graph (they chained distinct
emergencies in a storm) but a partition of each component (``hub.fusion.partition``). When a
batch touches a neighbourhood, fusion re-reads all its live members by this column and
partitions it again, so the picture stays a function of the set of reports.

Existing rows: their incident WAS their component under the old model, so it names it.

Revision ID: 0008_neighbourhoods
Revises: 0007_report_keys
Create Date: 2026-12-07
"""

from alembic import op

revision = "0008_neighbourhoods"
down_revision = "0007_report_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE incident_report ADD COLUMN component_id uuid,
            ADD COLUMN lon float8, ADD COLUMN lat float8;
        UPDATE incident_report r SET component_id = incident_id,
            lon = ST_X(ST_PointOnSurface(e.geom)), lat = ST_Y(ST_PointOnSurface(e.geom))
        FROM event e WHERE e.event_id = r.event_id;
        ALTER TABLE incident_report ALTER COLUMN component_id SET NOT NULL,
            ALTER COLUMN lon SET NOT NULL, ALTER COLUMN lat SET NOT NULL;
        CREATE INDEX incident_report_component ON incident_report (component_id)
            WHERE NOT cancelled;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX incident_report_component;
        ALTER TABLE incident_report DROP COLUMN component_id, DROP COLUMN lon, DROP COLUMN lat;
        """
    )
