"""``pending_cancel``: cancels that arrived before the report they cancel.

The picture is a function of the set of reports, not of their arrival order. A cancel whose
report is not stored yet (sent out of order, or the report still on its way) used to find
nothing to cancel, and the report, arriving later, stayed live. Fusion now records such a
cancel's target here, in the batch's transaction, and applies it when the report arrives (the
table is checked for emptiness first: batches pay nothing while nothing is pending).

Under row-level security like every hub table: the API role may read it and sees no row.

Revision ID: 0014_pending_cancel
Revises: 0013_cap
Create Date: 2026-12-07
"""

from alembic import op

revision = "0014_pending_cancel"
down_revision = "0013_cap"
branch_labels = None
depends_on = None

API_ROLE = "hub_api"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE pending_cancel (
            ref       uuid PRIMARY KEY,
            cancel_id uuid NOT NULL REFERENCES event (event_id) ON DELETE CASCADE
        );
        ALTER TABLE pending_cancel ENABLE ROW LEVEL SECURITY;
        GRANT SELECT ON pending_cancel TO {API_ROLE};
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE pending_cancel")
