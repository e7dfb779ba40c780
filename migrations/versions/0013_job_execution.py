"""jobs.execution: how the job's trials train, and why not packed

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 10:00:00

`jobs.execution` holds the trainer the worker chose when the search started (`store.execution`):
packs of the template, vectorised packs of any network, or one `fit` per trial, with the reason
where a job that allowed packs trains one trial at a time. Older jobs have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('execution', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('execution')
