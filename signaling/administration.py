"""What an admin does from the console to accounts and live classes; each action is written to
the audit log in the same transaction as the change itself.

An admin never reads a class's chat nor enters a class unseen: the console shows how many take
part, never who or what is said, and has no way into a class but the one every teacher has.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, or_, select

from .accounts import AccountError, Accounts, iso
from .audit import AuditAction, record
from .classes import Classes
from .directory import DirectoryUnavailable
from .retention import accounts_deletion
from .server import ClassServer
from .store import Account, AccountRole, Classroom, Database, LoginSession
from .text import search_key
from .tokens import ACCOUNT_ID, opaque_id

PAGE = 50
MAX_LIVE = 500  # the busiest classes shown; the totals count them all
CLASS_ID = re.compile(r"[0-9a-f]{16}")


def describe_account(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "email": account.email,
        "name": account.name,
        "role": account.role,
        "verified": account.verified,
        "disabled": account.disabled,
        "created_at": iso(account.created_at),
        "last_active_at": iso(account.last_active_at),
    }


async def end_owned_classes(classes: Classes, server: ClassServer, account: Account, reason: str) -> None:
    """The live lessons of the account's own classes end for everyone, on whichever node hosts them
    (its co-taught classes belong to others, and go on)."""
    for classroom in await classes.for_teacher(account):
        if classroom.owner_id == account.id:
            await server.end(classroom.id, reason=reason)


class Administration:
    def __init__(self, db: Database, accounts: Accounts, classes: Classes, server: ClassServer) -> None:
        self.db = db
        self.accounts = accounts
        self.classes = classes
        self.server = server

    # Accounts

    async def search(self, text: str, role: str | None) -> tuple[list[dict[str, Any]], bool]:
        """Accounts whose address or name holds `text` (any case; a name with or without accents),
        by address; and whether there are more."""
        query = select(Account).order_by(Account.email).limit(PAGE + 1)
        wanted = text.strip()
        if wanted:
            key = search_key(wanted)  # empty for accents alone: those would match every name
            matches = [Account.email.contains(wanted.lower(), autoescape=True)]
            if key:
                matches.append(Account.search_name.contains(key, autoescape=True))
            query = query.where(or_(*matches))
        if role is not None:
            query = query.where(Account.role == role)
        async with self.db.sessions() as tx:
            rows = list((await tx.scalars(query)).all())
        return [describe_account(a) for a in rows[:PAGE]], len(rows) > PAGE

    async def account(self, account_id: str) -> Account:
        if not ACCOUNT_ID.fullmatch(account_id):
            raise AccountError(404, "unknown_account", "Compte introuvable.")
        async with self.db.sessions() as tx:
            account = await tx.get(Account, account_id)
        if account is None:
            raise AccountError(404, "unknown_account", "Compte introuvable.")
        return account

    async def _other(self, admin: Account, account_id: str) -> Account:
        """An account an admin may act on: not their own (they would lock themselves out)."""
        account = await self.account(account_id)
        if account.id == admin.id:
            raise AccountError(409, "own_account", "Pas sur votre propre compte : passez par « Mon compte ».")
        return account

    async def set_disabled(self, admin: Account, account_id: str, disabled: bool) -> Account:
        """Suspend or restore an account. Suspended: it cannot sign in, its sessions end at once,
        and its classes do not open (their live lessons end now)."""
        account = await self._other(admin, account_id)
        async with self.db.transaction() as tx:
            stored = await tx.get(Account, account.id)
            if stored is None:
                raise AccountError(404, "unknown_account", "Compte introuvable.")
            if stored.disabled == disabled:  # nothing to do, and nothing to write in the audit log
                return stored
            stored.disabled = disabled
            if disabled:
                await tx.execute(delete(LoginSession).where(LoginSession.account_id == account.id))
            action = AuditAction.ACCOUNT_DISABLED if disabled else AuditAction.ACCOUNT_ENABLED
            record(tx, admin, action, account.email)
        if disabled:
            await end_owned_classes(self.classes, self.server, stored, "admin")
            await self._expel(stored)
        return stored

    async def _expel(self, account: Account) -> None:
        """The account leaves every live class it is in (others' lessons it co-teaches or attends),
        on whichever node hosts them: each class knows it by its identity there."""
        try:
            live = list(await self.server.directory.live_classes())
        except DirectoryUnavailable:
            live = list(self.server.hosted())
        secret = self.server.settings.token_secret
        for class_id in live:
            await self.server.expel(class_id, opaque_id(secret, class_id, "account", account.id))

    async def resend_verification(self, admin: Account, account_id: str) -> bool:
        """Whether the mail went out (the mail server may be down: the admin can try again)."""
        account = await self.account(account_id)
        sent = await self.accounts.resend_verification(account)
        if sent:
            async with self.db.transaction() as tx:
                record(tx, admin, AuditAction.VERIFICATION_RESENT, account.email)
        return sent

    async def promote(self, admin: Account, account_id: str) -> Account:
        account = await self.account(account_id)
        if account.role == AccountRole.ADMIN.value:
            raise AccountError(409, "already_admin", "Ce compte est déjà administrateur.")
        async with self.db.transaction() as tx:
            stored = await tx.get(Account, account.id)
            if stored is None:
                raise AccountError(404, "unknown_account", "Compte introuvable.")
            stored.role = AccountRole.ADMIN.value
            record(tx, admin, AuditAction.ACCOUNT_PROMOTED, account.email)
        return stored

    async def delete(self, admin: Account, account_id: str) -> None:
        """The account and everything attached, as the retention purge deletes it; its live classes end."""
        account = await self._other(admin, account_id)
        await end_owned_classes(self.classes, self.server, account, "admin")
        async with self.db.transaction() as tx:
            await tx.execute(accounts_deletion(Account.id == account.id))
            record(tx, admin, AuditAction.ACCOUNT_DELETED, account.email)
        await self._expel(account)

    # Live classes

    async def live(self) -> dict[str, Any]:
        """How many classes are live, where, with how many participants: counts only, never who."""
        nodes = [
            {"id": n.id, "state": n.state.value, "classes": n.classes, "participants": n.load.participants}
            for n in self.server.directory.nodes()
        ]
        try:
            located = await self.server.directory.live_classes()
            directory = "ok"
        except DirectoryUnavailable:
            located = {class_id: (self.server.directory.node_id, n) for class_id, n in self.server.hosted().items()}
            directory = "unavailable"  # this node's classes only
        live = sorted(
            ((class_id, node, n) for class_id, (node, n) in located.items() if n > 0), key=lambda c: (-c[2], c[0])
        )
        known = [class_id for class_id, _, _ in live[:MAX_LIVE] if CLASS_ID.fullmatch(class_id)]
        async with self.db.sessions() as tx:
            rows = (
                await tx.execute(
                    select(Classroom.id, Classroom.title, Account.email)
                    .join(Account, Account.id == Classroom.owner_id)
                    .where(Classroom.id.in_(known))
                )
            ).all()
        described = {class_id: (title, owner) for class_id, title, owner in rows}
        return {
            "directory": directory,
            "total_classes": len(live),
            "total_participants": sum(n for _, _, n in live),
            "nodes": nodes,
            "classes": [
                {
                    "id": class_id,
                    "title": described.get(class_id, (None, None))[0],
                    "owner": described.get(class_id, (None, None))[1],
                    "node": node,
                    "participants": n,
                }
                for class_id, node, n in live[:MAX_LIVE]
            ],
        }

    async def end_class(self, admin: Account, class_id: str) -> None:
        """An emergency: the lesson ends for everyone, on whichever node hosts it."""
        try:
            live = await self.server.directory.live_classes()
        except DirectoryUnavailable:
            live = {c: (self.server.directory.node_id, n) for c, n in self.server.hosted().items()}
        if len(class_id) > 80 or live.get(class_id, ("", 0))[1] <= 0:
            raise AccountError(404, "unknown_class", "Aucune classe en cours sous ce nom.")
        await self.server.end(class_id, reason="admin")
        async with self.db.transaction() as tx:
            record(tx, admin, AuditAction.CLASS_ENDED, class_id)
