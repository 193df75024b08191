"""What the API role may touch in the authorization and audit tables; a faster event policy;
joins the 0002 branches.

The API connects as ``hub_api`` for three purposes, each on a pool of its own that names its
purpose at connection start (``-c hub.purpose=...``, see ``hub.store.db.api_engine``):

- requests (no purpose): the hub's data, through the principal set per transaction;
- ``authenticate``: clients, signing keys and used client-assertion ids (token endpoint, JWKS,
  token verification);
- ``audit``: appending to the audit log (the middleware's own pool).

Without the purpose these tables show no rows, so a request's session, whatever query a bug
sends, cannot read client secrets' hashes or the signing keys; and it can read the audit log
only as far as the principal may (its own trail; an admin all). The purposes are a second wall
against mistakes, not against code that runs inside the API: that code can name any purpose.

Revision ID: 0003_api_access
Revises: 0002_auth, 0002_audit, 0002_rls
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003_api_access"
down_revision = ("0002_auth", "0002_audit", "0002_rls")
branch_labels = None
depends_on = None

API_ROLE = "hub_api"
AUTHENTICATE = "hub_setting('hub.purpose') = 'authenticate'"
AUDIT = "hub_setting('hub.purpose') = 'audit'"

GRANTS = {
    "oauth_client": "SELECT",
    "signing_key": "SELECT, INSERT",
    "used_jti": "SELECT, INSERT, DELETE",
    "audit_log": "SELECT, INSERT",
    "audit_head": "SELECT, UPDATE",
}

POLICIES = {
    "oauth_client": [("authenticate", "ALL", AUTHENTICATE)],
    "signing_key": [("authenticate", "ALL", AUTHENTICATE)],
    "used_jti": [("authenticate", "ALL", AUTHENTICATE)],
    "audit_head": [("append", "ALL", AUDIT)],
    "audit_log": [
        ("append", "INSERT", AUDIT),
        # INSERT ... RETURNING reads the new row back: the appender must see what it wrote.
        ("appender_reads", "SELECT", AUDIT),
        (
            "trail",
            "SELECT",
            "hub_setting('hub.principal_kind') = 'admin'"
            " OR (subject IS NOT NULL AND subject = hub_setting('hub.subject'))",
        ),
    ],
}


def _policy_sql(table: str, name: str, command: str, predicate: str) -> str:
    clauses = {
        "INSERT": f"WITH CHECK ({predicate})",
        "SELECT": f"USING ({predicate})",
        "ALL": f"USING ({predicate}) WITH CHECK ({predicate})",
    }
    return f"CREATE POLICY {table}_{name} ON {table} FOR {command} TO {API_ROLE} {clauses[command]}"


# The event policy of 0002_rls, rewritten so that every setting is an uncorrelated scalar
# subquery: PostgreSQL evaluates those once per query (InitPlans) instead of once per row. The
# per-row version decoded the neighbour zone's WKB for every row it tested (~8 us a row, 2.5 ms
# of a 100-row page that the policy in the query itself had already narrowed).
EVENT_POLICY = f"""
CREATE POLICY event_by_principal ON event FOR SELECT TO {API_ROLE} USING (coalesce(
    CASE (SELECT hub_setting('hub.principal_kind'))
        WHEN 'admin' THEN true
        WHEN 'analyst' THEN true
        WHEN 'department' THEN
            ST_Intersects(geom, (SELECT hub_setting_geom('hub.jurisdiction')))
            AND ((SELECT hub_setting('hub.categories')) IS NULL
                 OR category = ANY (CAST(
                     (SELECT string_to_array(hub_setting('hub.categories'), ',')) AS text[])))
        WHEN 'community' THEN
            community_id = (SELECT hub_setting('hub.community_id'))
            OR ST_Intersects(geom, (SELECT hub_setting_geom('hub.neighbour_zone')))
        ELSE false
    END, false))
"""


def upgrade() -> None:
    op.execute("DROP POLICY event_by_principal ON event")
    op.execute(EVENT_POLICY)
    for table, privileges in GRANTS.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"GRANT {privileges} ON {table} TO {API_ROLE}")
        for name, command, predicate in POLICIES[table]:
            op.execute(_policy_sql(table, name, command, predicate))


def downgrade() -> None:
    for table, privileges in GRANTS.items():
        for name, _, _ in POLICIES[table]:
            op.execute(f"DROP POLICY {table}_{name} ON {table}")
        op.execute(f"REVOKE {privileges} ON {table} FROM {API_ROLE}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP POLICY event_by_principal ON event")
    op.execute(
        f"CREATE POLICY event_by_principal ON event FOR SELECT TO {API_ROLE}"
        " USING (coalesce(hub_sees_event(community_id, category, geom), false))"
    )
