"""A family books a week of cantine in a real browser (Debian's Chromium): planning, recap
with its total, validation, the réservation's number.

The server thread runs on the real clock, so nothing here depends on today's date: the
planning opens on the first week the rules let the family book, and the test books every
day the page offers in that week.
"""

import re

from tests.browser.conftest import screenshot
from tests.factories import PASSWORD, accept_document, enrol, make_family
from tests.support import in_own_connection

EMAIL = "lucie.bernard@example.fr"


def test_book_a_week_of_cantine_and_see_the_recap_total(server, page, browser_commune):
    def create_family():
        from django.db import connection

        connection.set_tenant(browser_commune)
        family = make_family(EMAIL, last_name="Bernard", first_name="Lucie", children=("Jules",))
        child = family.children.get()
        accept_document(child)
        return enrol(child, "cantine").pk

    enrolment_id = in_own_connection(create_family)

    page.goto(f"{server}/reservations/")
    assert "/compte/connexion/" in page.url
    page.get_by_label("Adresse e-mail").fill(EMAIL)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.get_by_role("heading", name="Inscriptions et réservations").wait_for()

    page.get_by_role("link", name=re.compile("^Planning de Jules")).click()
    page.get_by_role("heading", name="Planning de Jules Bernard").wait_for()
    page.get_by_role("button", name="Semaine", exact=True).click()
    page.wait_for_url(re.compile(rf"/reservations/{enrolment_id}/planning/\?vue=semaine&date="))
    title = page.locator("#titre-planning").inner_text()
    assert title.startswith("Semaine du lundi")

    boxes = page.locator("table.planning input[name=book]")
    count = boxes.count()
    assert 1 <= count <= 7, f"no bookable day shown in « {title} »"
    for index in range(count):
        box = boxes.nth(index)
        box.check()
        assert box.is_checked()
    # The enhancement counts the selection as it is made (the page works without it).
    assert page.locator("#selection-etat").inner_text().startswith(f"{count} jour")
    # The hint of the focused cell, in plain French (a bar at the bottom of the screen).
    assert page.locator(".cell:focus-within .hint").inner_text().startswith("Repas, ")
    screenshot(page, "booking-planning")

    page.get_by_role("button", name="Voir le récapitulatif").click()
    page.get_by_role("heading", name="Récapitulatif de ma sélection").wait_for()
    assert page.locator("table.recap tbody tr").count() == count
    # Quotient not checked by the commune: the highest bracket, 5,00 € a meal.
    expected = f"{count * 5},00\u00a0€"
    assert page.locator("#total").inner_text() == expected
    shot = screenshot(page, "booking-recap")
    assert shot.stat().st_size > 10_000

    page.get_by_role("button", name=re.compile("^Valider")).click()
    heading = page.get_by_role("heading", name=re.compile(r"^Réservation n° R\d{4}-\d{6}$"))
    heading.wait_for()
    number = re.search(r"R\d{4}-\d{6}", heading.inner_text()).group(0)
    assert f"Réservation n° {number} enregistrée." in page.locator("main").inner_text()
    assert page.get_by_text("Acceptée", exact=True).count() >= 1
    assert page.locator("table tbody tr").count() == count
    screenshot(page, "booking-confirmation")
