"""Persistent data: accounts, classes, rosters, one-time e-mail tokens, problem reports."""

from .database import Database, utcnow
from .models import (
    Account,
    AccountRole,
    ClassAccess,
    Classroom,
    CoTeacher,
    EmailToken,
    InvitationSent,
    LoginSession,
    ProblemReport,
    RosterEntry,
    TokenPurpose,
)

__all__ = [
    "Account",
    "AccountRole",
    "ClassAccess",
    "Classroom",
    "CoTeacher",
    "Database",
    "EmailToken",
    "InvitationSent",
    "LoginSession",
    "ProblemReport",
    "RosterEntry",
    "TokenPurpose",
    "utcnow",
]
