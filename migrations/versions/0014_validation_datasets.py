"""validation datasets: the dataset a job validates on instead of a split

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 10:30:00

A job may name `validation_dataset_id`: a second dataset it validates on. It is recorded in
`jobs.validation_dataset_id` (indexed, SET NULL like `jobs.dataset_id`) so that a dataset a queued or
running job validates on cannot be deleted. Older jobs split their one dataset (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("validation_dataset_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_validation_dataset_id"), ["validation_dataset_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_validation_dataset_id_datasets"),
            "datasets",
            ["validation_dataset_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_jobs_validation_dataset_id_datasets"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_jobs_validation_dataset_id"))
        batch_op.drop_column("validation_dataset_id")
