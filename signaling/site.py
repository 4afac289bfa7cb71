"""The settings an admin may change live from the console (the teacher domain allow-list, the
welcome message): kept in the database, so that every node sees them; absent there, the
configuration's value applies.

Each node reads them at most every CACHE_SECONDS: a change reaches the other nodes within that.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .config import MAX_WELCOME_MESSAGE, Settings, teacher_domain_entries
from .store import Database, SiteSetting, utcnow
from .text import clean_paragraphs

CACHE_SECONDS = 5.0
MAX_TEACHER_DOMAINS = 500


@dataclass(frozen=True, slots=True)
class SiteValues:
    teacher_domains: list[str]
    welcome_message: str  # empty: none


def welcome_text(value: str) -> str:
    """Plain text, one paragraph a line, without control or bidi characters; empty: no message
    (even if the configuration has one)."""
    if len(value) > MAX_WELCOME_MESSAGE:
        raise ValueError(f"welcome_message: at most {MAX_WELCOME_MESSAGE} characters")
    return clean_paragraphs(value, MAX_WELCOME_MESSAGE)


def domain_list(value: list[str]) -> list[str]:
    """The allow-list, checked as the configuration file's is; blanks and duplicates dropped."""
    if len(value) > MAX_TEACHER_DOMAINS:
        raise ValueError(f"teacher_domains: at most {MAX_TEACHER_DOMAINS} entries")
    return list(dict.fromkeys(teacher_domain_entries([entry for entry in value if entry.strip()])))


class SiteSettings:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.defaults = SiteValues(list(settings.teacher_domains), welcome_text(settings.welcome_message or ""))
        self._cached: tuple[float, SiteValues] | None = None

    def forget(self) -> None:
        """Read the database again at the next question (after a change, once committed)."""
        self._cached = None

    async def current(self) -> SiteValues:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > CACHE_SECONDS:
            self._cached = (now, await self._read())
        return self._cached[1]

    async def _read(self) -> SiteValues:
        async with self.db.sessions() as tx:
            rows = {row.name: row.value for row in (await tx.scalars(select(SiteSetting))).all()}
        values = self.defaults
        for name, raw in rows.items():
            try:
                values = replace(values, **{name: _parse(name, json.loads(raw))})
            except (ValueError, TypeError):
                continue  # a row this version does not know, or cannot read: the default applies
        return values

    async def change(self, tx: AsyncSession, name: str, value: Any) -> bool:
        """Store one setting for every node (None: back to the configuration's value), in the
        caller's transaction; False when it was so already. The value was checked by the caller
        (`domain_list`, `welcome_text`)."""
        stored = await tx.get(SiteSetting, name)
        raw = json.dumps(value, ensure_ascii=False) if value is not None else None
        if (stored.value if stored is not None else None) == raw:
            return False
        if stored is not None:
            await tx.delete(stored)
            await tx.flush()
        if raw is not None:
            tx.add(SiteSetting(name=name, value=raw, updated_at=utcnow()))
        return True


def _parse(name: str, value: Any) -> Any:
    if name == "teacher_domains" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return domain_list(value)
    if name == "welcome_message" and isinstance(value, str):
        return welcome_text(value)
    raise ValueError(name)
