"""The teacher's side: classes, their access mode and link, co-teachers and the roster."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from ..accounts import class_export, iso
from ..classes import ClassDraft
from ..directory import DirectoryUnavailable
from ..store import Account, AccountRole, ClassAccess, Classroom, RosterEntry
from ..text import clean_text
from .context import body, refusals_limited, require_account, services

TEACHING_ROLES = (AccountRole.TEACHER.value, AccountRole.ADMIN.value)


class ClassForm(BaseModel):
    title: str = Field(min_length=1, max_length=120)
    access: ClassAccess = ClassAccess.LINK
    lobby: bool | None = None
    starts_at: datetime | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    co_teachers: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("title")
    @classmethod
    def _printable_title(cls, value: str) -> str:
        """Shown to pupils and written in mails: one line of printable text."""
        title = clean_text(value, 120)
        if not title:
            raise ValueError("empty title")
        return title

    @field_validator("starts_at")
    @classmethod
    def _plausible_date(cls, value: datetime | None) -> datetime | None:
        """Naive UTC between 2000 and 2100: year 1 or 9999 with an offset overflows, and means nothing."""
        if value is None:
            return None
        try:
            naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        except OverflowError:
            raise ValueError("date out of range") from None
        if not 2000 <= naive.year <= 2100:
            raise ValueError("date out of range")
        return naive

    def draft(self) -> ClassDraft:
        return ClassDraft(
            self.title,
            self.access,
            self.lobby,
            self.starts_at,
            self.duration_minutes,
            tuple(self.co_teachers),
        )


class Roster(BaseModel):
    emails: list[str] = Field(max_length=500)


async def live_classes(request: web.Request, class_ids: list[str]) -> set[str]:
    """The classes of `class_ids` with participants now, on whichever node hosts them; when the
    directory cannot say, those of this node only (the page shows the others as not live rather
    than failing)."""
    server = services(request).server
    try:
        counts = await server.directory.participants(class_ids)
    except DirectoryUnavailable:
        counts = server.hosted()
    return {class_id for class_id in class_ids if counts.get(class_id, 0) > 0}


async def describe(
    request: web.Request, account: Account, classroom: Classroom, live: set[str] | None = None
) -> dict[str, Any]:
    svc = services(request)
    if live is None:
        live = await live_classes(request, [classroom.id])
    return {
        **class_export(classroom),
        "owner": classroom.owner_id == account.id,
        "link": f"{svc.settings.origin}/c/{classroom.link_code}",
        "link_expires_at": iso(classroom.link_expires_at),
        "co_teachers": await svc.classes.co_teacher_emails(classroom),
        "live": classroom.id in live,
    }


def roster_entries(entries: list[RosterEntry]) -> list[dict[str, str | None]]:
    return [{"email": e.email, "invited_at": iso(e.invited_at)} for e in entries]


async def list_classes(request: web.Request) -> web.Response:
    account = await require_account(request, *TEACHING_ROLES)
    classes = await services(request).classes.for_teacher(account)
    live = await live_classes(request, [c.id for c in classes])
    return web.json_response({"classes": [await describe(request, account, c, live) for c in classes]})


async def my_classes(request: web.Request) -> web.Response:
    """A student's (or parent's) classes: what the page needs to join them, and nothing else."""
    account = await require_account(request)
    svc = services(request)
    classes = await svc.classes.for_student(account)
    live = await live_classes(request, [c.id for c in classes])
    return web.json_response(
        {
            "classes": [
                {
                    "title": c.title,
                    "starts_at": iso(c.starts_at),
                    "duration_minutes": c.duration_minutes,
                    "link": f"{svc.settings.origin}/c/{c.link_code}",
                    "live": c.id in live,
                }
                for c in classes
            ]
        }
    )


async def create_class(request: web.Request) -> web.Response:
    account = await require_account(request, *TEACHING_ROLES)
    form = await body(request, ClassForm)
    svc = services(request)
    async with refusals_limited(request, svc.limits.unknown_co_teachers, account.id, "unknown_co_teacher"):
        classroom = await svc.classes.create(account, form.draft())
    return web.json_response(await describe(request, account, classroom), status=201)


async def get_class(request: web.Request) -> web.Response:
    account = await require_account(request, *TEACHING_ROLES)
    classroom = await services(request).classes.get(account, request.match_info["class_id"])
    return web.json_response(await describe(request, account, classroom))


async def update_class(request: web.Request) -> web.Response:
    account = await require_account(request, *TEACHING_ROLES)
    form = await body(request, ClassForm)
    svc = services(request)
    async with refusals_limited(request, svc.limits.unknown_co_teachers, account.id, "unknown_co_teacher"):
        classroom = await svc.classes.update(account, request.match_info["class_id"], form.draft())
    await svc.server.apply_lobby(classroom.id, classroom.lobby)
    return web.json_response(await describe(request, account, classroom))


async def delete_class(request: web.Request) -> web.Response:
    account = await require_account(request, *TEACHING_ROLES)
    svc = services(request)
    class_id = request.match_info["class_id"]
    await svc.classes.delete(account, class_id)
    await svc.server.end(class_id)
    return web.json_response({"status": "deleted"})


async def regenerate_link(request: web.Request) -> web.Response:
    account = await require_account(request, *TEACHING_ROLES)
    classroom = await services(request).classes.regenerate_link(account, request.match_info["class_id"])
    return web.json_response(await describe(request, account, classroom))


async def get_roster(request: web.Request) -> web.Response:
    account = await require_account(request, *TEACHING_ROLES)
    svc = services(request)
    classroom = await svc.classes.get(account, request.match_info["class_id"])
    return web.json_response({"roster": roster_entries(await svc.classes.roster(classroom))})


async def set_roster(request: web.Request) -> web.Response:
    account = await require_account(request, *TEACHING_ROLES)
    form = await body(request, Roster)
    entries, unsent = await services(request).classes.set_roster(account, request.match_info["class_id"], form.emails)
    return web.json_response({"roster": roster_entries(entries), "invitations_unsent": unsent})


ROUTES = [
    ("GET", "/api/classes", list_classes),
    ("GET", "/api/my/classes", my_classes),
    ("POST", "/api/classes", create_class),
    ("GET", "/api/classes/{class_id}", get_class),
    ("PUT", "/api/classes/{class_id}", update_class),
    ("DELETE", "/api/classes/{class_id}", delete_class),
    ("POST", "/api/classes/{class_id}/link", regenerate_link),
    ("GET", "/api/classes/{class_id}/roster", get_roster),
    ("PUT", "/api/classes/{class_id}/roster", set_roster),
]
