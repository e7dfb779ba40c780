"""jobs.phase_progress and trials.pack_share_s: honest progress after the search, and a packed trial's share

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 13:00:00

`jobs.phase_progress` holds what the worker reports of the phases after the search (`store.progress`):
the confirmation runs, the smaller network and MC dropout, each with its work done of planned and its
time. `trials.pack_share_s` holds a packed trial's share of its pack's time, now that `duration_s` is
the wall time it trained (older rows: null, and `duration_s` may be the share).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phase_progress', sa.JSON(), nullable=True))
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pack_share_s', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_column('pack_share_s')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('phase_progress')
