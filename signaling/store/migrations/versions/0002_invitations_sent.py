"""invitations_sent: the roster mails each teacher sent, for the daily limit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invitations_sent",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("invitations_sent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_invitations_sent_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_invitations_sent_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("invitations_sent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invitations_sent_sent_at"))
        batch_op.drop_index(batch_op.f("ix_invitations_sent_account_id"))
    op.drop_table("invitations_sent")
