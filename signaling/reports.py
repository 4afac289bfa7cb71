"""Problem reports as the console handles them: found by date, kind and state, read with their
diagnostics, answered; and as their reporter reads them back, with the answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import aliased

from .accounts import AccountError, iso
from .audit import AuditAction, record
from .store import Account, Classroom, Database, ProblemReport, utcnow

PAGE = 50
EXCERPT = 140
MAX_ANSWER = 2000


class ReportState(StrEnum):
    NEW = "new"
    HANDLED = "handled"


@dataclass(frozen=True, slots=True)
class ReportFilter:
    state: ReportState | None = None
    kind: str | None = None
    since: date | None = None  # from this day (UTC), included
    until: date | None = None  # to this day (UTC), included
    before: int | None = None  # the next page: reports older than this id


def _state(report: ProblemReport) -> str:
    return (ReportState.NEW if report.handled_at is None else ReportState.HANDLED).value


def _reporter(account: Account | None) -> dict[str, str] | None:
    if account is None:
        return None
    return {"id": account.id, "email": account.email, "name": account.name, "role": account.role}


def _excerpt(text: str) -> str:
    first = " ".join(text.split())
    return first if len(first) <= EXCERPT else first[: EXCERPT - 1] + "…"


def _conditions(wanted: ReportFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if wanted.state is ReportState.NEW:
        conditions.append(ProblemReport.handled_at.is_(None))
    elif wanted.state is ReportState.HANDLED:
        conditions.append(ProblemReport.handled_at.is_not(None))
    if wanted.kind is not None:
        conditions.append(ProblemReport.kind == wanted.kind)
    if wanted.since is not None:
        conditions.append(ProblemReport.created_at >= datetime.combine(wanted.since, time()))
    if wanted.until is not None:
        conditions.append(ProblemReport.created_at < datetime.combine(wanted.until + timedelta(days=1), time()))
    if wanted.before is not None:
        conditions.append(ProblemReport.id < wanted.before)
    return conditions


async def find(db: Database, wanted: ReportFilter) -> tuple[list[dict[str, Any]], int | None]:
    """The latest reports first, a page at a time; the id to ask `before` for the next page, or None."""
    query = (
        select(ProblemReport, Account, Classroom.title)
        .outerjoin(Account, Account.id == ProblemReport.account_id)
        .outerjoin(Classroom, Classroom.id == ProblemReport.class_id)
        .where(*_conditions(wanted))
        .order_by(ProblemReport.id.desc())
        .limit(PAGE + 1)
    )
    async with db.sessions() as tx:
        rows = (await tx.execute(query)).all()
    page = [
        {**_described(report, reporter, title), "excerpt": _excerpt(report.text)}
        for report, reporter, title in rows[:PAGE]
    ]
    return page, (rows[PAGE - 1][0].id if len(rows) > PAGE else None)


def _described(report: ProblemReport, reporter: Account | None, title: str | None) -> dict[str, Any]:
    """What the list and the full report both show of a report."""
    return {
        "id": report.id,
        "created_at": iso(report.created_at),
        "kind": report.kind,
        "state": _state(report),
        "class_id": report.class_id,
        "class_title": title,
        "reporter": _reporter(reporter),
        "handled_at": iso(report.handled_at),
    }


async def count_new(db: Database) -> int:
    async with db.sessions() as tx:
        return int(
            await tx.scalar(select(func.count()).select_from(ProblemReport).where(ProblemReport.handled_at.is_(None)))
            or 0
        )


def _diagnostics(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


async def read(db: Database, report_id: int) -> dict[str, Any]:
    """One report whole: its text, its diagnostics, who sent it (if signed in), its answer."""
    handler = aliased(Account)
    query = (
        select(ProblemReport, Account, Classroom.title, handler.email)
        .outerjoin(Account, Account.id == ProblemReport.account_id)
        .outerjoin(Classroom, Classroom.id == ProblemReport.class_id)
        .outerjoin(handler, handler.id == ProblemReport.handled_by)
        .where(ProblemReport.id == report_id)
    )
    async with db.sessions() as tx:
        row = (await tx.execute(query)).first()
    if row is None:
        raise AccountError(404, "unknown_report", "Signalement introuvable.")
    report, reporter, title, handled_by = row
    return {
        **_described(report, reporter, title),
        "text": report.text,
        "diagnostics": _diagnostics(report.diagnostics),
        "answer": report.answer,
        "handled_by": handled_by,
    }


async def answer(db: Database, admin: Account, report_id: int, text: str) -> None:
    """Mark the report handled with a short answer (a second answer replaces the first)."""
    async with db.transaction() as tx:
        report = await tx.get(ProblemReport, report_id)
        if report is None:
            raise AccountError(404, "unknown_report", "Signalement introuvable.")
        report.handled_at = utcnow()
        report.handled_by = admin.id
        report.answer = text
        record(tx, admin, AuditAction.REPORT_ANSWERED, str(report_id))


async def of_reporter(db: Database, account: Account) -> list[dict[str, Any]]:
    """The account's own reports, latest first, with the answers it was given."""
    query = (
        select(ProblemReport)
        .where(ProblemReport.account_id == account.id)
        .order_by(ProblemReport.id.desc())
        .limit(PAGE)
    )
    async with db.sessions() as tx:
        rows = (await tx.scalars(query)).all()
    return [
        {
            "id": r.id,
            "created_at": iso(r.created_at),
            "kind": r.kind,
            "state": _state(r),
            "excerpt": _excerpt(r.text),
            "answer": r.answer,
            "handled_at": iso(r.handled_at),
        }
        for r in rows
    ]
