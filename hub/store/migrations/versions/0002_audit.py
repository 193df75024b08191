"""Audit log: one hash-chained row per /v1 and /ogc request, and the head of the chain.

``id`` is a plain bigint assigned by the append (``audit_head.last_id + 1`` under the head's row
lock), not an identity column: a sequence skips values when a transaction rolls back, and a gap
in ids is exactly how ``hub audit verify`` names a deleted row.

Revision ID: 0002_audit
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002_audit"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE audit_log (
            id             bigint PRIMARY KEY,
            at             timestamptz NOT NULL,
            subject        text,
            principal_kind text,
            client_id      text,
            issuer         text,
            method         text NOT NULL,
            endpoint       text,
            path           text NOT NULL,
            params         jsonb NOT NULL,
            status         integer NOT NULL,
            rows           integer,
            client_addr    text,
            duration_ms    numeric(12, 3) NOT NULL,
            prev_hash      bytea NOT NULL,
            hash           bytea NOT NULL
        );
        -- a principal's own trail, in order (hub.audit.store.trail)
        CREATE INDEX audit_log_subject_id ON audit_log (subject, id);

        -- One row: the last id and hash. Appends lock it (SELECT ... FOR UPDATE), which makes
        -- concurrent requests form one chain; verify compares it with the last row, which
        -- catches rows deleted from the end.
        CREATE TABLE audit_head (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            last_id   bigint NOT NULL,
            last_hash bytea NOT NULL
        );
        INSERT INTO audit_head (last_id, last_hash) VALUES (0, decode(repeat('00', 32), 'hex'));

        -- Append-only for everyone but a superuser who switches triggers off on purpose; the
        -- hash chain is what catches that case.
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
        END $$;
        CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE audit_log, audit_head;
        DROP FUNCTION audit_log_append_only();
        """
    )
