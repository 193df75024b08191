"""Authorization: OAuth2 clients, token signing keys, used client-assertion ids.

Revision ID: 0002_auth
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op

revision = "0002_auth"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE oauth_client (
            client_id    text PRIMARY KEY,
            kind         text NOT NULL
                         CHECK (kind IN ('community', 'department', 'analyst', 'admin')),
            name         text NOT NULL,
            secret_hash  text,
            public_jwk   jsonb,
            community_id text REFERENCES community (id),
            jurisdiction geometry(MultiPolygon, 4326),
            categories   text[],
            scopes       text[] NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            revoked_at   timestamptz,
            CHECK (secret_hash IS NOT NULL OR public_jwk IS NOT NULL),
            CHECK ((kind = 'community') = (community_id IS NOT NULL)),
            CHECK ((kind = 'department') = (jurisdiction IS NOT NULL)),
            CHECK (categories IS NULL OR kind = 'department')
        );
        COMMENT ON COLUMN oauth_client.secret_hash IS
            'scrypt$N$r$p$salt$hash of the client secret; the secret itself is never stored';
        COMMENT ON COLUMN oauth_client.public_jwk IS
            'public key of a private_key_jwt client (RFC 7523 client assertions)';

        CREATE TABLE signing_key (
            kid         text PRIMARY KEY,
            alg         text NOT NULL CHECK (alg IN ('ES256', 'EdDSA')),
            private_jwk text NOT NULL,
            public_jwk  jsonb NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            retired_at  timestamptz
        );
        -- At most one key signs; retired keys keep verifying for one token lifetime.
        CREATE UNIQUE INDEX signing_key_one_active ON signing_key ((true))
            WHERE retired_at IS NULL;
        COMMENT ON COLUMN signing_key.private_jwk IS
            'private JWK, AES-256-GCM sealed when HUB_SIGNING_KEY_SECRET is set. Production: '
            'keep signing keys in a KMS/HSM and store only a key reference here.';

        -- RFC 7523 3: a client assertion is single use; its jti is kept until it expires.
        CREATE TABLE used_jti (
            client_id  text NOT NULL,
            jti        text NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (client_id, jti)
        );
        CREATE INDEX used_jti_expires_at ON used_jti (expires_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE used_jti, signing_key, oauth_client")
