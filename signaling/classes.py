"""Classes as the teacher sets them up: title, schedule, co-teachers, access mode, link, roster."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select

from .accounts import AccountError, Accounts, normalize_email
from .config import Settings
from .store import Account, AccountRole, ClassAccess, Classroom, CoTeacher, Database, RosterEntry, utcnow

MAX_ROSTER = 500
MAX_CO_TEACHERS = 10


def new_link_code() -> str:
    return secrets.token_urlsafe(24)  # 192 random bits


@dataclass(frozen=True, slots=True)
class ClassDraft:
    title: str
    access: ClassAccess
    lobby: bool | None = None  # None: on for link access, off for account access
    starts_at: datetime | None = None
    duration_minutes: int | None = None
    co_teachers: tuple[str, ...] = ()


class Classes:
    def __init__(self, db: Database, settings: Settings, accounts: Accounts) -> None:
        self.db = db
        self.settings = settings
        self.accounts = accounts

    def _link_expiry(self) -> datetime:
        return utcnow() + timedelta(days=self.settings.class_link_days)

    async def create(self, owner: Account, draft: ClassDraft) -> Classroom:
        now = utcnow()
        classroom = Classroom(
            id=secrets.token_hex(8),
            owner_id=owner.id,
            title=draft.title,
            starts_at=draft.starts_at,
            duration_minutes=draft.duration_minutes,
            access=draft.access.value,
            lobby=draft.lobby if draft.lobby is not None else draft.access is ClassAccess.LINK,
            link_code=new_link_code(),
            link_expires_at=self._link_expiry(),
            created_at=now,
        )
        co_teachers = await self._co_teacher_ids(owner, draft.co_teachers)
        async with self.db.transaction() as tx:
            tx.add(classroom)
            await tx.flush()
            tx.add_all(CoTeacher(class_id=classroom.id, account_id=a) for a in co_teachers)
        return classroom

    async def _co_teacher_ids(self, owner: Account, emails: tuple[str, ...]) -> list[str]:
        if len(emails) > MAX_CO_TEACHERS:
            raise AccountError(400, "too_many_co_teachers", f"Au plus {MAX_CO_TEACHERS} co-enseignants.")
        wanted = {normalize_email(e) for e in emails} - {owner.email}
        if not wanted:
            return []
        async with self.db.sessions() as tx:
            found = (
                await tx.execute(
                    select(Account.id, Account.email).where(
                        Account.email.in_(wanted), Account.role == AccountRole.TEACHER.value
                    )
                )
            ).all()
        missing = wanted - {email for _, email in found}
        if missing:
            raise AccountError(
                400,
                "unknown_co_teacher",
                "Un co-enseignant doit avoir un compte enseignant : " + ", ".join(sorted(missing)),
            )
        return [account_id for account_id, _ in found]

    async def for_teacher(self, account: Account) -> list[Classroom]:
        async with self.db.sessions() as tx:
            co_taught = select(CoTeacher.class_id).where(CoTeacher.account_id == account.id)
            rows = await tx.scalars(
                select(Classroom)
                .where(or_(Classroom.owner_id == account.id, Classroom.id.in_(co_taught)))
                .order_by(Classroom.created_at)
            )
            return list(rows.all())

    async def for_student(self, account: Account) -> list[Classroom]:
        """The account-mode classes whose roster holds this account's address."""
        async with self.db.sessions() as tx:
            listed = select(RosterEntry.class_id).where(RosterEntry.email == account.email)
            rows = await tx.scalars(
                select(Classroom)
                .where(Classroom.id.in_(listed), Classroom.access == ClassAccess.ACCOUNT.value)
                .order_by(Classroom.created_at)
            )
            return list(rows.all())

    async def is_teacher(self, account: Account, classroom: Classroom) -> bool:
        if account.role not in (AccountRole.TEACHER.value, AccountRole.ADMIN.value):
            return False
        if classroom.owner_id == account.id:
            return True
        async with self.db.sessions() as tx:
            return await tx.get(CoTeacher, (classroom.id, account.id)) is not None

    async def get(self, account: Account, class_id: str, *, owner_only: bool = False) -> Classroom:
        """A class this account teaches; 404 otherwise, so that ids of others' classes are not confirmed."""
        async with self.db.sessions() as tx:
            classroom = await tx.get(Classroom, class_id[:32])
        if classroom is None or not await self.is_teacher(account, classroom):
            raise AccountError(404, "unknown_class", "Classe introuvable.")
        if owner_only and classroom.owner_id != account.id:
            raise AccountError(403, "owner_only", "Seul l'enseignant qui a créé la classe peut faire cela.")
        return classroom

    async def update(self, account: Account, class_id: str, draft: ClassDraft) -> Classroom:
        classroom = await self.get(account, class_id)
        co_teachers = None
        if classroom.owner_id == account.id:
            co_teachers = await self._co_teacher_ids(account, draft.co_teachers)
        async with self.db.transaction() as tx:
            stored = await tx.get(Classroom, classroom.id)
            assert stored is not None
            stored.title = draft.title
            stored.access = draft.access.value
            stored.lobby = draft.lobby if draft.lobby is not None else draft.access is ClassAccess.LINK
            stored.starts_at = draft.starts_at
            stored.duration_minutes = draft.duration_minutes
            if co_teachers is not None:
                await tx.execute(delete(CoTeacher).where(CoTeacher.class_id == classroom.id))
                tx.add_all(CoTeacher(class_id=classroom.id, account_id=a) for a in co_teachers)
        return stored

    async def co_teacher_emails(self, classroom: Classroom) -> list[str]:
        async with self.db.sessions() as tx:
            rows = await tx.scalars(
                select(Account.email)
                .join(CoTeacher, CoTeacher.account_id == Account.id)
                .where(CoTeacher.class_id == classroom.id)
                .order_by(Account.email)
            )
            return list(rows.all())

    async def delete(self, account: Account, class_id: str) -> None:
        classroom = await self.get(account, class_id, owner_only=True)
        async with self.db.transaction() as tx:
            await tx.execute(delete(Classroom).where(Classroom.id == classroom.id))

    async def regenerate_link(self, account: Account, class_id: str) -> Classroom:
        classroom = await self.get(account, class_id)
        async with self.db.transaction() as tx:
            stored = await tx.get(Classroom, classroom.id)
            assert stored is not None
            stored.link_code = new_link_code()
            stored.link_expires_at = self._link_expiry()
        return stored

    async def roster(self, classroom: Classroom) -> list[RosterEntry]:
        async with self.db.sessions() as tx:
            rows = await tx.scalars(
                select(RosterEntry).where(RosterEntry.class_id == classroom.id).order_by(RosterEntry.email)
            )
            return list(rows.all())

    async def set_roster(self, account: Account, class_id: str, emails: list[str]) -> tuple[list[RosterEntry], int]:
        """Replace the roster; new addresses get an invitation (or a notice, if they have an account).

        Returns the roster and how many of those mails could not be sent.
        """
        classroom = await self.get(account, class_id)
        if len(emails) > MAX_ROSTER:
            raise AccountError(400, "roster_too_long", f"Au plus {MAX_ROSTER} adresses.")
        wanted = {normalize_email(e) for e in emails if e.strip()}
        now = utcnow()
        async with self.db.transaction() as tx:
            current = set(
                (await tx.scalars(select(RosterEntry.email).where(RosterEntry.class_id == classroom.id))).all()
            )
            gone = current - wanted
            if gone:
                await tx.execute(
                    delete(RosterEntry).where(RosterEntry.class_id == classroom.id, RosterEntry.email.in_(gone))
                )
            added = sorted(wanted - current)
            tx.add_all(RosterEntry(class_id=classroom.id, email=e, invited_at=now) for e in added)
        unsent = 0
        for email in added:
            unsent += not await self.accounts.invite(email, classroom.title)
        return await self.roster(classroom), unsent

    async def by_code(self, code: str) -> Classroom | None:
        if not code or len(code) > 64:
            return None
        async with self.db.sessions() as tx:
            classroom = await tx.scalar(select(Classroom).where(Classroom.link_code == code))
        if classroom is None or classroom.link_expires_at < utcnow():
            return None
        return classroom

    async def on_roster(self, account: Account, classroom: Classroom) -> bool:
        async with self.db.sessions() as tx:
            return await tx.get(RosterEntry, (classroom.id, account.email)) is not None
