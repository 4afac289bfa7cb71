"""The `classe` command: run the server, and the operator's tasks (accounts, purge, reports)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, get_origin

import aiohttp
import uvloop
from pydantic import ValidationError
from sqlalchemy import select

from . import admin, lifecycle, logs, retention, workers
from .accounts import AccountError, Accounts, iso
from .config import Settings
from .mail import make_mailer
from .store import AccountRole, Database, ProblemReport


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, made from the Settings model: `--media-port-min 40000`, `--no-dev-mode`,
    and JSON for lists (`--media-addresses '["192.0.2.10"]'`). Pydantic checks and converts the values."""
    flags = parser.add_argument_group("settings (see the README; they override the file and CLASSE_* variables)")
    for name, field in Settings.model_fields.items():
        if name == "config_file":  # --config
            continue
        flag = "--" + name.replace("_", "-")
        if field.annotation in (bool, bool | None):
            flags.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None)
        elif get_origin(field.annotation) is list:
            flags.add_argument(flag, dest=name, type=json.loads, metavar="JSON")
        else:
            flags.add_argument(flag, dest=name, metavar=name.upper())


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in Settings.model_fields if name != "config_file"}
    overrides["config_file"] = args.config
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SystemExit(f"classe: invalid settings: {exc}") from None


def serve(settings: Settings, argv: list[str], shared_port: int | None = None) -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if settings.workers > 1:
        workers.check(settings)
        raise SystemExit(asyncio.run(workers.Supervisor(settings, argv).run()))
    asyncio.run(lifecycle.run(settings, shared_port))


async def drain(settings: Settings, args: argparse.Namespace) -> int:
    """Mark the running server draining (or, with --undo, ready again); with --wait, return once
    its last class has ended. Prints the node's state as JSON."""
    paths = workers.admin_sockets(settings)  # one per worker with --workers
    try:
        states = [await admin.ask(path, "POST", "/drain", {"draining": not args.undo}) for path in paths]
        for state in states:
            print(json.dumps(state))
        if any("error" in state for state in states):
            return 1
        while args.wait and any(state["classes"] for state in states):
            await asyncio.sleep(1.0)
            states = [await admin.ask(path, "GET", "/status") for path in paths]
            for state in states:
                print(json.dumps(state))
    except (OSError, aiohttp.ClientError) as exc:
        where = ", ".join(map(str, paths))
        print(f"error: no Classe server answers on {where} ({exc}); is admin_socket the server's?", file=sys.stderr)
        return 1
    return 0


async def _with_db(settings: Settings, task: Callable[[Database], Awaitable[int]]) -> int:
    db = Database(settings.database)
    try:
        await db.migrate()
        return await task(db)
    finally:
        await db.close()


def _password() -> str:
    """From CLASSE_PASSWORD (scripts) or typed twice; never from the command line, which `ps` shows."""
    password = os.environ.get("CLASSE_PASSWORD")
    if password:
        return password
    first = getpass.getpass("Mot de passe / password: ")
    if first != getpass.getpass("Encore / again: "):
        raise SystemExit("the two passwords differ")
    return first


async def create_account(settings: Settings, args: argparse.Namespace, db: Database) -> int:
    accounts = Accounts(db, settings, make_mailer(settings))
    try:
        account = await accounts.create(args.email, args.name, _password(), AccountRole(args.role), verified=True)
    except AccountError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"created {account.role} account {account.id}")
    return 0


async def purge(settings: Settings, db: Database) -> int:
    counts = await retention.purge(db, settings)
    print(json.dumps(counts))
    return 0


async def reports(args: argparse.Namespace, db: Database) -> int:
    async with db.sessions() as tx:
        rows = (await tx.scalars(select(ProblemReport).order_by(ProblemReport.created_at))).all()
    items: list[dict[str, Any]] = [
        {
            "id": r.id,
            "created_at": iso(r.created_at),
            "class_id": r.class_id or "",
            "signed_in": r.account_id is not None,
            "text": r.text,
            "diagnostics": json.loads(r.diagnostics),
        }
        for r in rows
    ]
    output = getattr(args, "output", None)
    out = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        if args.reports_command == "list":
            for item in items:
                first_line = item["text"].splitlines()[0][:80] if item["text"] else ""
                print(f"#{item['id']}  {item['created_at']}  class={item['class_id'] or '-'}  {first_line}", file=out)
        elif getattr(args, "format", "json") == "csv":
            writer = csv.writer(out)
            writer.writerow(["id", "created_at", "class_id", "signed_in", "text", "diagnostics"])
            for item in items:
                writer.writerow([*list(item.values())[:5], json.dumps(item["diagnostics"], ensure_ascii=False)])
        else:
            json.dump(items, out, ensure_ascii=False, indent=2)
            out.write("\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="classe", description="Classe virtual classroom server")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML settings file (see README)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", parents=[common], help="run the web, signaling and media server")
    _setting_flags(run)
    # Set by `--workers` on each worker it starts (signaling/workers.py), not by operators.
    run.add_argument("--shared-port", type=int, help=argparse.SUPPRESS)
    drained = sub.add_parser(
        "drain", parents=[common], help="the running server opens no new class; its live classes go on"
    )
    drained.add_argument("--undo", action="store_true", help="take new classes again")
    drained.add_argument("--wait", action="store_true", help="return once the server holds no live class")
    sub.add_parser("migrate", parents=[common], help="create or upgrade the database schema")
    create = sub.add_parser("create-account", parents=[common], help="create a verified teacher or admin account")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=["teacher", "admin"], default="teacher")
    sub.add_parser("purge", parents=[common], help="apply the retention policy now and print what was deleted")
    report = sub.add_parser("reports", help="problem reports sent by participants")
    report_sub = report.add_subparsers(dest="reports_command", required=True)
    report_sub.add_parser("list", parents=[common])
    export = report_sub.add_parser("export", parents=[common])
    export.add_argument("--format", choices=["json", "csv"], default="json")
    export.add_argument("--output", type=Path)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = _settings(args)
    # A serving node names itself on every line; aioice's and aiortc's lines (candidate addresses) are left out.
    logs.configure(settings.log_format, settings.node_id if args.command == "serve" else None)
    if args.command == "serve":
        serve(settings, list(sys.argv[1:] if argv is None else argv), args.shared_port)
        return
    if args.command == "drain":
        raise SystemExit(asyncio.run(drain(settings, args)))
    if args.command == "migrate":

        async def nothing(db: Database) -> int:
            return 0

        task: Callable[[Database], Awaitable[int]] = nothing
    elif args.command == "create-account":
        task = lambda db: create_account(settings, args, db)  # noqa: E731
    elif args.command == "purge":
        task = lambda db: purge(settings, db)  # noqa: E731
    else:
        task = lambda db: reports(args, db)  # noqa: E731
    raise SystemExit(asyncio.run(_with_db(settings, task)))


if __name__ == "__main__":
    main()
