"""``cap_alert``: the CAP 1.2 alerts the hub has issued, one series per incident.

A CAP message is immutable: once ``{sender}:{incident}:{revision}`` was sent with a time, a
reader must get the same identifier and ``sent`` again, and a later message must reference it.
So the API records each revision when it first serves it (``digest``: what the message said;
a changed incident gets the next revision, an unchanged one the same). No foreign key: an
incident merged away keeps its series on record.

Row-level security: the API role reads the revisions of the incidents it may see (issued under
their own id or an id they absorbed) and adds revisions to them; it never changes or deletes one.

Revision ID: 0013_cap
Revises: 0011_event_ref
Create Date: 2026-12-08
"""

from alembic import op

revision = "0013_cap"
down_revision = "0012_changes"
branch_labels = None
depends_on = None

API_ROLE = "hub_api"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE cap_alert (
            incident_id uuid NOT NULL,
            revision    integer NOT NULL CHECK (revision >= 1),
            msg_type    text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
            sent        timestamptz NOT NULL,
            digest      text NOT NULL,
            PRIMARY KEY (incident_id, revision)
        );
        ALTER TABLE cap_alert ENABLE ROW LEVEL SECURITY;
        """
    )
    op.execute(
        f"""
        GRANT SELECT, INSERT ON cap_alert TO {API_ROLE};
        CREATE POLICY cap_alert_read ON cap_alert FOR SELECT TO {API_ROLE}
            USING (EXISTS (SELECT 1 FROM incident i WHERE i.id = cap_alert.incident_id)
                OR EXISTS (SELECT 1 FROM incident_alias a JOIN incident i ON i.id = a.incident_id
                           WHERE a.alias = cap_alert.incident_id));
        CREATE POLICY cap_alert_issue ON cap_alert FOR INSERT TO {API_ROLE}
            WITH CHECK (EXISTS (SELECT 1 FROM incident i WHERE i.id = cap_alert.incident_id));
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE cap_alert")
