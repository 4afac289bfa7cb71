"""the administration console: suspended accounts, answered problem reports, the audit log, live settings

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy: on SQLite, copying `accounts` would drop the old table,
    # and its ON DELETE CASCADE would empty every table that refers to it.
    op.add_column("accounts", sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("problem_reports", sa.Column("kind", sa.String(length=16), server_default="other", nullable=False))
    op.add_column("problem_reports", sa.Column("handled_at", sa.DateTime(), nullable=True))
    op.add_column("problem_reports", sa.Column("handled_by", sa.String(length=32), nullable=True))
    op.add_column("problem_reports", sa.Column("answer", sa.Text(), nullable=True))
    op.create_index("ix_problem_reports_handled_at", "problem_reports", ["handled_at"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=254), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    op.create_table(
        "site_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("site_settings")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_problem_reports_handled_at", table_name="problem_reports")
    for column in ("answer", "handled_by", "handled_at", "kind"):
        op.drop_column("problem_reports", column)
    op.drop_column("accounts", "disabled")  # ALTER TABLE DROP COLUMN (SQLite 3.35 and later), no copy
