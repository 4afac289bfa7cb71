"""The retention policy (GDPR): what has outlived its purpose is deleted, and the counts logged."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete
from sqlalchemy.sql.dml import Delete

from .config import Settings
from .store import Account, AuditEntry, Database, EmailToken, InvitationSent, LoginSession, ProblemReport, utcnow

log = logging.getLogger(__name__)


def accounts_deletion(*where: ColumnElement[bool]) -> Delete:
    """Deleting an account deletes, by cascade, its classes (with rosters and co-teachers),
    sessions, e-mail links and problem reports: the purge, the account's owner and the console
    all delete accounts this way. The audit log keeps its entries until they expire."""
    return delete(Account).where(*where)


def _rules(settings: Settings, now: datetime) -> dict[str, Delete]:
    return {
        "idle_accounts": accounts_deletion(
            Account.last_active_at < now - timedelta(days=settings.account_retention_days)
        ),
        "unverified_accounts": accounts_deletion(
            Account.verified.is_(False), Account.created_at < now - timedelta(days=settings.unverified_account_days)
        ),
        "expired_sessions": delete(LoginSession).where(LoginSession.expires_at < now),
        "expired_links": delete(EmailToken).where(EmailToken.expires_at < now),
        "old_problem_reports": delete(ProblemReport).where(
            ProblemReport.created_at < now - timedelta(days=settings.report_retention_days)
        ),
        "old_audit_entries": delete(AuditEntry).where(
            AuditEntry.at < now - timedelta(days=settings.audit_retention_days)
        ),
        # Only counts the daily limit of roster mails: a day is all it is needed for.
        "invitation_counts": delete(InvitationSent).where(InvitationSent.sent_at < now - timedelta(days=1)),
    }


def _purge_outbox(settings: Settings, now: datetime) -> int:
    """The outbox's mails hold addresses and live links: they go after `outbox_retention_days`."""
    folder = settings.data_dir / "outbox"
    cutoff = now.replace(tzinfo=UTC).timestamp() - settings.outbox_retention_days * 86400
    removed = 0
    for path in folder.glob("*.eml") if folder.is_dir() else ():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


async def purge(db: Database, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Apply the policy once; returns how many rows each rule removed (counts only, never names)."""
    now = now or utcnow()
    counts: dict[str, int] = {}
    async with db.transaction() as tx:
        for name, statement in _rules(settings, now).items():
            result = await tx.execute(statement.execution_options(synchronize_session=False))
            counts[name] = int(getattr(result, "rowcount", 0) or 0)
    counts["outbox_mails"] = await asyncio.to_thread(_purge_outbox, settings, now)
    log.info("retention purge: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts
