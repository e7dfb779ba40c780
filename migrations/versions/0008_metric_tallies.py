"""metric tallies: running totals behind /metrics

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 03:00:00

`metric_tallies` holds the totals of the trial counters and the trial and epoch duration histograms
that `GET /metrics` reports, added to as workers record trials and epochs (see `store.metrics`).
They count from this revision on; trials recorded before it are not in them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'metric_tallies',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('label', sa.String(length=32), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('name', 'label', name=op.f('pk_metric_tallies')),
    )


def downgrade() -> None:
    op.drop_table('metric_tallies')
