"""accounts, classes, rosters, e-mail tokens, problem reports

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_active_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounts_last_active_at"), ["last_active_at"], unique=False)

    op.create_table(
        "classes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("starts_at", sa.DateTime(), nullable=True),
        sa.Column("duration_minutes", sa.Integer(), nullable=True),
        sa.Column("access", sa.String(length=16), nullable=False),
        sa.Column("lobby", sa.Boolean(), nullable=False),
        sa.Column("link_code", sa.String(length=64), nullable=False),
        sa.Column("link_expires_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("link_code"),
    )
    with op.batch_alter_table("classes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_classes_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "email_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("email_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_tokens_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_tokens_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_email_tokens_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "login_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_sessions_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_login_sessions_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "problem_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("class_id", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("diagnostics", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("problem_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_problem_reports_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_problem_reports_created_at"), ["created_at"], unique=False)

    op.create_table(
        "co_teachers",
        sa.Column("class_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["class_id"], ["classes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("class_id", "account_id"),
    )
    op.create_table(
        "roster",
        sa.Column("class_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("invited_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["class_id"], ["classes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("class_id", "email"),
    )
    with op.batch_alter_table("roster", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_roster_email"), ["email"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("roster", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_roster_email"))

    op.drop_table("roster")
    op.drop_table("co_teachers")
    with op.batch_alter_table("problem_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_problem_reports_created_at"))
        batch_op.drop_index(batch_op.f("ix_problem_reports_account_id"))

    op.drop_table("problem_reports")
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_sessions_expires_at"))
        batch_op.drop_index(batch_op.f("ix_login_sessions_account_id"))

    op.drop_table("login_sessions")
    with op.batch_alter_table("email_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_tokens_expires_at"))
        batch_op.drop_index(batch_op.f("ix_email_tokens_email"))
        batch_op.drop_index(batch_op.f("ix_email_tokens_account_id"))

    op.drop_table("email_tokens")
    with op.batch_alter_table("classes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_classes_owner_id"))

    op.drop_table("classes")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_last_active_at"))

    op.drop_table("accounts")
