"""verdict: a job's stored report, and which trials are candidates

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 21:00:00

`jobs.report` holds the dropout verdict, computed once when the job ends (`store.report`).
`trials.candidate` is false for a no-dropout network the user's space leaves out: the baseline is
trained as a reference then, and is never the job's best trial.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('report', sa.JSON(), nullable=True))
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('candidate', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_column('candidate')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('report')
