"""idempotency_keys: a create's answer kept per owner and Idempotency-Key for a day

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:00:00

`POST /api/v1/jobs` and `POST /api/v1/datasets` take an `Idempotency-Key` header; the first call's
answer is stored under the owner and key in the transaction that creates the job or dataset, and a
repeat within a day gets it again instead of creating a second one (`store.idempotency`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.tables

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'idempotency_keys',
        sa.Column('owner', sa.String(length=100), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('operation', sa.String(length=32), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=False),
        sa.Column('response', sa.Text(), nullable=False),
        sa.Column('created_at', store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('owner', 'key', name=op.f('pk_idempotency_keys')),
    )


def downgrade() -> None:
    op.drop_table('idempotency_keys')
