"""Grid cells: communities' own coded unit grids and generated H3 cells; every event's cell.

An imported cell is ``<community_id>/<code>`` and belongs to its community. A generated H3
cell is ``h3/<index>`` and belongs to none: it may straddle a boundary. ``event.grid_cell`` is
not a foreign key: re-importing a grid deletes the cells it no longer has, and the events
keep the cell they were reported in. Old events have no cell (NULL).

Every principal may read the cells (they are the map everyone shares); like every hub table,
without a principal the API role sees none.

Revision ID: 0004_grids
Revises: 0003_api_access
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004_grids"
down_revision = "0003_api_access"
branch_labels = None
depends_on = None

API_ROLE = "hub_api"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE grid_cell (
            id           text PRIMARY KEY,
            community_id text REFERENCES community (id) ON DELETE CASCADE,
            code         text NOT NULL,
            source       text NOT NULL CHECK (source IN ('imported', 'h3')),
            name         text,
            geom         geometry(MultiPolygon, 4326) NOT NULL,
            repaired     boolean NOT NULL DEFAULT false,
            imported_at  timestamptz NOT NULL DEFAULT now(),
            -- the id is derived, never free: a cell cannot claim another community's name
            CONSTRAINT grid_cell_id_derived CHECK (id = CASE source
                WHEN 'imported' THEN community_id || '/' || code
                ELSE 'h3/' || code END),
            CONSTRAINT grid_cell_owner CHECK ((source = 'imported') = (community_id IS NOT NULL))
        );
        CREATE INDEX grid_cell_geom_gist ON grid_cell USING gist (geom);
        CREATE INDEX grid_cell_community ON grid_cell (community_id) WHERE community_id IS NOT NULL;

        ALTER TABLE event ADD COLUMN grid_cell text;
        CREATE INDEX event_grid_cell ON event (grid_cell);
        """
    )
    op.execute("ALTER TABLE grid_cell ENABLE ROW LEVEL SECURITY")
    op.execute(f"GRANT SELECT ON grid_cell TO {API_ROLE}")
    # A scalar subquery, as in 0003's event policy: evaluated once per query, not per row.
    op.execute(
        f"CREATE POLICY grid_cell_by_principal ON grid_cell FOR SELECT TO {API_ROLE}"
        " USING ((SELECT hub_setting('hub.principal_kind')) IS NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX event_grid_cell")
    op.execute("ALTER TABLE event DROP COLUMN grid_cell")
    op.execute("DROP TABLE grid_cell")  # with its policy, grants and indexes
