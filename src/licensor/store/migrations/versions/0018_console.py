"""The web console's users and sessions

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08 01:00:00

``console_users``: who signs in to ``/console`` (e-mail, Argon2id password, a management API
role on one company); ``console_sessions``: their sessions (the cookie's token as a keyed hash,
the session's form token, its end); an index of licenses by customer (the console finds a
customer's licenses).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "company_id",
            Id,
            sa.ForeignKey("companies.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("last_login_at", WHEN, nullable=True),
        sa.UniqueConstraint("email", name="uq_console_users_email"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "user_id",
            Id,
            sa.ForeignKey("console_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(128), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_console_sessions_token_hash"),
    )

    op.create_index("ix_licenses_customer", "licenses", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_licenses_customer", table_name="licenses")
    op.drop_table("console_sessions")
    op.drop_table("console_users")
