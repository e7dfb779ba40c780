"""owners, API tokens, job crash count

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:05:00

Datasets and jobs made before owners existed belong to `local`, the owner the service uses when
authentication is off; a token created for `local` sees them once authentication is turned on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.tables

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.String(length=16), nullable=False),
        sa.Column('owner', sa.String(length=100), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash')),
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_owner'), ['owner'], unique=False)

    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=100), nullable=True))
        batch_op.create_index(batch_op.f('ix_datasets_owner'), ['owner'], unique=False)
    op.execute("UPDATE datasets SET owner = 'local' WHERE format <> 'builtin'")

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('crashes', sa.Integer(), server_default='0', nullable=False))
    op.execute("UPDATE jobs SET owner = 'local'")
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('owner', existing_type=sa.String(length=100), nullable=False)
        batch_op.create_index(batch_op.f('ix_jobs_owner'), ['owner'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_owner'))
        batch_op.drop_column('crashes')
        batch_op.drop_column('owner')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_datasets_owner'))
        batch_op.drop_column('owner')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_owner'))
    op.drop_table('api_tokens')
