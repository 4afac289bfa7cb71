"""accounts found by name with or without accents, in any case, on SQLite as on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from signaling.text import search_key

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACCOUNTS = sa.table(
    "accounts", sa.column("id", sa.String), sa.column("name", sa.String), sa.column("search_name", sa.Text)
)


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy (see 0003: a copy of `accounts` would cascade).
    op.add_column("accounts", sa.Column("search_name", sa.Text(), server_default="", nullable=False))
    bind = op.get_bind()
    keys = [
        {"key_id": i, "key": search_key(name)} for i, name in bind.execute(sa.select(ACCOUNTS.c.id, ACCOUNTS.c.name))
    ]
    if keys:  # one statement for all the accounts (executemany)
        update = ACCOUNTS.update().where(ACCOUNTS.c.id == sa.bindparam("key_id"))
        bind.execute(update.values(search_name=sa.bindparam("key")), keys)


def downgrade() -> None:
    op.drop_column("accounts", "search_name")
