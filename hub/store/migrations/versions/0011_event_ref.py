"""``event_ref``: which event refs which, one row per reference, keyed by the event referred to.

Fusion asks every batch which stored reports ref one of its new events (an update sent before
what it updates). The GIN index on ``event.refs`` answered it, but with thousands of ids in
one array the planner, misled by the statistics of a table that grows fast, read the whole
event table (65 ms a batch and growing), and probing the index once per id cost ~17 us each.
A btree on the referred id answers it for any batch size. Fusion fills it in the insert's own
statement, for every event with refs (the skeleton too: a picture turned on later finds them).

Existing events: filled from ``event.refs``. As every table of the hub, it is under row-level
security: the API role sees a row only where it sees the event that refs.

Revision ID: 0011_event_ref
Revises: 0010_covering_reach
Create Date: 2026-12-07
"""

from alembic import op

revision = "0011_event_ref"
down_revision = "0010_covering_reach"
branch_labels = None
depends_on = None

API_ROLE = "hub_api"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE event_ref (
            ref      uuid NOT NULL,
            event_id uuid NOT NULL REFERENCES event (event_id) ON DELETE CASCADE,
            PRIMARY KEY (ref, event_id)
        );
        INSERT INTO event_ref (ref, event_id)
        SELECT DISTINCT unnest(refs), event_id FROM event WHERE refs <> '{}';
        ALTER TABLE event_ref ENABLE ROW LEVEL SECURITY;
        """
    )
    op.execute(
        f"""
        GRANT SELECT ON event_ref TO {API_ROLE};
        CREATE POLICY event_ref_by_event ON event_ref FOR SELECT TO {API_ROLE}
            USING (EXISTS (SELECT 1 FROM event e WHERE e.event_id = event_ref.event_id));
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE event_ref")
