"""trials.updated_at: when a trial last changed, for ETags and incremental polling

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 02:40:00

Set when a trial starts, records an epoch and ends; `GET /api/v1/jobs/{id}/trials?since=` returns
the trials changed after a cursor, and ETags are derived from it. Existing rows take their end, else
their start.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.tables

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('trials', sa.Column('updated_at', store.tables.UTCDateTime(timezone=True), nullable=True))
    op.execute('UPDATE trials SET updated_at = COALESCE(finished_at, started_at)')
    op.create_index('ix_trials_job_updated', 'trials', ['job_id', 'updated_at'])


def downgrade() -> None:
    op.drop_index('ix_trials_job_updated', table_name='trials')
    op.drop_column('trials', 'updated_at')
