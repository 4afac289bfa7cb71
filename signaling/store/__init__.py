"""Persistent data: accounts, classes, rosters, one-time e-mail tokens, problem reports, the
console's audit log and live settings."""

from .database import Database, utcnow
from .models import (
    Account,
    AccountRole,
    AuditEntry,
    ClassAccess,
    Classroom,
    CoTeacher,
    EmailToken,
    InvitationSent,
    LoginSession,
    ProblemReport,
    ReportKind,
    RosterEntry,
    SiteSetting,
    TokenPurpose,
)

__all__ = [
    "Account",
    "AccountRole",
    "AuditEntry",
    "ClassAccess",
    "Classroom",
    "CoTeacher",
    "Database",
    "EmailToken",
    "InvitationSent",
    "LoginSession",
    "ProblemReport",
    "ReportKind",
    "RosterEntry",
    "SiteSetting",
    "TokenPurpose",
    "utcnow",
]
