"""PayFiP: the plugin against its local fake server (real SOAP through eopayment and zeep),
then end to end through the portal: start, card page, notification, return, reconciliation."""

from __future__ import annotations

import html
import threading
import uuid
from datetime import datetime, timedelta

import pytest
import requests
import time_machine
import zeep
from django.db import transaction
from marelle.plugin_api import (
    NotificationData,
    PaymentRequest,
    ProviderRejected,
    ProviderUnavailable,
)
from marelle.plugin_api.manager import ProviderConfigurationError, create_payment_provider
from marelle.plugin_api.testing import PaymentProviderContract, closed_port
from marelle_payfip.client import PRODUCTION_BASE_URL
from marelle_payfip.fake_server import PARIS, FakePayFiP
from marelle_payfip.plugin import ENV_URL, PayFiPProvider

from tests.plugins.payments_support import URLCONF, csrf_form, resolve_localhost, world_fixture
from tests.support import ALPHA_YAML

OUTCOME_CODES = {"paid": "P", "refused": "R", "cancelled": "A"}


def payfip(server: FakePayFiP, **settings) -> PayFiPProvider:
    return create_payment_provider("payfip", {"numcli": "123456", "service_url": server.url, "timeout_seconds": 2,
                                              **settings}, provider_class=PayFiPProvider)


def request_for(payment_id=1, **changes) -> PaymentRequest:
    values = dict(payment_id=payment_id, reference=f"M261005{payment_id:08d}", amount_cents=1234,
                  payer_email="famille@example.fr", description="Factures SCO-2026-000042 – Commune d'Alpha-sur-Rhône",
                  return_url=f"https://alpha.example/paiement/{payment_id}/retour/",
                  notification_url="https://alpha.example/paiement/notification/payfip/scolaire/",
                  regie_code="scolaire", commune_slug="alpha")
    values.update(changes)
    return PaymentRequest(**values)


@pytest.fixture
def fake():
    with FakePayFiP() as server:
        yield server


# --- The contract suite ---------------------------------------------------------------------


class TestPayFiPContract(PaymentProviderContract):
    provider_class = PayFiPProvider
    bad_settings = [
        ({"numcli": "12345"}, "format invalide '12345' (motif attendu : ^[0-9]{6}$)"),
        ({"environment": "prod"}, "valeurs possibles : 'test', 'activation' ou 'production'"),
        ({"service_url": "ftp://payfip"}, "adresse du service PayFiP invalide"),
        ({"max_amount_cents": 50}, "supérieur ou égal à 100"),
        ({"fallback_email": "pas-un-courriel"}, "adresse e-mail invalide"),
    ]

    @pytest.fixture
    def server(self):
        with FakePayFiP() as server:
            yield server

    def settings_for(self, server):
        return {"numcli": "123456", "service_url": server.url, "timeout_seconds": 2}

    def complete(self, server, provider_reference, outcome):
        if outcome == "expired":  # purged by PayFiP's nightly clean-up: P1
            del server.operations[provider_reference]
        else:
            server.complete(provider_reference, OUTCOME_CODES[outcome], notify=False)

    def notification_for(self, server, provider_reference):
        body = f"idOp={provider_reference}"
        return NotificationData(method="POST", form={"idOp": provider_reference}, body=body.encode(),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})

    def unreachable_settings(self, server):
        return {"numcli": "123456", "service_url": f"http://127.0.0.1:{closed_port()}/tpa", "timeout_seconds": 2}


# --- The provider against the fake ------------------------------------------------------------


def test_service_address_comes_from_the_setting_then_the_environment_never_in_production(monkeypatch, fake):
    monkeypatch.setenv(ENV_URL, "http://127.0.0.1:8890/tpa/")
    assert payfip(fake).base_url == fake.url
    assert create_payment_provider("payfip", {"numcli": "123456"}, provider_class=PayFiPProvider).base_url == \
        "http://127.0.0.1:8890/tpa"
    production = create_payment_provider("payfip", {"numcli": "123456", "environment": "production"},
                                         provider_class=PayFiPProvider)
    assert production.base_url == PRODUCTION_BASE_URL == "https://www.payfip.gouv.fr/tpa"
    monkeypatch.delenv(ENV_URL)
    assert create_payment_provider("payfip", {"numcli": "123456"}, provider_class=PayFiPProvider).base_url == \
        PRODUCTION_BASE_URL


def test_start_sends_payfip_fields_and_redirects_to_the_payment_page(fake):
    started = payfip(fake, objet_prefix="Cantine").start(request_for(42))
    operation, fields = fake.calls[-1]
    assert operation == "creerPaiementSecurise"
    assert fields["numcli"] == "123456" and fields["saisie"] == "T" and fields["refdet"] == "M26100500000042"
    assert fields["montant"] == "1234"  # cents
    assert fields["exer"] == str(datetime.now(PARIS).year)
    assert fields["objet"] == "Cantine Factures SCO 2026 000042 Commune d Alpha sur Rhone"  # ASCII, ≤ 100
    assert fields["urlnotif"] == "https://alpha.example/paiement/notification/payfip/scolaire/"
    assert fields["urlredirect"] == "https://alpha.example/paiement/42/retour/"
    assert started.redirect_url == f"{fake.url}/paiementws.web?idop={started.provider_reference}"
    assert len(started.provider_reference) == 36


def test_amounts_e_mail_and_urls_are_checked_before_calling_payfip(fake):
    provider = payfip(fake, max_amount_cents=5000)
    for amount in (99, 5001):
        with pytest.raises(ProviderRejected, match="PayFiP accepte les paiements de 1,00 € à 50,00 €") as raised:
            provider.start(request_for(amount_cents=amount))
        assert raised.value.code == "montant"
    with pytest.raises(ProviderRejected, match="adresse e-mail valide"):
        provider.start(request_for(payer_email="sans-arobase"))
    assert fake.calls == []
    payfip(fake, fallback_email="regie@alpha.example").start(request_for(payer_email=""))
    assert fake.calls[-1][1]["mel"] == "regie@alpha.example"
    production = payfip(fake, environment="production")
    with pytest.raises(ProviderRejected, match="https"):
        production.start(request_for(return_url="http://alpha.example/paiement/1/retour/"))


@pytest.mark.parametrize("code, message", [("R3", "référence de paiement"), ("A2", "adresse e-mail du foyer"),
                                           ("T2", "inconnu de la DGFiP"), ("Q9", "Erreur")])
def test_functional_faults_at_creation_are_rejections_with_their_code(fake, code, message):
    fake.create_fault = code
    with pytest.raises(ProviderRejected, match=message) as raised:
        payfip(fake).start(request_for())
    assert raised.value.code == code and f"(code {code})" in raised.value.message


@pytest.mark.parametrize("fault", ["technical", "timeout", "http_error", "malformed", "closed"])
def test_technical_trouble_is_provider_unavailable(fake, fault):
    provider = payfip(fake)
    reference = provider.start(request_for()).provider_reference
    if fault == "technical":
        fake.technical_fault = "TechIndisponibiliteErreur"
    elif fault == "timeout":
        fake.delay = 3  # the régie's timeout is 2 s
    elif fault == "http_error":
        fake.http_error = True
    elif fault == "malformed":
        fake.malformed = True
    else:
        provider = payfip(fake, service_url=f"http://127.0.0.1:{closed_port()}/tpa")
    for call in (lambda: provider.start(request_for(2)), lambda: provider.fetch_status(reference)):
        with pytest.raises(ProviderUnavailable) as raised:
            call()
        assert "réessayez dans quelques minutes" in raised.value.message


def test_p5_is_pending_then_expired_two_hours_after_the_start_and_p1_is_expired(fake):
    provider = payfip(fake)
    reference = provider.start(request_for()).provider_reference
    now = datetime.now(PARIS)
    assert provider.fetch_status(reference, started_at=now - timedelta(minutes=30)).status == "pending"
    late = provider.fetch_status(reference, started_at=now - timedelta(hours=2, minutes=1))
    assert (late.status, late.detail) == ("expired", "P5 : résultat non connu depuis plus de 2 heures")
    assert provider.fetch_status(str(uuid.uuid4())).status == "expired"  # P1


def test_paid_status_carries_amount_date_and_refdet(fake):
    provider = payfip(fake)
    reference = provider.start(request_for(7)).provider_reference
    with time_machine.travel(datetime(2026, 11, 23, 14, 5, tzinfo=PARIS), tick=False):
        fake.complete(reference, "V", notify=False)
    status = provider.fetch_status(reference)
    assert (status.status, status.amount_cents, status.reference) == ("paid", 1234, "M26100500000007")
    assert status.paid_at == datetime(2026, 11, 23, 14, 5, tzinfo=PARIS)
    assert "prélèvement" in status.detail and "mel" not in status.raw


def test_an_operation_of_another_numcli_is_refused(fake):
    provider = payfip(fake)
    reference = provider.start(request_for()).provider_reference
    fake.complete(reference, "P", notify=False)
    fake.operations[reference].numcli = "654321"
    with pytest.raises(ProviderRejected, match="autre numéro client"):
        provider.fetch_status(reference)


@pytest.mark.parametrize("data", [
    NotificationData(method="POST", form={"idOp": "0bcc245a-e742-11f1-a073-02fc00000001"}),
    NotificationData(method="POST", form={"idop": "0bcc245a-e742-11f1-a073-02fc00000001"}),
    NotificationData(method="POST", query={"idop": "0bcc245a-e742-11f1-a073-02fc00000001"}),
])
def test_notification_accepts_idop_in_both_spellings_from_body_or_query(fake, data):
    event = payfip(fake).parse_notification(data)
    assert event.provider_reference == "0bcc245a-e742-11f1-a073-02fc00000001" and event.event_id == ""


def test_check_account_reads_the_regie_labels(fake):
    assert payfip(fake).check_account() == "PayFiP 123456 : COMMUNE D ALPHA – REGIE SCOLAIRE – PORTAIL FAMILLE"
    strict = FakePayFiP(clients={"111111": ("A", "B", "C")}).start()
    try:
        with pytest.raises(ProviderRejected, match="inconnu de la DGFiP"):
            payfip(strict).check_account()
    finally:
        strict.stop()


def test_fake_card_page_has_the_three_buttons_and_a_fifteen_minute_life(fake):
    provider = payfip(fake)
    started = provider.start(request_for())
    page = requests.get(started.redirect_url, timeout=5)
    assert page.status_code == 200
    for button in ('value="P">Payer<', 'value="R">Refuser', 'value="A">Annuler<'):
        assert button in text(page)
    assert "12,34 €" in text(page)
    assert requests.get(f"{fake.url}/paiementws.web?idop=inconnu", timeout=5).status_code == 404
    with time_machine.travel(datetime.now(PARIS) + timedelta(minutes=16)):
        assert requests.get(started.redirect_url, timeout=5).status_code == 410
    other = provider.start(request_for(2))
    choice = requests.post(f"{fake.url}/paiementws.web", data={"idop": other.provider_reference, "resultrans": "R"},
                           allow_redirects=False, timeout=15)
    assert choice.status_code == 303
    assert choice.headers["Location"] == f"https://alpha.example/paiement/2/retour/?idop={other.provider_reference}"
    assert requests.get(other.redirect_url, timeout=5).status_code == 410  # already used


def test_fake_serves_a_wsdl_that_a_soap_client_can_use(fake):
    client = zeep.Client(f"{fake.url}/services/securite?wsdl")
    answer = client.service.recupererDetailClient({"numCli": "123456"})
    assert answer.libelleN1 == "COMMUNE D ALPHA"


def test_the_fake_runs_as_a_command():
    import subprocess
    import sys

    port = closed_port()
    process = subprocess.Popen([sys.executable, "-m", "marelle_payfip.fake_server", "--port", str(port)],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert f"MARELLE_PAYFIP_URL=http://127.0.0.1:{port}/tpa" in line
        assert "COLLECTIVITE 604512" in zeep.Client(f"http://127.0.0.1:{port}/tpa/services/securite?wsdl") \
            .service.recupererDetailClient({"numCli": "604512"}).libelleN1
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- End to end through the portal ----------------------------------------------------------

YAML = ALPHA_YAML.replace('numcli: "123456"', 'numcli: "123456"\n        timeout_seconds: 2')


world = world_fixture("paiementpayfip", families=24, yaml_text=YAML)


@pytest.fixture
def portal(world, django_db_blocker, settings, monkeypatch):
    """The portal with the payment pages, a fake PayFiP the régie talks to, *.localhost."""
    settings.ROOT_URLCONF = URLCONF
    resolve_localhost(monkeypatch)
    with FakePayFiP() as server, django_db_blocker.unblock():
        monkeypatch.setenv(ENV_URL, server.url)
        world.fake = server
        yield world


def text(response) -> str:
    return html.unescape(response.text)


def start_in_browser(portal, payer=None):
    """The family has selected its invoice and clicked "Payer": the attempt, the browser, and
    the answer of /paiement/<id>/demarrer/ (not followed)."""
    payer = payer or portal.take_payer()
    payment_id = portal.start_payment(payer)
    browser = portal.browser(payer)
    response = browser.get(f"{portal.base}/paiement/{payment_id}/demarrer/", allow_redirects=False, timeout=15)
    return payer, payment_id, browser, response


def pay_on_the_card_page(portal, browser, response, choice: str):
    """Follow the redirect to PayFiP's page and click a button; returns the final page."""
    assert response.status_code == 302, response.text
    page = browser.get(response.headers["Location"], timeout=15)
    assert "Payer" in text(page)
    idop = response.headers["Location"].rsplit("=", 1)[1]
    return idop, browser.post(f"{portal.fake.url}/paiementws.web", data={"idop": idop, "resultrans": choice},
                              timeout=15)


def test_success_notification_before_the_browser_returns(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    idop = response.headers["Location"].rsplit("=", 1)[1]
    attempt = portal.payment(payment_id)
    assert attempt.provider_reference == idop and attempt.state == "created"
    browser.get(response.headers["Location"], timeout=15)
    # The fake notifies Marelle before redirecting the browser: paid before the return.
    redirect = portal.fake.complete(idop, "P")
    assert portal.fake.operations[idop].notifications == [200]
    assert portal.payment(payment_id).state == "paid"
    invoice = portal.invoice(payer.invoice_id)
    assert (invoice.status, invoice.paid_cents) == ("paid", payer.total_cents)
    page = browser.get(redirect, timeout=15)
    assert page.status_code == 200 and "Paiement validé" in text(page) and payer.invoice_number in text(page)
    records = portal.notifications(payment_id)
    assert [r.payload["raw"]["source"] for r in records] == ["notification"]  # the return asked nothing more


def test_refusal(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    _, page = pay_on_the_card_page(portal, browser, response, "R")
    assert "Paiement refusé" in text(page) and "aucune somme n'a été prélevée" in text(page)
    assert portal.payment(payment_id).state == "refused"
    assert portal.invoice(payer.invoice_id).status == "to_pay"


def test_cancellation(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    _, page = pay_on_the_card_page(portal, browser, response, "A")
    assert "Paiement annulé" in text(page)
    assert portal.payment(payment_id).state == "cancelled"
    assert portal.invoice(payer.invoice_id).status == "to_pay"


def test_cancel_then_pay_within_the_idop_validity_ends_paid(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    idop, _ = pay_on_the_card_page(portal, browser, response, "A")
    assert portal.payment(payment_id).state == "cancelled"
    portal.fake.operations[idop].resultrans = "P"  # the payer went back and paid
    assert portal.fake.send_notification(idop) == 200
    assert portal.payment(payment_id).state == "paid"
    assert portal.invoice(payer.invoice_id).status == "paid"


def reconcile(portal, **kwargs):
    from marelle.billing.reconciliation import reconcile_pending
    from marelle.payments.services import fetch_status_for_payment

    return portal.run(lambda: reconcile_pending(older_than=timedelta(0), fetch_status=fetch_status_for_payment,
                                                **kwargs))


def test_expiry_through_reconciliation_p1_and_p5_after_two_hours(portal):
    _, purged_id, _, response = start_in_browser(portal)
    del portal.fake.operations[response.headers["Location"].rsplit("=", 1)[1]]  # PayFiP purged it: P1
    _, waiting_id, _, _ = start_in_browser(portal)  # opened, never paid: P5
    report = reconcile(portal)
    assert portal.payment(purged_id).state == "expired"
    assert portal.payment(waiting_id).state == "pending"
    assert report["expired"] >= 1 and report["pending"] >= 1
    with time_machine.travel(datetime.now(PARIS) + timedelta(hours=2, minutes=5)):
        reconcile(portal)
    assert portal.payment(waiting_id).state == "expired"


def test_duplicate_and_late_notifications_change_nothing(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    idop, page = pay_on_the_card_page(portal, browser, response, "P")
    assert "Paiement validé" in text(page)
    for _ in range(3):
        assert portal.fake.send_notification(idop) == 200
    assert portal.payment(payment_id).state == "paid"
    invoice = portal.invoice(payer.invoice_id)
    assert invoice.paid_cents == payer.total_cents  # counted once
    # The already-paid attempt is not asked again: duplicates are recorded by the first only.
    assert len(portal.notifications(payment_id)) == 1


def test_out_of_order_a_stale_refusal_never_undoes_a_success(portal):
    """PayFiP answers the current state: whatever order the calls come in, the payment ends as
    the look-up says, and a success is never undone."""
    payer, payment_id, browser, response = start_in_browser(portal)
    idop, _ = pay_on_the_card_page(portal, browser, response, "P")
    portal.fake.operations[idop].resultrans = "R"  # a stale (or forged) state cannot undo a success
    assert portal.fake.send_notification(idop) == 200
    assert portal.payment(payment_id).state == "paid"


def test_late_success_after_the_reconciliation_expired_the_attempt(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    idop = response.headers["Location"].rsplit("=", 1)[1]
    with time_machine.travel(datetime.now(PARIS) + timedelta(hours=3)):
        reconcile(portal)  # P5 three hours after the start: expired
    assert portal.payment(payment_id).state == "expired"
    portal.fake.complete(idop, "P")  # the bank's answer arrives after all, with its notification
    assert portal.fake.operations[idop].notifications == [200]
    assert portal.payment(payment_id).state == "paid"
    assert portal.invoice(payer.invoice_id).status == "paid"
    page = browser.get(f"{portal.base}/paiement/{payment_id}/retour/?idop={idop}", timeout=15)
    assert "Paiement validé" in text(page)


def test_browser_returns_without_any_notification(portal):
    portal.fake.notify = False
    payer, payment_id, browser, response = start_in_browser(portal)
    idop, page = pay_on_the_card_page(portal, browser, response, "P")
    assert portal.fake.operations[idop].notifications == []
    assert "Paiement validé" in text(page)
    assert portal.payment(payment_id).state == "paid"


def test_family_never_returns_and_no_notification_reconciliation_settles_it(portal):
    portal.fake.notify = False
    payer, payment_id, browser, response = start_in_browser(portal)
    idop = response.headers["Location"].rsplit("=", 1)[1]
    portal.fake.complete(idop, "P")  # paid, tab closed, notification lost
    assert portal.payment(payment_id).state == "created"
    reconcile(portal)
    assert portal.payment(payment_id).state == "paid"
    assert portal.invoice(payer.invoice_id).status == "paid"


def test_timeout_at_start_clear_message_nothing_lost_then_retry(portal):
    portal.fake.delay = 3  # the régie's timeout is 2 s
    payer, payment_id, browser, response = start_in_browser(portal)
    assert response.status_code == 503
    assert "Service de paiement indisponible" in text(response) and "rien n'est perdu" in text(response)
    attempt = portal.payment(payment_id)
    assert (attempt.state, attempt.provider_reference) == ("created", "")
    assert portal.invoice(payer.invoice_id).status == "to_pay"
    portal.fake.delay = 0
    retry = browser.post(f"{portal.base}/paiement/{payment_id}/demarrer/", data=csrf_form(response.text),
                         allow_redirects=False, timeout=15)
    assert retry.status_code == 302 and retry.headers["Location"].startswith(portal.fake.url)
    assert portal.payment(payment_id).provider_reference


def test_connection_refused_at_start_and_at_lookup_is_retried_later(portal, monkeypatch):
    monkeypatch.setenv(ENV_URL, f"http://127.0.0.1:{closed_port()}/tpa")
    payer, payment_id, browser, response = start_in_browser(portal)
    assert response.status_code == 503 and "ne répond pas" in text(response)
    assert portal.payment(payment_id).state == "created"

    monkeypatch.setenv(ENV_URL, portal.fake.url)
    response = browser.get(f"{portal.base}/paiement/{payment_id}/demarrer/", allow_redirects=False, timeout=15)
    idop = response.headers["Location"].rsplit("=", 1)[1]
    portal.fake.complete(idop, "P", notify=False)
    monkeypatch.setenv(ENV_URL, f"http://127.0.0.1:{closed_port()}/tpa")  # PayFiP down when the family returns
    page = browser.get(f"{portal.base}/paiement/{payment_id}/retour/?idop={idop}", timeout=15)
    assert "en attente de confirmation bancaire" in text(page) and "rien n'est perdu" in text(page)
    report = reconcile(portal)
    assert report["errors"] >= 1 and portal.payment(payment_id).state == "created"
    monkeypatch.setenv(ENV_URL, portal.fake.url)  # back up: the next run settles it
    reconcile(portal)
    assert portal.payment(payment_id).state == "paid"


def test_forged_notifications_are_looked_up_and_ignored(portal):
    url = f"{portal.base}/paiement/notification/payfip/"
    forged = str(uuid.uuid4())
    answer = requests.post(url, data={"idOp": forged}, timeout=15)
    assert (answer.status_code, answer.text) == (200, "ignoré")

    def unknown_records():
        from marelle.billing.models import ProviderNotification

        return list(ProviderNotification.objects.filter(payment=None, payload__raw__event__idOp=forged)
                    .values_list("outcome", flat=True))

    assert portal.run(unknown_records) == ["référence inconnue : ignorée"]
    # A real idOp of an unpaid payment: looked up at PayFiP (P5), nothing settled.
    payer, payment_id, _, response = start_in_browser(portal)
    idop = response.headers["Location"].rsplit("=", 1)[1]
    assert requests.post(url, data={"idOp": idop}, timeout=15).status_code == 200
    assert portal.payment(payment_id).state == "pending"
    assert portal.invoice(payer.invoice_id).status == "to_pay"
    assert requests.post(url, data={"bonjour": "x"}, timeout=15).status_code == 400
    assert requests.post(f"{portal.base}/paiement/notification/inconnu/", data={"idOp": idop},
                         timeout=15).status_code == 404
    assert requests.get(url, timeout=15).status_code == 405


def test_notification_answers_503_while_the_payment_is_locked(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    idop = response.headers["Location"].rsplit("=", 1)[1]
    portal.fake.complete(idop, "P", notify=False)
    locked, release = threading.Event(), threading.Event()

    def hold():
        from marelle.billing.models import PaymentAttempt

        with transaction.atomic():
            PaymentAttempt.objects.select_for_update().get(pk=payment_id)
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=lambda: portal.run(hold))
    holder.start()
    try:
        assert locked.wait(10)
        answer = requests.post(f"{portal.base}/paiement/notification/payfip/scolaire/", data={"idOp": idop},
                               timeout=20)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    finally:
        release.set()
        holder.join()
    assert portal.payment(payment_id).state == "created"
    assert portal.fake.send_notification(idop) == 200  # PayFiP's retry
    assert portal.payment(payment_id).state == "paid"


def test_amount_reported_differs_flagged_not_settled(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    idop = response.headers["Location"].rsplit("=", 1)[1]
    portal.fake.operations[idop].montant = "100"
    portal.fake.complete(idop, "P", notify=False)
    page = browser.get(f"{portal.base}/paiement/{payment_id}/retour/", timeout=15)
    assert "en cours de vérification par la régie" in text(page)
    attempt = portal.payment(payment_id)
    assert attempt.state == "pending" and "1,00 €" in attempt.anomaly
    assert portal.invoice(payer.invoice_id).status == "to_pay"


def test_creation_refused_by_payfip_cancels_the_attempt_with_a_clear_message(portal):
    portal.fake.create_fault = "A2"
    payer, payment_id, browser, response = start_in_browser(portal)
    assert response.status_code == 200 and "Paiement impossible" in text(response)
    assert "adresse e-mail du foyer" in text(response) and "(code A2)" in text(response)
    assert portal.payment(payment_id).state == "cancelled"
    assert portal.invoice(payer.invoice_id).status == "to_pay"


def test_only_the_family_sees_and_starts_its_payment(portal):
    payer, payment_id, _, _ = start_in_browser(portal)
    stranger = portal.browser(portal.take_payer())
    for path in ("demarrer", "retour"):
        assert stranger.get(f"{portal.base}/paiement/{payment_id}/{path}/", allow_redirects=False,
                            timeout=15).status_code == 404
    anonymous = portal.browser()
    answer = anonymous.get(f"{portal.base}/paiement/{payment_id}/demarrer/", allow_redirects=False, timeout=15)
    assert answer.status_code == 302 and "/compte/" in answer.headers["Location"]


def test_a_started_payment_is_not_started_twice(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    assert response.status_code == 302
    again = browser.get(f"{portal.base}/paiement/{payment_id}/demarrer/", allow_redirects=False, timeout=15)
    assert again.status_code == 409 and "déjà été ouvert" in text(again)
    assert len([c for c in portal.fake.calls if c[0] == "creerPaiementSecurise"]) == 1


def test_misconfigured_regie_is_a_clear_message(portal):
    payer = portal.take_payer()
    payment_id = portal.start_payment(payer)

    def break_snapshot():
        from marelle.billing.models import PaymentAttempt

        PaymentAttempt.objects.filter(pk=payment_id).update(settings_snapshot={"numcli": "12"})

    portal.run(break_snapshot)
    response = portal.browser(payer).get(f"{portal.base}/paiement/{payment_id}/demarrer/", timeout=15)
    assert response.status_code == 503 and "momentanément indisponible pour cette régie" in text(response)
    with pytest.raises(ProviderConfigurationError, match="numcli : format invalide"):
        create_payment_provider("payfip", {"numcli": "12"})


def test_a_flood_of_notifications_from_one_address_is_told_to_wait(portal, settings):
    settings.PAYMENT_NOTIFICATIONS_PER_MINUTE = 2
    url = f"{portal.base}/paiement/notification/payfip/"
    answers = [requests.post(url, data={"idOp": str(uuid.uuid4())}, timeout=15) for _ in range(4)]
    assert answers[-1].status_code == 429 and answers[-1].headers["Retry-After"] == "60"
    assert {a.status_code for a in answers} <= {200, 429}
