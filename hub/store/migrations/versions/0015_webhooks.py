"""Webhooks: subscriptions, their signing secrets, and the delivery log.

``webhook_subscription``: who a subscription acts for (the principal: subject, issuer, client,
kind, community, jurisdiction, categories, granted scopes; a client's current record is read
again at each delivery), where it delivers (``url``), what it asked for (``types``,
``filters``: the stream's parameters), and the notifier's state: ``cursor_seq`` (the last
change handled: at-least-once from there), consecutive ``failures``, ``next_attempt_at`` (the
backoff), ``disabled_at``/``disabled_reason``.

``webhook_secret``: the Standard Webhooks signing secret. HMAC signing needs the secret itself,
so it cannot be hashed like a client secret; it lives in a table of its own that the API role
may INSERT into (when it creates the subscription, for the caller's own subscription) but never
SELECT: no request session, whatever query a bug sends, reads a secret back, its owner's
included (it is shown once, in the 201). Only the owner role (the notifier, ``hub notify
run``) reads it.

``webhook_delivery``: every attempt (status code, error, duration), readable by the
subscription's owner.

``hub_change_head()``: the highest change sequence committed, whatever the caller may see of
it. A reader under row-level security (the stream, the notifier for a principal) moves its
cursor there when it has read everything up to it, instead of scanning again, at every read,
every change it may not see since its last visible one. Only a number leaves the function.

Row-level security as everywhere: the API role sees and deletes only the caller's own
subscriptions (``hub.subject``), and their deliveries.

Revision ID: 0015_webhooks
Revises: 0011_event_ref
Create Date: 2026-12-08
"""

from alembic import op

revision = "0015_webhooks"
down_revision = "0014_pending_cancel"
branch_labels = None
depends_on = None

API_ROLE = "hub_api"
OWN = "subject = hub_setting('hub.subject')"
OF_OWN = "EXISTS (SELECT 1 FROM webhook_subscription s WHERE s.id = {table}.subscription_id)"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE webhook_subscription (
            id               uuid PRIMARY KEY,
            subject          text NOT NULL,
            issuer           text NOT NULL,
            client_id        text,
            kind             text NOT NULL,
            community_id     text,
            jurisdiction_wkb bytea,
            categories       text[],
            scopes           text[] NOT NULL,
            url              text NOT NULL,
            types            text[] NOT NULL,
            filters          jsonb NOT NULL DEFAULT '{}',
            created_at       timestamptz NOT NULL DEFAULT now(),
            cursor_seq       bigint NOT NULL,
            failures         integer NOT NULL DEFAULT 0,
            next_attempt_at  timestamptz,
            disabled_at      timestamptz,
            disabled_reason  text,
            CONSTRAINT webhook_subscription_kind_check
                CHECK (kind IN ('community', 'department', 'analyst', 'admin'))
        );
        CREATE INDEX webhook_subscription_subject ON webhook_subscription (subject);
        CREATE TABLE webhook_secret (
            subscription_id uuid PRIMARY KEY
                REFERENCES webhook_subscription (id) ON DELETE CASCADE,
            secret          text NOT NULL
        );
        CREATE TABLE webhook_delivery (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subscription_id uuid NOT NULL
                REFERENCES webhook_subscription (id) ON DELETE CASCADE,
            seq             bigint NOT NULL,
            webhook_id      text NOT NULL,
            attempt         integer NOT NULL,
            at              timestamptz NOT NULL DEFAULT now(),
            outcome         text NOT NULL,
            status_code     integer,
            error           text,
            duration_ms     double precision NOT NULL,
            CONSTRAINT webhook_delivery_outcome_check
                CHECK (outcome IN ('delivered', 'failed', 'refused'))
        );
        CREATE INDEX webhook_delivery_subscription ON webhook_delivery (subscription_id, id);
        ALTER TABLE webhook_subscription ENABLE ROW LEVEL SECURITY;
        ALTER TABLE webhook_secret ENABLE ROW LEVEL SECURITY;
        ALTER TABLE webhook_delivery ENABLE ROW LEVEL SECURITY;
        """
    )
    op.execute(
        f"""
        GRANT SELECT, INSERT, DELETE ON webhook_subscription TO {API_ROLE};
        GRANT INSERT ON webhook_secret TO {API_ROLE};
        GRANT SELECT ON webhook_delivery TO {API_ROLE};
        CREATE FUNCTION hub_change_head() RETURNS bigint LANGUAGE sql STABLE
            SECURITY DEFINER SET search_path = public, pg_temp AS
            $$ SELECT coalesce(max(seq), 0) FROM picture_change $$;
        REVOKE ALL ON FUNCTION hub_change_head() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION hub_change_head() TO {API_ROLE};
        CREATE POLICY webhook_subscription_own ON webhook_subscription FOR ALL TO {API_ROLE}
            USING ({OWN}) WITH CHECK ({OWN});
        CREATE POLICY webhook_secret_own ON webhook_secret FOR INSERT TO {API_ROLE}
            WITH CHECK ({OF_OWN.format(table="webhook_secret")});
        CREATE POLICY webhook_delivery_own ON webhook_delivery FOR SELECT TO {API_ROLE}
            USING ({OF_OWN.format(table="webhook_delivery")});
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE webhook_delivery, webhook_secret, webhook_subscription")
    op.execute("DROP FUNCTION hub_change_head()")
