"""An index for the replay check of offline request files

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 17:00:00

An offline request file is refused as a replay when its ``request_id`` was taken for its device
on any of the company's licenses. With only the unique (license_id, request_id) index, that
question probed the index once per license of the company (1,000 probes per activation on the
benchmark's database, a million on a large one); ``ix_offline_requests_lookup`` answers it from
the few rows of that request id and device.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_offline_requests_lookup", "offline_requests", ["request_id", "hardware_id"])


def downgrade() -> None:
    op.drop_index("ix_offline_requests_lookup", table_name="offline_requests")
