"""networks: users' own Keras networks, and the network a job trains

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 07:00:00

`POST /api/v1/networks` keeps a user's `.keras` network (its config in the row, the file in the
artifact store); a job names one in `model.network_id`, recorded in `jobs.network_id` so that a
network in use by a queued or running job cannot be deleted. Older jobs train the template (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.tables

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'networks',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('owner', sa.String(length=100), nullable=False),
        sa.Column('size_bytes', sa.Integer(), nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.Column('config', sa.JSON(), nullable=False),
        sa.Column('summary', sa.JSON(), nullable=False),
        sa.Column('created_at', store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_networks')),
    )
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_networks_owner'), ['owner'], unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('network_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_network_id'), ['network_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_jobs_network_id_networks'), 'networks', ['network_id'], ['id'], ondelete='SET NULL'
        )


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_jobs_network_id_networks'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_jobs_network_id'))
        batch_op.drop_column('network_id')
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_networks_owner'))
    op.drop_table('networks')
