"""What the stages after the incident stage need of an incident's members, kept on its row:
``alerts`` (its live members of kind alert: a warning when there is one) and ``grid_cells``
(created in 0005, never filled until now), ``cell_communities``, ``cell_reports``: per grid
cell and community of its live members, how many there are (the risk stage's facts).

The incident stage rebuilds each changed incident's row from its members in hand, so these
cost it nothing; the warning-flag and risk stages then read incident rows, not every member's
event (13,000 random reads per batch in a storm: half a second).

Existing rows: filled from their live members.

Revision ID: 0009_incident_cells
Revises: 0008_neighbourhoods
Create Date: 2026-12-07
"""

from alembic import op

revision = "0009_incident_cells"
down_revision = "0008_neighbourhoods"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE incident ADD COLUMN alerts integer NOT NULL DEFAULT 0,
            ADD COLUMN cell_communities text[] NOT NULL DEFAULT '{}',
            ADD COLUMN cell_reports integer[] NOT NULL DEFAULT '{}';
        UPDATE incident i SET alerts = a.n
        FROM (SELECT r.incident_id, count(*) AS n
              FROM incident_report r JOIN event e ON e.event_id = r.event_id
              WHERE NOT r.cancelled AND e.kind = 'alert' GROUP BY r.incident_id) a
        WHERE a.incident_id = i.id;
        UPDATE incident i SET grid_cells = c.cells, cell_communities = c.communities,
            cell_reports = c.reports
        FROM (SELECT incident_id, array_agg(grid_cell ORDER BY grid_cell, community_id) AS cells,
                  array_agg(community_id ORDER BY grid_cell, community_id) AS communities,
                  array_agg(n ORDER BY grid_cell, community_id) AS reports
              FROM (SELECT r.incident_id, e.grid_cell, e.community_id, count(*)::int AS n
                    FROM incident_report r JOIN event e ON e.event_id = r.event_id
                    WHERE NOT r.cancelled AND e.grid_cell IS NOT NULL
                    GROUP BY 1, 2, 3) g
              GROUP BY incident_id) c
        WHERE c.incident_id = i.id;
        """
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE incident DROP COLUMN alerts, DROP COLUMN cell_communities,"
        " DROP COLUMN cell_reports"
    )
