"""A family pays immediately in a real browser (Debian's Chromium), through the fake PayFiP:
the adhesion that opens the bookings, then prepaid meals, each ending on a paid invoice.

The commune is alpha with an adhesion paid immediately and bookings paid in advance; the
server thread and the fake PayFiP run on the real clock.
"""

import re

import pytest
from marelle_payfip.fake_server import FakePayFiP
from marelle_payfip.plugin import ENV_URL

from tests.browser.conftest import screenshot
from tests.factories import PASSWORD, accept_document, enrol, make_family
from tests.plugins.payments_support import resolve_localhost
from tests.support import ALPHA_YAML, in_own_connection

EMAIL = "sarah.lefort@example.fr"
PREPAID_YAML = (ALPHA_YAML
                .replace("    enrolment:\n      mode: automatic",
                         "    enrolment:\n      mode: automatic\n"
                         "      adhesion: {label: Adhésion cantine, amount_cents: 1700, payment: immediate}")
                .replace("      booking_deadline: S-1 jeudi 12:00\n",
                         "      booking_deadline: S-1 jeudi 12:00\n      prepayment: {basket_expiry_minutes: 30}\n"))


@pytest.fixture
def browser_commune(db):
    """Overrides the conftest's: the same commune `navigateur`, paid immediately."""
    from tenants.models import Domain
    from tests.support import create_committed_commune, drop_committed_commune

    commune = create_committed_commune("navigateur", PREPAID_YAML)
    in_own_connection(lambda: Domain.objects.create(tenant_id=commune.pk, domain="navigateur.localhost"))
    try:
        yield commune
    finally:
        drop_committed_commune(commune)


@pytest.fixture
def payfip(monkeypatch):
    resolve_localhost(monkeypatch)  # the fake's notification reaches navigateur.localhost
    with FakePayFiP() as fake:
        monkeypatch.setenv(ENV_URL, fake.url)
        yield fake


def pay_on_the_fake_payfip(page):
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/tpa/"))
    page.get_by_role("button", name="Payer", exact=True).click()
    page.get_by_role("heading", name="Paiement validé").wait_for()


def test_adhesion_then_prepaid_meals_paid_through_payfip(server, page, browser_commune, payfip):
    def create_family():
        from django.db import connection

        connection.set_tenant(browser_commune)
        family = make_family(EMAIL, last_name="Lefort", first_name="Sarah", children=("Mila",))
        child = family.children.get()
        accept_document(child)
        return enrol(child, "cantine").pk

    enrolment_id = in_own_connection(create_family)

    page.goto(f"{server}/reservations/")
    page.get_by_label("Adresse e-mail").fill(EMAIL)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.get_by_role("link", name="Payer l'adhésion").click()
    page.get_by_role("heading", name="Paiement de l'adhésion", exact=True).wait_for()
    screenshot(page, "immediate-adhesion")
    page.get_by_role("button", name=re.compile(r"^Payer 17,00\s€ en ligne")).click()
    pay_on_the_fake_payfip(page)
    main = page.locator("main").inner_text()
    assert "votre paiement de 17,00" in main and "SCO-" in main
    screenshot(page, "immediate-adhesion-paid")

    # The adhesion opened the bookings: book the first bookable week, pay it in advance.
    page.get_by_role("link", name=re.compile("^Réserver les jours de Mila")).click()
    page.get_by_role("button", name="Semaine", exact=True).click()
    page.wait_for_url(re.compile(rf"/reservations/{enrolment_id}/planning/\?vue=semaine&date="))
    boxes = page.locator("table.planning input[name=book]")
    count = boxes.count()
    assert count >= 1
    for index in range(count):
        boxes.nth(index).check()
    page.get_by_role("button", name="Voir le récapitulatif").click()
    page.get_by_role("button", name=re.compile("^Valider")).click()
    page.get_by_role("heading", name="Paiements à effectuer").wait_for()
    amount = f"{count * 5},00"
    assert f"Réglez {amount}" in page.locator("main").inner_text().replace("\u00a0", " ")
    screenshot(page, "immediate-basket")
    page.get_by_role("button", name=re.compile(rf"^Payer {amount}\s€ en ligne")).click()
    pay_on_the_fake_payfip(page)

    page.goto(f"{server}/factures/")
    invoices = page.locator(".regie table tbody tr")
    assert invoices.count() == 2
    assert [invoices.nth(i).locator("td").last.inner_text() for i in range(2)] == ["Payée", "Payée"]
    screenshot(page, "immediate-invoices")
