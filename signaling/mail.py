"""Outgoing mail: SMTP through aiosmtplib, or a local outbox folder when no server is set."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from .config import Settings

log = logging.getLogger(__name__)


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class OutboxMailer:
    """Writes each message as an .eml file: the service works with no mail server at all."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: EmailMessage) -> None:
        name = f"{secrets.token_hex(8)}.eml"
        await asyncio.to_thread(self._write, name, message.as_bytes())
        # The file name is the only reference logged: addresses are personal data.
        log.info("mail written to the outbox: %s", name)

    def _write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / name).write_bytes(data)


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self.settings
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            start_tls=s.smtp_starttls and not s.smtp_tls,
            use_tls=s.smtp_tls,
            timeout=30,
        )


class CountedMailer:
    """Another mailer, counting what it sent and failed to send (`classe_mails_total`): a mail
    server that refuses is seen on the dashboard before teachers say their links never came."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer
        self.results: Counter[str] = Counter()  # "sent", "failed"

    async def send(self, message: EmailMessage) -> None:
        try:
            await self.mailer.send(message)
        except Exception:
            self.results["failed"] += 1
            raise
        self.results["sent"] += 1


def make_mailer(settings: Settings) -> Mailer:
    if settings.smtp_host:
        return SmtpMailer(settings)
    return OutboxMailer(settings.data_dir / "outbox")


def compose(settings: Settings, to: str, subject: str, french: str, english: str) -> EmailMessage:
    """French first, then English, in one plain-text message."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(f"{french}\n\n-- English --\n\n{english}\n")
    return message


def verification(settings: Settings, to: str, link: str) -> EmailMessage:
    return compose(
        settings,
        to,
        "Classe : confirmez votre adresse / confirm your address",
        f"Bonjour,\n\nPour activer votre compte enseignant sur Classe, ouvrez ce lien :\n{link}\n\n"
        "Si vous n'avez pas demandé de compte, ignorez ce message.",
        f"Hello,\n\nTo activate your teacher account on Classe, open this link:\n{link}\n\n"
        "If you did not ask for an account, ignore this message.",
    )


def already_registered(settings: Settings, to: str, link: str) -> EmailMessage:
    return compose(
        settings,
        to,
        "Classe : vous avez déjà un compte / you already have an account",
        f"Bonjour,\n\nUne inscription a été demandée avec cette adresse, qui a déjà un compte.\n"
        f"Mot de passe oublié ? {link}",
        f"Hello,\n\nSomeone asked to sign up with this address, which already has an account.\n"
        f"Forgot your password? {link}",
    )


def password_reset(settings: Settings, to: str, link: str) -> EmailMessage:
    return compose(
        settings,
        to,
        "Classe : nouveau mot de passe / new password",
        f"Bonjour,\n\nPour choisir un nouveau mot de passe, ouvrez ce lien (valable une heure) :\n{link}\n\n"
        "Si vous n'avez rien demandé, ignorez ce message : votre mot de passe ne change pas.",
        f"Hello,\n\nTo choose a new password, open this link (valid for one hour):\n{link}\n\n"
        "If you did not ask for this, ignore this message: your password stays the same.",
    )


def _inviter(settings: Settings, teacher_name: str, teacher_email: str) -> tuple[str, str]:
    """Who invites, in French and in English: the teacher, their address, and the school if set."""
    who = f"{teacher_name} ({teacher_email})"
    if settings.institution_name:
        return f"{who}, {settings.institution_name}", f"{who}, {settings.institution_name}"
    return who, who


def invitation(
    settings: Settings, to: str, class_title: str, teacher_name: str, teacher_email: str, link: str
) -> EmailMessage:
    """The subject is fixed: nothing a teacher types goes into it."""
    fr, en = _inviter(settings, teacher_name, teacher_email)
    return compose(
        settings,
        to,
        "Classe : invitation à une classe virtuelle / invitation to a virtual class",
        f"Bonjour,\n\n{fr} vous invite à rejoindre sa classe virtuelle « {class_title} ».\n"
        f"Créez votre compte avec ce lien :\n{link}\n\n"
        "Une même adresse peut servir pour plusieurs enfants. "
        "Si ce nom ne vous dit rien, ignorez ce message.",
        f'Hello,\n\n{en} invites you to their virtual class "{class_title}".\n'
        f"Create your account with this link:\n{link}\n\n"
        "One address may be used for several children. If this name means nothing to you, ignore this message.",
    )


def roster_notice(
    settings: Settings, to: str, class_title: str, teacher_name: str, teacher_email: str, link: str
) -> EmailMessage:
    fr, en = _inviter(settings, teacher_name, teacher_email)
    return compose(
        settings,
        to,
        "Classe : nouvelle classe sur votre compte / a new class on your account",
        f"Bonjour,\n\n{fr} a inscrit votre compte à sa classe « {class_title} » :\n{link}",
        f'Hello,\n\n{en} added your account to their class "{class_title}":\n{link}',
    )
