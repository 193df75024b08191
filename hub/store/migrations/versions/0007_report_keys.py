"""``incident_report`` without foreign keys: fusion is its only writer, and checking them cost
more than the rest of the row.

Fusion writes a batch's reports by COPY in the transaction that inserted their events and
builds the incidents they join, so both references hold by construction: events are never
deleted, and an incident is deleted only after its members moved to the incident it merged
into (``hub.fusion.incidents``). The per-row checks (an index probe of ``event`` per row, and
of ``incident`` per row at commit) took ~40 % of the COPY and ~90 ms of every commit of a batch
of 10,000 reports, measured with ``hub bench fusion``. The tests and the benchmark check the
references after every pipeline run instead (no member without its event or incident).

Revision ID: 0007_report_keys
Revises: 0006_picture
Create Date: 2026-12-03
"""

from alembic import op

revision = "0007_report_keys"
down_revision = "0006_picture"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE incident_report
            DROP CONSTRAINT incident_report_event_id_fkey,
            DROP CONSTRAINT incident_report_incident_id_fkey;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE incident_report
            ADD CONSTRAINT incident_report_event_id_fkey
                FOREIGN KEY (event_id) REFERENCES event (event_id),
            ADD CONSTRAINT incident_report_incident_id_fkey
                FOREIGN KEY (incident_id) REFERENCES incident (id) DEFERRABLE INITIALLY DEFERRED;
        """
    )
