"""The console's audit log: every action an admin takes on an account, a problem report, a live
class or a live setting, as who, what, on what and when; never what was written (an answer, a
welcome message). The retention purge deletes entries after `audit_retention_days`."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .accounts import iso
from .store import Account, AuditEntry, Database, utcnow

PAGE = 100


class AuditAction(StrEnum):
    REPORT_ANSWERED = "report_answered"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_ENABLED = "account_enabled"
    VERIFICATION_RESENT = "verification_resent"
    ACCOUNT_DELETED = "account_deleted"
    ACCOUNT_PROMOTED = "account_promoted"
    CLASS_ENDED = "class_ended"
    SETTING_CHANGED = "setting_changed"


def record(tx: AsyncSession, actor: Account, action: AuditAction, target: str) -> None:
    """Written in the transaction of the action itself: an action without its entry never commits."""
    tx.add(AuditEntry(at=utcnow(), actor_id=actor.id, actor=actor.email, action=action.value, target=target[:254]))


async def entries(db: Database, before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """The latest entries first, a page at a time; the id to ask `before` for the next page, or None."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(PAGE + 1)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    async with db.sessions() as tx:
        rows = list((await tx.scalars(query)).all())
    page = [
        {"id": e.id, "at": iso(e.at), "actor": e.actor, "action": e.action, "target": e.target} for e in rows[:PAGE]
    ]
    return page, (rows[PAGE - 1].id if len(rows) > PAGE else None)
