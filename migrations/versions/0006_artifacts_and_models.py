"""artifacts and models: files kept in the store, and the models a job keeps

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 23:50:00

`artifacts` and `artifact_chunks` are the database backend of `store.artifacts` (uploaded datasets,
`.keras` models, keras-tuner's resume state), so any host with the database URL has every file.
`models` lists the models a job keeps. `datasets.content_hash` names an upload's file in the store.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.tables

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'artifacts',
        sa.Column('key', sa.String(length=300), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('created_at', store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_artifacts')),
    )
    op.create_table(
        'artifact_chunks',
        sa.Column('key', sa.String(length=300), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ['key'], ['artifacts.key'], name=op.f('fk_artifact_chunks_key_artifacts'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('key', 'seq', name=op.f('pk_artifact_chunks')),
    )
    op.create_table(
        'models',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('trial_number', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('artifact_key', sa.String(length=300), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('epochs', sa.Integer(), nullable=True),
        sa.Column('signature', sa.JSON(), nullable=False),
        sa.Column('created_at', store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_models_job_id_jobs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
        sa.UniqueConstraint('job_id', 'kind', 'trial_number', name=op.f('uq_models_job_id')),
    )
    op.create_index(op.f('ix_models_job_id'), 'models', ['job_id'], unique=False)
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_hash', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('content_hash')
    op.drop_index(op.f('ix_models_job_id'), table_name='models')
    op.drop_table('models')
    op.drop_table('artifact_chunks')
    op.drop_table('artifacts')
