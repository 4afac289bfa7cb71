"""Accounts: sign-up on an academic address, verification, sign-in sessions, reset, deletion, export."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from . import mail
from .config import Settings
from .mail import Mailer
from .ratelimit import RateLimiter
from .retention import accounts_deletion
from .site import SiteSettings
from .store import (
    Account,
    AccountRole,
    Classroom,
    CoTeacher,
    Database,
    EmailToken,
    LoginSession,
    ProblemReport,
    RosterEntry,
    TokenPurpose,
    utcnow,
)
from .text import clean_text, search_key

log = logging.getLogger(__name__)
# How long a join waits for the database to say whether its account is still usable.
USABLE_CHECK_SECONDS = 2.0
_EMAIL = re.compile(
    r"^[^@\s\x00-\x1f]{1,64}@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+)$"
)
MIN_PASSWORD = 10
MAX_PASSWORD = 256  # argon2 hashes any length: a cap keeps a huge password from being a cheap attack
RESET_TTL = timedelta(hours=1)
VERIFY_TTL = timedelta(days=2)
_hasher = PasswordHasher()
# Verified against when the address is unknown, so that timing does not tell which addresses exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(Exception):
    """A refusal to show the user: a stable code, a message, the HTTP status, and extra fields."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def normalize_email(value: str) -> str:
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise AccountError(400, "invalid_email", "Adresse e-mail invalide.")
    return email


def domain_allowed(email: str, entries: list[str]) -> bool:
    """Exact domains; an entry "*.example.fr" admits the sub-domains of example.fr only."""
    domain = email.rsplit("@", 1)[1]
    for entry in entries:
        if entry.startswith("*."):
            if domain.endswith(entry[1:]):
                return True
        elif domain == entry:
            return True
    return False


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(400, "weak_password", f"Le mot de passe doit compter au moins {MIN_PASSWORD} caractères.")
    if len(password) > MAX_PASSWORD:
        raise AccountError(400, "weak_password", f"Le mot de passe doit compter au plus {MAX_PASSWORD} caractères.")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)  # ~50 ms of CPU: keep it off the event loop


async def password_matches(stored: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


async def fill_search_names(db: Database) -> int:
    """Accounts created before migration 0004, or by a node not yet upgraded (a rolling upgrade),
    have no search name: filled at each start, so that the console finds them by name too."""
    async with db.transaction() as tx:
        missing = (await tx.execute(select(Account.id, Account.name).where(Account.search_name == ""))).all()
        for account_id, name in missing:
            await tx.execute(update(Account).where(Account.id == account_id).values(search_name=search_key(name)))
    return len(missing)


class Accounts:
    def __init__(self, db: Database, settings: Settings, mailer: Mailer, site: SiteSettings | None = None) -> None:
        self.db = db
        self.settings = settings
        self.mailer = mailer
        self.site = site or SiteSettings(db, settings)  # the teacher domain allow-list, changed live
        self._background: set[asyncio.Task[None]] = set()
        self._unchecked_warning = RateLimiter(1, 60.0)

    async def usable(self, account_id: str) -> bool:
        """Whether the account may still join a class: neither suspended nor deleted since its join
        token was issued. A database that fails or is slow does not hold a class's joins back: the
        token, signed two minutes ago at most, lets it in (a warning a minute at most says so)."""
        try:
            async with asyncio.timeout(USABLE_CHECK_SECONDS), self.db.sessions() as tx:
                disabled = await tx.scalar(select(Account.disabled).where(Account.id == account_id))
        except (SQLAlchemyError, OSError, TimeoutError):
            if self._unchecked_warning.take("", time.monotonic()):
                log.warning("could not check an account at join (database failing or slow): let in on its token")
            return True
        return disabled is False

    async def _send(self, message: EmailMessage) -> bool:
        """A mail server that is down must not fail the request: the user can ask again."""
        try:
            await self.mailer.send(message)
        except (OSError, aiosmtplib.SMTPException) as exc:
            log.error("mail not sent (%s): the user will have to ask again", type(exc).__name__)
            return False
        return True

    def link(self, path: str, secret: str) -> str:
        # The secret goes in the fragment: browsers never send it to a server or in a Referer.
        return f"{self.settings.origin}{path}#{secret}"

    async def _issue(self, purpose: TokenPurpose, email: str, account_id: str | None, ttl: timedelta) -> str:
        secret = secrets.token_urlsafe(32)
        async with self.db.transaction() as tx:
            if purpose is not TokenPurpose.INVITE:  # one live link per purpose: a new one revokes the last
                await tx.execute(
                    delete(EmailToken).where(EmailToken.purpose == purpose.value, EmailToken.email == email)
                )
            tx.add(
                EmailToken(
                    token_hash=digest(secret),
                    purpose=purpose.value,
                    email=email,
                    account_id=account_id,
                    expires_at=utcnow() + ttl,
                )
            )
        return secret

    async def _redeem(self, purpose: TokenPurpose, secret: str) -> EmailToken:
        async with self.db.transaction() as tx:
            token = await tx.get(EmailToken, digest(secret))
            if token is None or token.purpose != purpose.value or token.expires_at < utcnow():
                raise AccountError(400, "invalid_link", "Ce lien n'est pas valide ou a expiré.")
            await tx.delete(token)
        return token

    async def create(self, email: str, name: str, password: str, role: AccountRole, verified: bool) -> Account:
        email = normalize_email(email)
        check_password(password)
        now = utcnow()
        name = clean_text(name, 80) or email.split("@")[0]
        account = Account(
            id=secrets.token_hex(16),
            email=email,
            name=name,
            search_name=search_key(name),
            role=role.value,
            password_hash=await hash_password(password),
            verified=verified,
            created_at=now,
            last_active_at=now,
        )
        async with self.db.transaction() as tx:
            if await tx.scalar(select(Account.id).where(Account.email == email)) is not None:
                raise AccountError(409, "email_taken", "Un compte existe déjà avec cette adresse.")
            tx.add(account)
        return account

    async def sign_up_teacher(self, email: str, name: str, password: str) -> None:
        """Same answer whether or not the address has an account: sign-up does not reveal who is registered."""
        email = normalize_email(email)
        if not domain_allowed(email, (await self.site.current()).teacher_domains):
            raise AccountError(
                403, "domain_not_allowed", "Les comptes enseignants sont réservés aux adresses académiques."
            )
        check_password(password)
        try:
            account = await self.create(email, name, password, AccountRole.TEACHER, verified=False)
        except AccountError as exc:
            if exc.code != "email_taken":
                raise
            secret = await self._issue(TokenPurpose.RESET, email, None, RESET_TTL)
            await self._send(mail.already_registered(self.settings, email, self.link("/reset", secret)))
            return
        secret = await self._issue(TokenPurpose.VERIFY, email, account.id, VERIFY_TTL)
        await self._send(mail.verification(self.settings, email, self.link("/verify", secret)))

    async def verify(self, secret: str) -> None:
        token = await self._redeem(TokenPurpose.VERIFY, secret)
        async with self.db.transaction() as tx:
            account = await tx.get(Account, token.account_id) if token.account_id else None
            if account is None:
                raise AccountError(400, "invalid_link", "Ce lien n'est pas valide ou a expiré.")
            account.verified = True
            account.last_active_at = utcnow()

    async def authenticate(self, email: str, password: str) -> Account:
        refused = AccountError(401, "invalid_credentials", "Adresse ou mot de passe incorrect.")
        try:
            email = normalize_email(email)
        except AccountError:
            raise refused from None
        async with self.db.sessions() as tx:
            account = await tx.scalar(select(Account).where(Account.email == email))
        if not await password_matches(account.password_hash if account else _DUMMY_HASH, password) or not account:
            raise refused
        if not account.verified:
            raise AccountError(
                403, "email_not_verified", "Confirmez d'abord votre adresse avec le lien reçu par e-mail."
            )
        if account.disabled:
            raise AccountError(
                403, "account_disabled", "Ce compte est suspendu : contactez l'administrateur de la plateforme."
            )
        return account

    def device_token(self, account: Account) -> str:
        """The cookie of a browser this account signed in from: it changes with the password."""
        key = self.settings.token_secret.encode()
        return hmac.new(key, f"device {account.id} {account.password_hash}".encode(), hashlib.sha256).hexdigest()

    async def trusted_device(self, email: str, cookie: str) -> bool:
        async with self.db.sessions() as tx:
            account = await tx.scalar(select(Account).where(Account.email == email[:254]))
        return account is not None and hmac.compare_digest(self.device_token(account), cookie)

    async def start_session(self, account: Account) -> str:
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        async with self.db.transaction() as tx:
            tx.add(
                LoginSession(
                    id_hash=digest(secret),
                    account_id=account.id,
                    expires_at=now + timedelta(days=self.settings.session_days),
                )
            )
            stored = await tx.get(Account, account.id)
            if stored is not None:
                stored.last_active_at = now
        return secret

    async def session_account(self, secret: str) -> Account | None:
        now = utcnow()
        async with self.db.sessions() as tx:
            session = await tx.get(LoginSession, digest(secret))
            if session is None or session.expires_at < now:
                return None
            account = await tx.get(Account, session.account_id)
            if account is None or account.disabled:  # its sessions were deleted; this one raced with that
                return None
            if account.last_active_at < now - timedelta(days=1):
                account.last_active_at = now
                await tx.commit()
            return account

    async def end_session(self, secret: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(delete(LoginSession).where(LoginSession.id_hash == digest(secret)))

    def request_reset_later(self, email: str) -> None:
        """Answer first, work after: the response time does not tell whether the address has an account."""
        task = asyncio.create_task(self._request_reset_logged(email))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _request_reset_logged(self, email: str) -> None:
        try:
            await self.request_reset(email)
        except Exception as exc:  # the answer is gone: the user asks again
            log.error("password reset not sent (%s)", type(exc).__name__)

    async def request_reset(self, email: str) -> None:
        try:
            email = normalize_email(email)
        except AccountError:
            return
        async with self.db.sessions() as tx:
            account_id = await tx.scalar(select(Account.id).where(Account.email == email))
        if account_id is None:
            return
        secret = await self._issue(TokenPurpose.RESET, email, account_id, RESET_TTL)
        await self._send(mail.password_reset(self.settings, email, self.link("/reset", secret)))

    async def reset_password(self, secret: str, password: str) -> Account:
        check_password(password)
        token = await self._redeem(TokenPurpose.RESET, secret)
        password_hash = await hash_password(password)
        async with self.db.transaction() as tx:
            account = await tx.scalar(select(Account).where(Account.email == token.email))
            if account is None:
                raise AccountError(400, "invalid_link", "Ce lien n'est pas valide ou a expiré.")
            account.password_hash = password_hash
            account.verified = True  # the link proved the address
            await tx.execute(delete(LoginSession).where(LoginSession.account_id == account.id))
        return account

    async def invite(self, email: str, class_title: str, teacher: Account) -> bool:
        """A roster address: an invitation to create an account, or a notice if it has one."""
        async with self.db.sessions() as tx:
            exists = await tx.scalar(select(Account.id).where(Account.email == email)) is not None
        title, name = clean_text(class_title, 120), clean_text(teacher.name, 80)
        if exists:
            notice = mail.roster_notice(self.settings, email, title, name, teacher.email, f"{self.settings.origin}/")
            return await self._send(notice)
        secret = await self._issue(TokenPurpose.INVITE, email, None, timedelta(days=self.settings.invitation_days))
        link = self.link("/invitation", secret)
        return await self._send(mail.invitation(self.settings, email, title, name, teacher.email, link))

    async def accept_invitation(self, secret: str, name: str, password: str) -> Account:
        check_password(password)
        token = await self._redeem(TokenPurpose.INVITE, secret)
        async with self.db.transaction() as tx:
            await tx.execute(
                delete(EmailToken).where(
                    EmailToken.purpose == TokenPurpose.INVITE.value, EmailToken.email == token.email
                )
            )
            # An address taken off every roster since the mail: its invitation went with it.
            if await tx.scalar(select(RosterEntry.email).where(RosterEntry.email == token.email).limit(1)) is None:
                raise AccountError(400, "invalid_link", "Ce lien n'est pas valide ou a expiré.")
        return await self.create(token.email, name, password, AccountRole.STUDENT, verified=True)

    async def delete(self, account_id: str) -> None:
        """The account and everything attached to it, as the retention purge deletes it."""
        async with self.db.transaction() as tx:
            await tx.execute(accounts_deletion(Account.id == account_id))

    async def resend_verification(self, account: Account) -> bool:
        """A new confirmation link for an account that never used its own (the old one stops working)."""
        if account.verified:
            raise AccountError(409, "already_verified", "Ce compte a déjà confirmé son adresse.")
        secret = await self._issue(TokenPurpose.VERIFY, account.email, account.id, VERIFY_TTL)
        return await self._send(mail.verification(self.settings, account.email, self.link("/verify", secret)))

    async def export(self, account: Account) -> dict[str, Any]:
        """Everything stored about the account, for the right of access."""
        async with self.db.sessions() as tx:
            owned = (await tx.scalars(select(Classroom).where(Classroom.owner_id == account.id))).all()
            co_taught = (
                await tx.scalars(
                    select(Classroom)
                    .join(CoTeacher, CoTeacher.class_id == Classroom.id)
                    .where(CoTeacher.account_id == account.id)
                )
            ).all()
            rosters = (
                await tx.scalars(
                    select(Classroom)
                    .join(RosterEntry, RosterEntry.class_id == Classroom.id)
                    .where(RosterEntry.email == account.email)
                )
            ).all()
            reports = (await tx.scalars(select(ProblemReport).where(ProblemReport.account_id == account.id))).all()
            classes = []
            for c in owned:
                roster = (await tx.scalars(select(RosterEntry.email).where(RosterEntry.class_id == c.id))).all()
                classes.append({**class_export(c), "roster": list(roster)})
        return {
            "account": {
                "email": account.email,
                "name": account.name,
                "role": account.role,
                "created_at": iso(account.created_at),
                "last_active_at": iso(account.last_active_at),
            },
            "classes_owned": classes,
            "classes_co_taught": [{"id": c.id, "title": c.title} for c in co_taught],
            "classes_on_roster": [{"id": c.id, "title": c.title} for c in rosters],
            "problem_reports": [
                {
                    "created_at": iso(r.created_at),
                    "class_id": r.class_id,
                    "kind": r.kind,
                    "text": r.text,
                    "diagnostics": r.diagnostics,
                    "answer": r.answer,
                    "answered_at": iso(r.handled_at),
                }
                for r in reports
            ],
        }


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def class_export(c: Classroom) -> dict[str, Any]:
    return {
        "id": c.id,
        "title": c.title,
        "access": c.access,
        "lobby": c.lobby,
        "starts_at": iso(c.starts_at),
        "duration_minutes": c.duration_minutes,
        "created_at": iso(c.created_at),
    }
