"""workers: live workers' heartbeats

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00

Every worker beats a row here, idle or busy, so `/healthz` and the dashboard can say how many are
alive and warn when jobs are queued and none is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.tables

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'workers',
        sa.Column('id', sa.String(length=200), nullable=False),
        sa.Column('started_at', store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column('heartbeat_at', store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_workers')),
    )
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workers_heartbeat_at'), ['heartbeat_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workers_heartbeat_at'))
    op.drop_table('workers')
