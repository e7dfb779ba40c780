"""api_tokens.operator: tokens that may read the service-wide /metrics

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 05:10:00

`/metrics` sums every owner's jobs and trials, so an owner's token no longer reads it: only a token
made with `python -m service.tokens create --operator` (and the first token, the installer's) does,
besides the addresses DROPTUNE_METRICS_ALLOW lists. Tokens older than this revision are not operators.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('operator', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('operator')
