"""Row-level security: the second wall behind the policy compiled into the API's queries.

The API connects as ``hub_api`` (no BYPASSRLS, not the owner) and sets the principal per
transaction with ``set_config('hub.*', ..., true)`` (``hub.access.session.set_principal``);
without a principal every policy is false, so a query returns no rows of the hub's tables. Fusion
connects as the owner and is not subject to these policies.

Revision ID: 0002_rls
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002_rls"
down_revision = "0001"
branch_labels = None
depends_on = None

API_ROLE = "hub_api"
TABLES = ("community", "community_stats", "event", "consumer_offset", "fusion_stats")


def upgrade() -> None:
    # Roles are cluster-wide: several hub databases (tests, demo) share one.
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
                CREATE ROLE {API_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
            END IF;
        END $$;
        """
    )
    op.execute(
        """
        CREATE FUNCTION hub_setting(name text) RETURNS text LANGUAGE sql STABLE AS
            $$ SELECT nullif(current_setting(name, true), '') $$;
        CREATE FUNCTION hub_setting_geom(name text) RETURNS geometry LANGUAGE sql STABLE AS
            $$ SELECT ST_GeomFromWKB(decode(hub_setting(name), 'hex'), 4326) $$;
        CREATE FUNCTION hub_sees_event(community_id text, category text, geom geometry)
            RETURNS boolean LANGUAGE sql STABLE AS $$
            SELECT CASE hub_setting('hub.principal_kind')
                WHEN 'admin' THEN true
                WHEN 'analyst' THEN true
                WHEN 'department' THEN
                    ST_Intersects(geom, hub_setting_geom('hub.jurisdiction'))
                    AND (hub_setting('hub.categories') IS NULL
                         OR category = ANY (string_to_array(hub_setting('hub.categories'), ',')))
                WHEN 'community' THEN
                    community_id = hub_setting('hub.community_id')
                    OR coalesce(ST_Intersects(geom, hub_setting_geom('hub.neighbour_zone')), false)
                ELSE false
            END
        $$;
        """
    )
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"GRANT SELECT ON {table} TO {API_ROLE}")
    op.execute(
        f"""
        CREATE POLICY event_by_principal ON event FOR SELECT TO {API_ROLE}
            USING (coalesce(hub_sees_event(community_id, category, geom), false));
        CREATE POLICY community_by_principal ON community FOR SELECT TO {API_ROLE}
            USING (hub_setting('hub.principal_kind') IS NOT NULL);
        CREATE POLICY community_stats_by_principal ON community_stats FOR SELECT TO {API_ROLE}
            USING (hub_setting('hub.principal_kind') IS NOT NULL);
        CREATE POLICY consumer_offset_admin ON consumer_offset FOR SELECT TO {API_ROLE}
            USING (hub_setting('hub.principal_kind') = 'admin');
        CREATE POLICY fusion_stats_admin ON fusion_stats FOR SELECT TO {API_ROLE}
            USING (hub_setting('hub.principal_kind') = 'admin');
        """
    )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP POLICY IF EXISTS {table}_by_principal ON {table}")
        op.execute(f"DROP POLICY IF EXISTS {table}_admin ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {API_ROLE}")
    op.execute("DROP POLICY IF EXISTS event_by_principal ON event")
    op.execute(
        "DROP FUNCTION hub_sees_event(text, text, geometry), hub_setting_geom(text),"
        " hub_setting(text)"
    )
