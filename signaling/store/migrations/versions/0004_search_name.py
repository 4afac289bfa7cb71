"""accounts found by name with or without accents, in any case, on SQLite as on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

The column starts empty: each server start fills the empty ones (Accounts.fill_search_names), which
also covers the accounts created by a node not yet upgraded during a rolling upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy (see 0003: a copy of `accounts` would cascade).
    op.add_column("accounts", sa.Column("search_name", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("accounts", "search_name")
