"""The retention policy deletes what has outlived its purpose, with everything attached, and nothing else."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from signaling.cli import main
from signaling.config import Settings
from signaling.mail import OutboxMailer, verification
from signaling.retention import purge
from signaling.store import (
    Account,
    Classroom,
    CoTeacher,
    Database,
    EmailToken,
    LoginSession,
    ProblemReport,
    RosterEntry,
    utcnow,
)

from .conftest import RunningServer, both_databases
from .test_access import new_class
from .web import teacher

TABLES = (Account, Classroom, CoTeacher, RosterEntry, LoginSession, EmailToken, ProblemReport)


async def counts(classe: RunningServer) -> dict[str, int]:
    async with classe.services.db.sessions() as tx:
        return {t.__tablename__: int(await tx.scalar(select(func.count()).select_from(t)) or 0) for t in TABLES}


@both_databases
async def test_purge_deletes_an_idle_account_and_all_its_data_and_nothing_else(
    classe: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with await teacher(classe, "idle@ac-lyon.fr") as idle, await teacher(classe, "active@ac-lyon.fr") as active:
        for t, co in ((idle, "active@ac-lyon.fr"), (active, "idle@ac-lyon.fr")):
            classroom = await new_class(t, "account", co_teachers=[co])
            await t.ok("PUT", f"/api/classes/{classroom['id']}/roster", {"emails": ["famille@example.org"]})
            await t.ok("POST", "/api/reports", {"text": "écho", "diagnostics": {}})
    before = await counts(classe)
    assert before == {
        "accounts": 2,
        "classes": 2,
        "co_teachers": 2,
        "roster": 2,
        "login_sessions": 2,
        "email_tokens": 2,  # an invitation for famille@example.org from each class
        "problem_reports": 2,
    }
    async with classe.services.db.transaction() as tx:
        await tx.execute(
            update(Account)
            .where(Account.email == "idle@ac-lyon.fr")
            .values(last_active_at=utcnow() - timedelta(days=classe.settings.account_retention_days + 1))
        )
    caplog.set_level(logging.INFO)
    removed = await purge(classe.services.db, classe.settings)
    assert removed["idle_accounts"] == 1
    after = await counts(classe)
    assert after["accounts"] == 1 and after["classes"] == 1 and after["roster"] == 1
    assert after["co_teachers"] == 0  # the idle teacher co-taught the other class: that link went too
    assert after["login_sessions"] == 1 and after["problem_reports"] == 1
    async with classe.services.db.sessions() as tx:
        assert (await tx.scalars(select(Account.email))).all() == ["active@ac-lyon.fr"]
        [classroom] = (await tx.scalars(select(Classroom))).all()
        owner = await tx.get(Account, classroom.owner_id)
        assert owner is not None and owner.email == "active@ac-lyon.fr"
    assert "idle_accounts=1" in caplog.text and "@" not in caplog.text  # counts, never addresses

    # A second run finds nothing more to delete.
    assert set((await purge(classe.services.db, classe.settings)).values()) == {0}


async def test_purge_expires_links_sessions_reports_and_unverified_accounts(classe: RunningServer) -> None:
    async with await teacher(classe) as t:
        await t.ok("POST", "/api/reports", {"text": "old", "diagnostics": {}})
    await classe.services.accounts.sign_up_teacher("jamais@ac-lyon.fr", "Jamais", "never confirmed, ever")
    later = utcnow() + timedelta(days=max(classe.settings.report_retention_days, classe.settings.session_days) + 1)
    removed = await purge(classe.services.db, classe.settings, later)
    assert removed == {
        "idle_accounts": 0,
        "unverified_accounts": 1,
        "expired_sessions": 1,
        "expired_links": 0,  # the unconfirmed account's verification link went with the account
        "old_problem_reports": 1,
        "old_audit_entries": 0,
        "invitation_counts": 0,
        "outbox_mails": 0,
    }
    async with classe.services.db.sessions() as tx:
        assert (await tx.scalars(select(Account.email))).all() == ["prof@ac-lyon.fr"]


def test_purge_and_report_export_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "classe.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    with pytest.raises(SystemExit) as code:
        main(["purge", "--config", str(config)])
    assert code.value.code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["idle_accounts"] == 0

    import asyncio

    async def add_report() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'classe.db'}")
        async with db.transaction() as tx:
            report = ProblemReport(
                created_at=utcnow(), class_id="c1", text="Pas de son\n…", diagnostics='{"ice": "failed"}'
            )
            tx.add(report)
        await db.close()

    asyncio.run(add_report())
    with pytest.raises(SystemExit):
        main(["reports", "list", "--config", str(config)])
    assert "class=c1  Pas de son" in capsys.readouterr().out
    out = tmp_path / "reports.csv"
    with pytest.raises(SystemExit):
        main(["reports", "export", "--format", "csv", "--output", str(out), "--config", str(config)])
    assert out.read_text().splitlines()[0] == "id,created_at,class_id,signed_in,text,diagnostics"
    with pytest.raises(SystemExit):
        main(["reports", "export", "--config", str(config)])
    [report] = json.loads(capsys.readouterr().out)
    assert report["diagnostics"] == {"ice": "failed"} and report["signed_in"] is False


async def test_purge_empties_the_outbox_of_old_mail(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.database)
    await db.migrate()
    outbox = OutboxMailer(tmp_path / "outbox")
    await outbox.send(verification(settings, "prof@ac-lyon.fr", "http://x/verify#secret"))
    later = utcnow() + timedelta(days=settings.outbox_retention_days, minutes=1)
    assert (await purge(db, settings))["outbox_mails"] == 0  # a fresh mail stays, for the operator to forward
    assert (await purge(db, settings, later))["outbox_mails"] == 1
    assert list((tmp_path / "outbox").iterdir()) == []
    await db.close()


@both_databases
async def test_the_migrations_build_exactly_the_tables_of_the_models(classe: RunningServer) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from signaling.store.models import Base

    async with classe.services.db.engine.connect() as connection:
        diff = await connection.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert diff == []
