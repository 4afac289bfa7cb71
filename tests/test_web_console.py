"""The administration console in a real Chromium, against a real server: an admin reads a report
sent from a class, answers it, and the teacher reads the answer on her page; the admin suspends
her, and she can no longer sign in nor open her class; the audit log shows both; a teacher sees no
way into the console, and is refused at its door."""

from __future__ import annotations

import re

from playwright.async_api import expect
from sqlalchemy import select

from signaling.store import AccountRole, ProblemReport

from .browser import chromium, screenshot
from .conftest import RunningServer
from .test_access import new_class
from .test_web_client import join, no_foreign_requests, sign_in
from .web import PASSWORD, code_of, teacher

ADMIN_EMAIL = "equipe@ac-lyon.fr"


async def test_an_admin_answers_a_report_from_a_class_then_suspends_its_teacher(classe: RunningServer) -> None:
    await classe.services.accounts.create(ADMIN_EMAIL, "Équipe numérique", PASSWORD, AccountRole.ADMIN, verified=True)
    async with await teacher(classe) as t, chromium(classe.url) as browser:
        link = classe.url + "/c/" + code_of(await new_class(t, lobby=False, title="Maths 4e B"))

        # The teacher opens her class and reports a problem from the room.
        prof = await browser.page("prof")
        await sign_in(prof, classe.url, "prof@ac-lyon.fr")
        await prof.wait_for_url("**/classes")
        await expect(prof.get_by_role("link", name="Administration")).to_have_count(0)  # not for teachers
        await prof.goto(link)
        await join(prof)
        await expect(prof.locator("#room")).to_be_visible()
        await prof.get_by_role("button", name="Signaler un problème").click()
        await prof.get_by_label("De quoi s'agit-il ?").select_option("sound")
        await prof.get_by_label("Votre message").fill("Les élèves ne m'entendent pas")
        await prof.get_by_role("dialog").get_by_role("button", name="Envoyer").click()
        await expect(prof.locator("#announcer")).to_have_text("Merci, votre signalement a été envoyé.")
        async with classe.services.db.sessions() as tx:
            report = (await tx.scalars(select(ProblemReport))).one()

        # The console's door is shut to her, in another tab.
        tab = await prof.context.new_page()
        response = await tab.goto(classe.url + "/admin/reports")
        assert response is not None and response.status == 403
        await expect(tab.get_by_role("heading", name="Accès refusé")).to_be_visible()

        # The admin finds it waiting, reads it with what the page measured, and answers it.
        admin = await browser.page("admin")
        await sign_in(admin, classe.url, ADMIN_EMAIL)
        await admin.wait_for_url("**/classes")
        await admin.get_by_role("link", name="Administration").click()
        await expect(admin.get_by_role("heading", name="Console d'administration")).to_be_visible()
        await expect(admin.get_by_text("ni lire la discussion d'une classe ni y entrer sans être vu")).to_be_visible()
        await admin.get_by_role("link", name="1 signalement en attente").click()
        await expect(admin.get_by_label("État")).to_have_value("new")
        row = admin.locator(f"tr[data-report='{report.id}']")
        await expect(row).to_contain_text("Le son")
        await expect(row).to_contain_text("Maths 4e B")
        await expect(row).to_contain_text("prof@ac-lyon.fr")
        await screenshot(admin, "console-01-reports")
        await admin.get_by_role("link", name=f"Lire le signalement n° {report.id}").click()
        await expect(admin.get_by_role("heading", name=f"Signalement n° {report.id}")).to_be_visible()
        await expect(admin.locator("#report-text")).to_have_text("Les élèves ne m'entendent pas")
        await expect(admin.locator("#report-diagnostics")).to_contain_text('"connection"')
        await admin.get_by_label("Réponse", exact=True).fill("Vérifiez que le micro choisi est le bon.")
        await admin.get_by_role("button", name="Répondre et marquer comme traité").click()
        await expect(admin.locator("#report-state")).to_have_text("Traité")
        await expect(admin.locator("#report-handled")).to_contain_text(ADMIN_EMAIL)
        await screenshot(admin, "console-02-report-answered")

        # Her class shows among the live ones: where, and how many, never who.
        await admin.get_by_role("link", name="Classes en cours").click()
        live = admin.locator("#class-rows tr")
        await expect(live).to_have_count(1)
        await expect(live).to_contain_text("Maths 4e B")
        await expect(live.locator("td").nth(3)).to_have_text("1")
        await expect(admin.locator("#node-rows")).to_contain_text(classe.settings.node_id)

        # The teacher reads the answer on her page.
        await tab.goto(classe.url + "/classes")
        answers = tab.get_by_role("region", name="Mes signalements")
        await expect(answers).to_contain_text("Vérifiez que le micro choisi est le bon.")
        await expect(answers).to_contain_text("Le son")
        await screenshot(tab, "console-03-teacher-reads-the-answer")

        # The admin suspends her: her lesson ends, her pages sign her out, and she cannot come back.
        await admin.get_by_role("link", name="Comptes").click()
        await admin.get_by_label("Nom ou adresse").fill("durand")
        await admin.get_by_role("button", name="Rechercher").click()
        await admin.get_by_role("button", name="Suspendre Mme Durand").click()
        await admin.get_by_role("dialog").get_by_role("button", name="Suspendre").click()
        await expect(admin.get_by_role("status")).to_have_text("Compte suspendu.")
        await expect(admin.locator("#account-rows")).to_contain_text("Suspendu")
        await expect(admin.get_by_role("button", name="Réactiver Mme Durand")).to_be_visible()
        await screenshot(admin, "console-04-account-suspended")
        await expect(prof.get_by_role("heading", name="Le cours est terminé")).to_be_visible()

        await tab.reload()
        await tab.wait_for_url("**/login?next=%2Fclasses")
        await tab.get_by_label("Adresse e-mail").fill("prof@ac-lyon.fr")
        await tab.get_by_label("Mot de passe").fill(PASSWORD)
        await tab.get_by_role("button", name="Se connecter").click()
        await expect(tab.get_by_role("alert")).to_have_text(
            "Ce compte est suspendu : contactez l'administrateur de la plateforme."
        )
        await tab.goto(link)
        await expect(tab.get_by_role("heading", name="Classe indisponible")).to_be_visible()

        # A welcome message, set live, greets everyone on the sign-in page.
        await admin.get_by_role("link", name="Réglages").click()
        domains = admin.get_by_label("Domaines autorisés pour les comptes enseignants")
        await expect(domains).to_have_value(re.compile(r"^ac-aix-marseille\.fr\n(.+\n)*ac-lyon\.fr\n"))
        await admin.get_by_label("Message d'accueil").fill("Maintenance jeudi soir, de 20 h à 22 h.")
        await admin.get_by_role("button", name="Enregistrer").click()
        await expect(admin.get_by_role("status")).to_contain_text("Réglages enregistrés")
        await tab.goto(classe.url + "/login")
        welcome = tab.get_by_role("complementary", name="Message de l'équipe")
        await expect(welcome.get_by_role("paragraph")).to_have_text("Maintenance jeudi soir, de 20 h à 22 h.")

        # The audit log shows every action, newest first, without the words of the answer or the message.
        await admin.get_by_role("link", name="Journal des actions").click()
        entries = admin.locator("#audit-rows tr")
        await expect(entries).to_have_count(3)
        await expect(entries.nth(0)).to_contain_text("a changé un réglage")
        await expect(entries.nth(0)).to_contain_text("Message d'accueil")
        await expect(entries.nth(1)).to_contain_text("a suspendu un compte")
        await expect(entries.nth(1)).to_contain_text("prof@ac-lyon.fr")
        await expect(entries.nth(2)).to_contain_text("a répondu à un signalement")
        await expect(entries.nth(2).get_by_role("link", name=f"Signalement n° {report.id}")).to_be_visible()
        await expect(admin.locator("#audit")).not_to_contain_text("micro choisi")
        await expect(admin.locator("#audit")).not_to_contain_text("Maintenance")
        await screenshot(admin, "console-05-audit")

        no_foreign_requests(browser)
