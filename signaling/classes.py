"""Classes as the teacher sets them up: title, schedule, co-teachers, access mode, link, roster."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from .accounts import AccountError, Accounts, normalize_email
from .config import Settings
from .store import (
    Account,
    AccountRole,
    ClassAccess,
    Classroom,
    CoTeacher,
    Database,
    EmailToken,
    InvitationSent,
    RosterEntry,
    TokenPurpose,
    utcnow,
)
from .text import clean_text

MAX_ROSTER = 500
_CLASS_ID = re.compile(r"[0-9a-f]{16}")
_LINK_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what token_urlsafe makes; anything else is unknown
MAX_CO_TEACHERS = 10


def _roster_address(raw: str) -> str:
    """An address of the roster, or a refusal that names it, so that the teacher can find it."""
    try:
        return normalize_email(raw)
    except AccountError:
        shown = clean_text(raw, 254)
        raise AccountError(400, "invalid_address", f"Adresse invalide : {shown}", address=shown) from None


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
        self._roster_locks: dict[str, asyncio.Lock] = {}

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
        if len(found) < len(wanted):  # not which one: the answer must not tell who has a teacher account
            raise AccountError(
                400,
                "unknown_co_teacher",
                "Chaque co-enseignant doit déjà avoir un compte enseignant sur ce serveur, à l'adresse indiquée.",
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
        if not _CLASS_ID.fullmatch(class_id):
            raise AccountError(404, "unknown_class", "Classe introuvable.")
        async with self.db.sessions() as tx:
            classroom = await tx.get(Classroom, class_id)
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
        elif {normalize_email(e) for e in draft.co_teachers} != set(await self.co_teacher_emails(classroom)):
            raise AccountError(
                403, "owner_only", "Seul l'enseignant qui a créé la classe peut changer les co-enseignants."
            )
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

        New entries are written pending first, then mailed one by one, each marked once sent: a save
        cut short (a crash, the mail server down) leaves its mails pending, and the next save sends
        them. Returns the roster and how many of its mails are still pending.
        """
        classroom = await self.get(account, class_id)
        if len(emails) > MAX_ROSTER:
            raise AccountError(400, "roster_too_long", f"Au plus {MAX_ROSTER} adresses.")
        wanted: set[str] = set()
        for raw in emails:
            if raw.strip():
                wanted.add(_roster_address(raw))
        # One save at a time per teacher: two saves at once would both fit in the same daily limit.
        # (One small lock per teacher who ever saved a roster in this process.)
        async with self._roster_locks.setdefault(account.id, asyncio.Lock()):
            return await self._replace_roster(account, classroom, wanted)

    async def _replace_roster(
        self, account: Account, classroom: Classroom, wanted: set[str]
    ) -> tuple[list[RosterEntry], int]:
        now = utcnow()
        async with self.db.transaction() as tx:
            current = set(
                (await tx.scalars(select(RosterEntry.email).where(RosterEntry.class_id == classroom.id))).all()
            )
            added = sorted(wanted - current)
            left = await self._invitations_left(tx, account, now)
            if len(added) > left:
                plural = "s" if len(added) > 1 else ""
                raise AccountError(
                    429,
                    "too_many_invitations",
                    f"Cette liste ajoute {len(added)} adresse{plural} ; vous pouvez encore en inviter {left} "
                    "aujourd'hui. Enregistrez-la en plusieurs fois, sur plusieurs jours.",
                    invitations_left=left,
                )
            gone = current - wanted
            if gone:
                await tx.execute(
                    delete(RosterEntry).where(RosterEntry.class_id == classroom.id, RosterEntry.email.in_(gone))
                )
                # An address off every roster loses its invitation at once.
                still_listed = select(RosterEntry.email).where(RosterEntry.email.in_(gone))
                await tx.execute(
                    delete(EmailToken).where(
                        EmailToken.purpose == TokenPurpose.INVITE.value,
                        EmailToken.email.in_(gone),
                        EmailToken.email.not_in(still_listed),
                    )
                )
            tx.add_all(RosterEntry(class_id=classroom.id, email=e, invited_at=None) for e in added)
        unsent = await self._send_pending(account, classroom)
        return await self.roster(classroom), unsent

    async def _invitations_left(self, tx: AsyncSession, account: Account, now: datetime) -> int:
        sent = await tx.scalar(
            select(func.count())
            .select_from(InvitationSent)
            .where(InvitationSent.account_id == account.id, InvitationSent.sent_at > now - timedelta(days=1))
        )
        return max(0, self.settings.invitations_per_day - int(sent or 0))

    async def _send_pending(self, account: Account, classroom: Classroom) -> int:
        """Mail the class's pending roster entries, within the teacher's daily limit."""
        async with self.db.sessions() as tx:
            pending = list(
                (
                    await tx.scalars(
                        select(RosterEntry.email)
                        .where(RosterEntry.class_id == classroom.id, RosterEntry.invited_at.is_(None))
                        .order_by(RosterEntry.email)
                    )
                ).all()
            )
            left = await self._invitations_left(tx, account, utcnow())
        unsent = len(pending)
        for email in pending[:left]:
            if not await self.accounts.invite(email, classroom.title, account):
                break  # the mail server is down: the rest wait for the next save rather than time out one by one
            unsent -= 1
            now = utcnow()
            async with self.db.transaction() as tx:
                entry = await tx.get(RosterEntry, (classroom.id, email))
                if entry is not None:
                    entry.invited_at = now
                tx.add(InvitationSent(account_id=account.id, sent_at=now))
        return unsent

    async def by_code(self, code: str) -> Classroom | None:
        """The class of a link (None: unknown or expired); refused while its owner is suspended."""
        if not _LINK_CODE.fullmatch(code):
            return None
        async with self.db.sessions() as tx:
            row = (
                await tx.execute(
                    select(Classroom, Account.disabled)
                    .join(Account, Account.id == Classroom.owner_id)
                    .where(Classroom.link_code == code)
                )
            ).first()
        if row is None or row[0].link_expires_at < utcnow():
            return None
        if row[1]:
            raise AccountError(
                403, "class_suspended", "Cette classe n'est pas disponible : le compte de son enseignant est suspendu."
            )
        classroom: Classroom = row[0]
        return classroom

    async def on_roster(self, account: Account, classroom: Classroom) -> bool:
        async with self.db.sessions() as tx:
            return await tx.get(RosterEntry, (classroom.id, account.email)) is not None
