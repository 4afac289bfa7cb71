"""The tables. Only what the service needs: no IP address, no chat, no media is ever stored."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AccountRole(StrEnum):
    TEACHER = "teacher"
    STUDENT = "student"  # a student's or a parent's account, created from a roster invitation
    ADMIN = "admin"


class ClassAccess(StrEnum):
    LINK = "link"  # anyone holding the link, with a display name (and the lobby, by default)
    ACCOUNT = "account"  # only signed-in accounts whose address is on the roster


class TokenPurpose(StrEnum):
    VERIFY = "verify"
    RESET = "reset"
    INVITE = "invite"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # lower-cased
    name: Mapped[str] = mapped_column(String(80))
    search_name: Mapped[str] = mapped_column(Text, default="", server_default="")  # text.search_key(name)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # Drives the retention policy: refreshed at sign-in and, at most daily, on use.
    last_active_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # Suspended from the console: cannot sign in, its sessions are gone, its classes do not open.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class LoginSession(Base):
    """A signed-in browser. The cookie holds a secret; only its hash is stored."""

    __tablename__ = "login_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class EmailToken(Base):
    """A one-time link sent by e-mail (verification, password reset, roster invitation); hash only."""

    __tablename__ = "email_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(254), index=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class Classroom(Base):
    __tablename__ = "classes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    starts_at: Mapped[datetime | None] = mapped_column(DateTime)
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    access: Mapped[str] = mapped_column(String(16))
    lobby: Mapped[bool] = mapped_column(Boolean)
    # The class address: 128 random bits or more. Regenerating it revokes the old one.
    link_code: Mapped[str] = mapped_column(String(64), unique=True)
    link_expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class CoTeacher(Base):
    __tablename__ = "co_teachers"

    class_id: Mapped[str] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)


class RosterEntry(Base):
    """An address allowed into an account-mode class; one address may stand for several children."""

    __tablename__ = "roster"

    class_id: Mapped[str] = mapped_column(ForeignKey("classes.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), primary_key=True, index=True)
    # None while its invitation is pending: written before the mail is sent, so that a save cut
    # short (a crash, the mail server down) leaves it for the next save to send.
    invited_at: Mapped[datetime | None] = mapped_column(DateTime)


class InvitationSent(Base):
    """One roster mail a teacher made the server send: counts the daily limit; kept one day."""

    __tablename__ = "invitations_sent"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    sent_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class ReportKind(StrEnum):
    """What the reporter says the problem is about (the console filters on it)."""

    SOUND = "sound"
    VIDEO = "video"
    CONNECTION = "connection"
    ACCOUNT = "account"
    OTHER = "other"


class ProblemReport(Base):
    __tablename__ = "problem_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    class_id: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    diagnostics: Mapped[str] = mapped_column(Text)  # JSON: browser, connection state, round-trip time…
    kind: Mapped[str] = mapped_column(String(16), default=ReportKind.OTHER.value, server_default="other")
    # Set by an admin from the console; the reporter, when signed in, reads the answer on their page.
    handled_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    handled_by: Mapped[str | None] = mapped_column(String(32))  # the admin's account id (none once deleted)
    answer: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """One action taken from the console: who, what, on what, when; never what was written
    (an answer, a welcome message). Kept `audit_retention_days`, then purged."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # The admin's id and address as they were: the entry outlives the accounts it names.
    actor_id: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(254))  # an address, a report's number, a class id, a setting's name


class SiteSetting(Base):
    """A setting changed live from the console, for every node; absent: the configuration's value."""

    __tablename__ = "site_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # JSON
    updated_at: Mapped[datetime] = mapped_column(DateTime)
