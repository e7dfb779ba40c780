"""jobs.reference: a trivial predictor's scores on the job's split

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 09:30:00

`jobs.reference` holds what predicting the training split's class frequencies (classification) or
mean (regression) scores on each metric (`store.reference`), written by the worker when the search
starts; the API flags a job whose best score is no better. Jobs older than this revision have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reference', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('reference')
