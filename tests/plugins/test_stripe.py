"""Stripe: the plugin against its local fake API (the real ``stripe`` SDK over HTTP), then end
to end through the portal: start, hosted page, signed webhooks, return, reconciliation,
refunds, Stripe Connect."""

from __future__ import annotations

import html
import json
import statistics
import time
from datetime import datetime, timedelta

import pytest
import requests
import time_machine
from marelle.plugin_api import (
    NotificationData,
    PaymentItem,
    PaymentRequest,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
)
from marelle.plugin_api.manager import create_payment_provider
from marelle.plugin_api.testing import PaymentProviderContract, closed_port
from marelle_stripe.fake_server import FakeStripe, sign
from marelle_stripe.plugin import (
    ENABLED_EVENTS,
    ENV_API_BASE,
    PARIS,
    PRODUCTION_API_BASE,
    StripeProvider,
)

from tests.plugins.payments_support import (
    STRIPE_KEY_ENV,
    STRIPE_WEBHOOK_ENV,
    URLCONF,
    csrf_form,
    resolve_localhost,
    stripe_yaml,
    world_fixture,
)

KEY, WHSEC = "sk_test_marelle0123456789", "whsec_marelle_test_secret"
ENVIRON = {"STRIPE_KEY": KEY, "STRIPE_WHSEC": WHSEC}
FROZEN = datetime(2026, 11, 23, 14, 5, 20, tzinfo=PARIS)


def stripe_provider(server: FakeStripe | None, environ=ENVIRON, **settings) -> StripeProvider:
    values = {"secret_key_env": "STRIPE_KEY", "webhook_secret_env": "STRIPE_WHSEC", "timeout_seconds": 2,
              "max_network_retries": 0}
    if server is not None:
        values["api_base"] = server.url
    return create_payment_provider("stripe", {**values, **settings}, environ=environ, provider_class=StripeProvider)


def request_for(payment_id=1, **changes) -> PaymentRequest:
    values = dict(payment_id=payment_id, reference=f"M261005{payment_id:08d}", amount_cents=4250,
                  payer_email="famille@example.fr", description="Factures SCO-2026-000042, SCO-2026-000043",
                  return_url=f"https://alpha.example/paiement/{payment_id}/retour/",
                  notification_url="https://alpha.example/paiement/notification/stripe/scolaire/",
                  regie_code="scolaire", commune_slug="alpha",
                  invoice_numbers=("SCO-2026-000042", "SCO-2026-000043"),
                  items=(PaymentItem("Facture SCO-2026-000042", 3000), PaymentItem("Facture SCO-2026-000043", 1250)))
    values.update(changes)
    return PaymentRequest(**values)


def signed(event: dict, secret: str = WHSEC, timestamp: int | None = None) -> NotificationData:
    payload = json.dumps(event)
    return NotificationData(method="POST", body=payload.encode(),
                            headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload, secret,
                                                                                                  timestamp)})


def event_about(server: FakeStripe, session_id: str, kind: str = "checkout.session.completed") -> dict:
    return server.emit(kind, server.session(session_id), server.account_of(session_id), notify=False)


@pytest.fixture
def fake():
    with FakeStripe() as server:
        yield server


# --- The contract suite ---------------------------------------------------------------------


class TestStripeContract(PaymentProviderContract):
    provider_class = StripeProvider
    # Stripe has no "cancelled by the payer": the session stays open until it expires.
    outcomes = ("paid", "refused", "expired")
    bad_settings = [
        ({"connected_account": "compte-commune"}, "format invalide 'compte-commune'"),
        ({"session_expiry_minutes": 10}, "supérieur ou égal à 30"),
        ({"session_expiry_minutes": 2000}, "inférieur ou égal à 1440"),
        ({"secret_key_env": "sk_test_123"}, "nom d'une variable d'environnement"),
        ({"statement_descriptor_suffix": "CANTINE*"}, "libellé de relevé bancaire invalide"),
        ({"api_base": "ftp://stripe"}, "adresse de l'API Stripe invalide"),
    ]

    @pytest.fixture
    def server(self):
        with FakeStripe() as server:
            yield server

    def settings_for(self, server):
        return {"secret_key_env": "STRIPE_KEY", "webhook_secret_env": "STRIPE_WHSEC", "api_base": server.url,
                "timeout_seconds": 2, "max_network_retries": 0}

    def environ(self, server):
        return ENVIRON

    def complete(self, server, provider_reference, outcome):
        if outcome == "paid":
            server.pay(provider_reference, notify=False)
        elif outcome == "refused":  # a SEPA debit that bounces
            server.pay(provider_reference, delayed=True, notify=False)
            server.settle_async(provider_reference, False, notify=False)
        else:
            server.expire(provider_reference, notify=False)

    def notification_for(self, server, provider_reference):
        return signed(event_about(server, provider_reference))

    def unreachable_settings(self, server):
        return {**self.settings_for(server), "api_base": f"http://127.0.0.1:{closed_port()}"}


# --- The provider against the fake ------------------------------------------------------------


def test_api_address_comes_from_the_setting_then_the_environment_never_with_a_live_key(monkeypatch, fake):
    monkeypatch.setenv(ENV_API_BASE, "http://127.0.0.1:8891/")
    assert stripe_provider(fake).api_base == fake.url
    assert stripe_provider(None).api_base == "http://127.0.0.1:8891"
    live = stripe_provider(None, environ={"STRIPE_KEY": "sk_live_abc", "STRIPE_WHSEC": WHSEC})
    assert live.api_base == PRODUCTION_API_BASE == "https://api.stripe.com"
    # Not even the régie's setting sends a live key elsewhere.
    assert stripe_provider(fake, environ={"STRIPE_KEY": "sk_live_abc", "STRIPE_WHSEC": WHSEC}).api_base == \
        PRODUCTION_API_BASE
    monkeypatch.delenv(ENV_API_BASE)
    assert stripe_provider(None).api_base == PRODUCTION_API_BASE


def test_start_creates_a_checkout_session_with_one_line_per_invoice(fake):
    with time_machine.travel(FROZEN, tick=False):
        started = stripe_provider(fake, session_expiry_minutes=45, statement_descriptor_suffix="CANTINE").start(
            request_for(42))
    call = fake.calls[-1]
    assert (call["method"], call["path"]) == ("POST", "/v1/checkout/sessions")
    params = call["params"]
    assert (params["mode"], params["currency"], params["locale"]) == ("payment", "eur", "fr")
    assert [(i["price_data"]["product_data"]["name"], i["price_data"]["unit_amount"], i["quantity"])
            for i in params["line_items"]] == [("Facture SCO-2026-000042", "3000", "1"),
                                               ("Facture SCO-2026-000043", "1250", "1")]
    metadata = {"tenant": "alpha", "regie": "scolaire", "payment_id": "42", "reference": "M26100500000042"}
    assert params["metadata"] == metadata and params["payment_intent_data"]["metadata"] == metadata
    assert params["payment_intent_data"]["statement_descriptor_suffix"] == "CANTINE"
    assert params["client_reference_id"] == "M26100500000042" and params["customer_email"] == "famille@example.fr"
    assert params["success_url"] == "https://alpha.example/paiement/42/retour/?session_id={CHECKOUT_SESSION_ID}"
    assert params["cancel_url"] == "https://alpha.example/paiement/42/retour/?abandon=1"
    # 14:05:20 → next minute 14:06:00, plus 45 minutes.
    assert int(params["expires_at"]) == int(datetime(2026, 11, 23, 14, 51, tzinfo=PARIS).timestamp())
    assert call["headers"]["authorization"] == f"Bearer {KEY}" and "stripe-account" not in call["headers"]
    assert call["headers"]["idempotency-key"] == f"marelle:alpha:42:M26100500000042:{params['expires_at']}"
    assert started.provider_reference.startswith("cs_test_")
    assert started.redirect_url == f"{fake.url}/checkout/{started.provider_reference}"
    assert fake.session(started.provider_reference)["amount_total"] == 4250


def test_without_items_one_line_carries_the_description(fake):
    stripe_provider(fake).start(request_for(items=(), payer_email="pas-un-courriel"))
    params = fake.calls[-1]["params"]
    assert [i["price_data"]["product_data"]["name"] for i in params["line_items"]] == [
        "Factures SCO-2026-000042, SCO-2026-000043"]
    assert "customer_email" not in params
    with pytest.raises(ValueError, match="add up"):
        request_for(items=(PaymentItem("Facture", 100),))


def test_amounts_and_https_are_checked_before_calling_stripe(fake):
    provider = stripe_provider(fake)
    with pytest.raises(ProviderRejected, match="de 0,50 € à") as raised:
        provider.start(request_for(amount_cents=49, items=()))
    assert raised.value.code == "montant" and fake.calls == []
    live = stripe_provider(fake, environ={"STRIPE_KEY": "sk_live_abc", "STRIPE_WHSEC": WHSEC})
    with pytest.raises(ProviderRejected, match="https"):
        live.start(request_for(return_url="http://alpha.example/paiement/1/retour/"))


def test_a_retry_after_a_timeout_gets_the_same_session_back(fake):
    provider = stripe_provider(fake)
    with time_machine.travel(FROZEN, tick=True):
        fake.delay = 2.5  # the régie's timeout is 2 s: the session is created after we gave up
        with pytest.raises(ProviderUnavailable, match="réessayez dans quelques minutes"):
            provider.start(request_for(7))
        fake.delay = 0
        time.sleep(0.6)
        again = provider.start(request_for(7))
    sessions = [o for o in fake.objects.values() if o["object"] == "checkout.session"]
    assert [s["id"] for s in sessions] == [again.provider_reference]  # one session only


@pytest.mark.parametrize("fault", ["timeout", "http_error", "malformed", "closed"])
def test_technical_trouble_is_provider_unavailable(fake, fault):
    provider = stripe_provider(fake, timeout_seconds=1)
    reference = provider.start(request_for()).provider_reference
    if fault == "timeout":
        fake.delay = 1.3
    elif fault == "http_error":
        fake.http_error = True
    elif fault == "malformed":
        fake.malformed = True
    else:
        provider = stripe_provider(None, api_base=f"http://127.0.0.1:{closed_port()}")
    for call in (lambda: provider.start(request_for(2)), lambda: provider.fetch_status(reference),
                 lambda: provider.refund(RefundRequest(payment_id=1, provider_reference=reference, amount_cents=100))):
        with pytest.raises(ProviderUnavailable) as raised:
            call()
        assert "réessayez dans quelques minutes" in raised.value.message


def test_refusals_by_stripe_are_rejections_with_their_code(fake):
    provider = stripe_provider(fake)
    with pytest.raises(ProviderRejected) as raised:
        provider.fetch_status("cs_test_inconnue")
    assert raised.value.code == "resource_missing"
    bad_key = stripe_provider(fake, environ={"STRIPE_KEY": "pk_test_oops", "STRIPE_WHSEC": WHSEC})
    with pytest.raises(ProviderRejected, match="clé ou compte connecté à vérifier") as raised:
        bad_key.start(request_for())
    assert raised.value.code == "api_key_invalid"


def test_status_of_a_delayed_payment_pending_then_paid_or_refused_and_a_declined_card_stays_open(fake):
    provider = stripe_provider(fake)
    first, second, third = (provider.start(request_for(n)).provider_reference for n in (1, 2, 3))
    for reference in (first, second):
        fake.pay(reference, delayed=True, notify=False)
        status = provider.fetch_status(reference)
        assert (status.status, status.detail, status.amount_cents) == ("pending", "paiement différé en cours", 4250)
    fake.settle_async(first, True, notify=False)
    fake.settle_async(second, False, notify=False)
    assert provider.fetch_status(first).status == "paid"
    assert provider.fetch_status(second).status == "refused"
    fake.decline(third, notify=False)
    status = provider.fetch_status(third)
    assert (status.status, status.detail) == ("pending", "session ouverte (dernier essai : card_declined)")


def test_paid_status_carries_amount_date_reference_and_refunded_amount(fake):
    provider = stripe_provider(fake)
    reference = provider.start(request_for(9)).provider_reference
    with time_machine.travel(FROZEN, tick=False):
        fake.pay(reference, notify=False)
    status = provider.fetch_status(reference)
    assert (status.status, status.amount_cents, status.reference, status.refunded_cents) == (
        "paid", 4250, "M26100500000009", 0)
    assert status.paid_at == FROZEN
    assert fake.calls[-1]["params"]["expand"] == ["payment_intent.latest_charge"]
    assert "customer_email" not in status.raw and status.raw["payment_intent_status"] == "succeeded"


def test_refund_sends_the_idempotency_key_and_maps_the_answer(fake):
    provider = stripe_provider(fake)
    reference = provider.start(request_for()).provider_reference
    fake.pay(reference, notify=False)
    ask = RefundRequest(payment_id=1, provider_reference=reference, amount_cents=1000, idempotency_key="alpha:1:r1")
    first, again = provider.refund(ask), provider.refund(ask)
    assert first == again and first.status == "succeeded" and first.refund_reference.startswith("re_test_")
    call = fake.calls[-1]
    assert call["path"] == "/v1/refunds" and call["headers"]["idempotency-key"] == "alpha:1:r1"
    assert call["params"]["amount"] == "1000" and call["params"]["metadata"]["checkout_session"] == reference
    assert provider.fetch_status(reference).refunded_cents == 1000  # once, despite the retry
    with pytest.raises(ProviderRejected) as raised:
        provider.refund(RefundRequest(payment_id=1, provider_reference=reference, amount_cents=5000))
    assert raised.value.code == "amount_too_large"
    fake.update_refund(first.refund_reference, "pending", notify=False)
    unpaid = provider.start(request_for(2)).provider_reference
    with pytest.raises(ProviderRejected, match="pas de paiement à rembourser"):
        provider.refund(RefundRequest(payment_id=2, provider_reference=unpaid, amount_cents=100))


def test_connect_calls_carry_the_connected_account_and_sessions_are_scoped_to_it(fake):
    commune = stripe_provider(fake, connected_account="acct_1Commune")
    reference = commune.start(request_for()).provider_reference
    assert fake.calls[-1]["headers"]["stripe-account"] == "acct_1Commune"
    assert fake.account_of(reference) == "acct_1Commune"
    assert commune.fetch_status(reference).status == "pending"
    for other in (stripe_provider(fake), stripe_provider(fake, connected_account="acct_2Autre")):
        with pytest.raises(ProviderRejected) as raised:
            other.fetch_status(reference)
        assert raised.value.code == "resource_missing"
    event = event_about(fake, reference)
    assert event["account"] == "acct_1Commune"
    assert commune.parse_notification(signed(event)).provider_reference == reference
    # Signed with the right secret but about another account: not this régie's.
    assert stripe_provider(fake, connected_account="acct_2Autre").parse_notification(signed(event)) is None
    assert stripe_provider(fake).parse_notification(signed(event)) is None


def test_signature_checks(fake):
    provider = stripe_provider(fake)
    reference = provider.start(request_for()).provider_reference
    event = event_about(fake, reference)
    good = provider.parse_notification(signed(event))
    assert (good.provider_reference, good.event_id, good.kind, good.reference) == (
        reference, event["id"], "checkout.session.completed", "M26100500000001")
    payload = json.dumps(event)
    now = int(time.time())
    forged = [
        signed(event, secret="whsec_another_secret"),
        signed(event, timestamp=now - 301),  # outside the 300 s tolerance: a replay
        NotificationData(method="POST", body=payload.encode(), headers={}),
        NotificationData(method="POST", body=payload.encode(), headers={"Stripe-Signature": "t=1,v1=abc"}),
        NotificationData(method="POST", body=payload.replace("checkout.session.completed", "checkout.session.expired")
                         .encode(), headers={"Stripe-Signature": sign(payload, WHSEC)}),  # body changed
        NotificationData(method="POST", body=b"pas du json", headers={"Stripe-Signature": sign("pas du json", WHSEC)}),
        signed({**event, "livemode": True}),
    ]
    assert [provider.parse_notification(data) for data in forged] == [None] * len(forged)
    assert provider.parse_notification(signed(event, timestamp=now - 299)) == good
    # Secret rotation: any v1 entry may match.
    rotated = sign(payload, "whsec_old") + "," + sign(payload, WHSEC).split(",")[1]
    assert provider.parse_notification(NotificationData(method="POST", body=payload.encode(),
                                                        headers={"Stripe-Signature": rotated})) == good
    other = provider.parse_notification(signed({**event, "type": "payment_intent.created"}))
    assert (other.provider_reference, other.reference, other.kind) == ("", "", "payment_intent.created")


def test_refund_events_name_the_payment_by_its_metadata(fake):
    provider = stripe_provider(fake)
    reference = provider.start(request_for(5)).provider_reference
    fake.pay(reference, notify=False)
    intent = fake.session(reference)["payment_intent"]
    fake.refund({"payment_intent": intent, "amount": "700"}, "", notify=False)  # made in the dashboard
    charge_event = fake.events_of("charge.refunded")[-1]
    parsed = provider.parse_notification(signed(charge_event))
    assert (parsed.provider_reference, parsed.reference, parsed.about_refund) == ("", "M26100500000005", True)
    refund = provider.refund(RefundRequest(payment_id=5, provider_reference=reference, amount_cents=100))
    update = fake.update_refund(refund.refund_reference, "succeeded", notify=False)
    parsed = provider.parse_notification(signed(fake.events_of("refund.updated")[-1]))
    assert (parsed.provider_reference, parsed.about_refund) == (reference, True) and update["amount"] == 100


# --- End to end through the portal ----------------------------------------------------------

YAML = stripe_yaml(timeout_seconds=2, max_network_retries=0)
NOTIFICATION_PATH = "/paiement/notification/stripe/scolaire/"


world = world_fixture("paiementstripe", families=30, yaml_text=YAML)


@pytest.fixture
def portal(world, db, django_db_blocker, settings, monkeypatch):
    """The portal with the payment pages, a fake Stripe the régie talks to, its webhook
    endpoint registered there, *.localhost resolved. (``db``: so that the test database is
    set up when this file runs alone; the commune's data is committed by other connections.)"""
    settings.ROOT_URLCONF = URLCONF
    resolve_localhost(monkeypatch)
    monkeypatch.setenv(STRIPE_KEY_ENV, KEY)
    monkeypatch.setenv(STRIPE_WEBHOOK_ENV, WHSEC)
    with FakeStripe() as server, django_db_blocker.unblock():
        monkeypatch.setenv(ENV_API_BASE, server.url)
        server.add_endpoint(world.base + NOTIFICATION_PATH, secret=WHSEC, enabled_events=ENABLED_EVENTS)
        world.fake = server
        yield world


def text(response) -> str:
    return html.unescape(response.text)


def start_in_browser(portal, payer=None):
    payer = payer or portal.take_payer()
    payment_id = portal.start_payment(payer)
    browser = portal.browser(payer)
    response = browser.get(f"{portal.base}/paiement/{payment_id}/demarrer/", allow_redirects=False, timeout=15)
    return payer, payment_id, browser, response


def session_id(response) -> str:
    return response.headers["Location"].rsplit("/", 1)[1]


def choose(browser, response, choice: str):
    """Follow the redirect to the hosted page and click a button; the final page."""
    assert response.status_code == 302, response.text
    page = browser.get(response.headers["Location"], timeout=15)
    assert "Payer" in text(page) and "Refuser" in text(page) and "Annuler" in text(page)
    return browser.post(response.headers["Location"], data={"choice": choice}, timeout=15)


def reconcile(portal, **kwargs):
    from marelle.billing.reconciliation import reconcile_pending
    from marelle.payments.services import fetch_status_for_payment

    return portal.run(lambda: reconcile_pending(older_than=timedelta(0), fetch_status=fetch_status_for_payment,
                                                **kwargs))


def post_event(portal, event: dict, secret: str = WHSEC, timestamp: int | None = None) -> requests.Response:
    payload = json.dumps(event)
    return requests.post(portal.base + NOTIFICATION_PATH, data=payload.encode(), timeout=15,
                         headers={"Content-Type": "application/json",
                                  "Stripe-Signature": sign(payload, secret, timestamp)})


def api_calls(portal) -> int:
    return len(portal.fake.calls)


def test_success_one_line_per_invoice_event_before_the_browser_returns(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    reference = session_id(response)
    attempt = portal.payment(payment_id)
    assert attempt.provider_reference == reference and attempt.state == "created"
    session = portal.fake.session(reference)
    assert [(i["price_data"]["product_data"]["name"], int(i["price_data"]["unit_amount"]))
            for i in session["line_items"]] == [(f"Facture {payer.invoice_number}", payer.total_cents)]
    assert session["metadata"] == {"tenant": "paiementstripe", "regie": "scolaire", "payment_id": str(payment_id),
                                   "reference": session["client_reference_id"]}
    page = choose(browser, response, "pay")
    # The event was delivered (and applied) before the browser was sent back.
    completed = portal.fake.events_of("checkout.session.completed")[-1]
    assert portal.fake.events[completed["id"]]["deliveries"] == [200]
    assert page.status_code == 200 and "Paiement validé" in text(page) and payer.invoice_number in text(page)
    assert portal.payment(payment_id).state == "paid"
    invoice = portal.invoice(payer.invoice_id)
    assert (invoice.status, invoice.paid_cents) == ("paid", payer.total_cents)
    records = portal.notifications(payment_id)
    assert [(r.event_id, r.payload["raw"]["source"]) for r in records] == [(completed["id"], "notification")]


def test_card_declined_then_cancelled_then_expired(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    declined = choose(browser, response, "refuse")
    assert declined.status_code == 402 and "Votre carte a été refusée" in text(declined)
    page = browser.post(response.headers["Location"], data={"choice": "cancel"}, timeout=15)
    # Stripe keeps the session open until it expires: the family is told it left the payment.
    assert page.url.endswith("?abandon=1") and "Paiement abandonné" in text(page)
    assert "aucune somme n'a été prélevée" in text(page) and portal.payment(payment_id).state == "pending"
    assert portal.invoice(payer.invoice_id).status == "to_pay"
    with time_machine.travel(datetime.now(PARIS) + timedelta(minutes=62)):
        assert browser.get(response.headers["Location"], timeout=15).status_code == 410  # expires; event sent
    assert portal.payment(payment_id).state == "expired"
    assert [r.payload["raw"]["event"]["type"] for r in portal.notifications(payment_id)
            if r.payload["raw"].get("event")] == ["checkout.session.expired"]
    page = browser.get(f"{portal.base}/paiement/{payment_id}/retour/", timeout=15)
    assert "Paiement expiré" in text(page) and portal.invoice(payer.invoice_id).status == "to_pay"


def test_delayed_payment_refused_is_refused(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    page = choose(browser, response, "sepa")
    assert "en attente de confirmation bancaire" in text(page)
    assert portal.payment(payment_id).state == "pending"
    portal.fake.settle_async(session_id(response), False)
    assert portal.payment(payment_id).state == "refused"
    assert portal.invoice(payer.invoice_id).status == "to_pay"
    page = browser.get(f"{portal.base}/paiement/{payment_id}/retour/", timeout=15)
    assert "Paiement refusé" in text(page)


def test_expiry_found_by_the_reconciliation_without_any_event(portal):
    portal.fake.notify = False
    payer, payment_id, browser, response = start_in_browser(portal)
    with time_machine.travel(datetime.now(PARIS) + timedelta(minutes=62)):
        report = reconcile(portal)
    assert report["expired"] >= 1 and portal.payment(payment_id).state == "expired"


def test_duplicate_replayed_and_out_of_order_events_change_nothing(portal):
    portal.fake.notify = False
    payer, payment_id, browser, response = start_in_browser(portal)
    reference = session_id(response)
    choose(browser, response, "sepa")  # completed (unpaid), event held
    portal.fake.settle_async(reference, True)  # async_payment_succeeded, held
    completed, succeeded = (portal.fake.events_of(kind)[-1] for kind in (
        "checkout.session.completed", "checkout.session.async_payment_succeeded"))
    # The success arrives first; then the (stale) completion; then replays of both.
    assert portal.fake.deliver(succeeded["id"]) == [200]
    assert portal.payment(payment_id).state == "paid"
    calls = api_calls(portal)
    assert portal.fake.deliver(completed["id"]) == [200]
    for _ in range(3):
        assert portal.fake.deliver(succeeded["id"]) == [200]  # re-signed with a fresh timestamp
    # A (validly signed) "expired" about the paid session, arriving late: changes nothing.
    stale = json.loads(json.dumps(succeeded))
    stale.update(id="evt_test_stale_expired", type="checkout.session.expired")
    stale["data"]["object"]["status"] = "expired"
    assert post_event(portal, stale).status_code == 200
    assert api_calls(portal) == calls  # paid or already seen: Stripe is not asked again
    assert portal.payment(payment_id).state == "paid"
    invoice = portal.invoice(payer.invoice_id)
    assert invoice.paid_cents == payer.total_cents  # counted once
    assert [r.event_id for r in portal.notifications(payment_id) if r.event_id] == [succeeded["id"]]


def test_replay_of_an_event_already_applied_answers_200_without_asking_stripe(portal):
    portal.fake.notify = False
    payer, payment_id, browser, response = start_in_browser(portal)
    choose(browser, response, "sepa")
    completed = portal.fake.events_of("checkout.session.completed")[-1]
    assert portal.fake.deliver(completed["id"]) == [200]
    assert portal.payment(payment_id).state == "pending"
    calls = api_calls(portal)
    answers = [post_event(portal, completed) for _ in range(5)]
    assert {(a.status_code, a.text) for a in answers} == {(200, "déjà reçu")}
    assert api_calls(portal) == calls
    assert [r.event_id for r in portal.notifications(payment_id) if r.event_id] == [completed["id"]]


def test_forged_events_are_refused_and_apply_nothing(portal):
    portal.fake.notify = False
    payer, payment_id, browser, response = start_in_browser(portal)
    reference = session_id(response)
    portal.fake.pay(reference)  # paid at Stripe, event held
    event = portal.fake.events_of("checkout.session.completed")[-1]
    calls = api_calls(portal)
    for forged in (post_event(portal, event, secret="whsec_of_someone_else"),
                   post_event(portal, event, timestamp=int(time.time()) - 301),
                   requests.post(portal.base + NOTIFICATION_PATH, json=event, timeout=15,
                                 headers={"Stripe-Signature": "t=1,v1=deadbeef"}),
                   requests.post(portal.base + NOTIFICATION_PATH, json=event, timeout=15)):
        assert (forged.status_code, forged.text) == (400, "notification non reconnue")
    assert api_calls(portal) == calls and portal.notifications(payment_id) == []
    assert portal.payment(payment_id).state == "created"
    # Unknown session, validly signed: acknowledged, recorded, nothing changed.
    unknown = json.loads(json.dumps(event))
    unknown["id"], unknown["data"]["object"]["id"] = "evt_test_unknown", "cs_test_inconnue"
    unknown["data"]["object"]["client_reference_id"] = "M26010100999999"
    assert (post_event(portal, unknown).status_code, portal.payment(payment_id).state) == (200, "created")
    assert portal.fake.deliver(event["id"]) == [200]  # the real one
    assert portal.payment(payment_id).state == "paid"


def test_browser_returns_without_any_event(portal):
    portal.fake.notify = False
    payer, payment_id, browser, response = start_in_browser(portal)
    page = choose(browser, response, "pay")
    assert "Paiement validé" in text(page) and portal.payment(payment_id).state == "paid"
    assert portal.fake.events[portal.fake.events_of("checkout.session.completed")[-1]["id"]]["deliveries"] == []


def test_no_return_and_no_event_the_reconciliation_settles_it_and_the_late_event_is_harmless(portal):
    portal.fake.notify = False
    payer, payment_id, browser, response = start_in_browser(portal)
    portal.fake.pay(session_id(response))  # paid, tab closed, event lost for now
    assert portal.payment(payment_id).state == "created"
    reconcile(portal)
    assert portal.payment(payment_id).state == "paid" and portal.invoice(payer.invoice_id).status == "paid"
    late = portal.fake.events_of("checkout.session.completed")[-1]
    assert portal.fake.deliver(late["id"]) == [200]
    assert portal.invoice(payer.invoice_id).paid_cents == payer.total_cents


def test_timeout_at_start_clear_message_nothing_lost_then_retry(portal):
    portal.fake.delay = 2.5  # the régie's timeout is 2 s
    payer, payment_id, browser, response = start_in_browser(portal)
    assert response.status_code == 503
    assert "Service de paiement indisponible" in text(response) and "rien n'est perdu" in text(response)
    attempt = portal.payment(payment_id)
    assert (attempt.state, attempt.provider_reference) == ("created", "")
    portal.fake.delay = 0
    retry = browser.post(f"{portal.base}/paiement/{payment_id}/demarrer/", data=csrf_form(response.text),
                         allow_redirects=False, timeout=15)
    assert retry.status_code == 302 and retry.headers["Location"].startswith(portal.fake.url)
    assert portal.payment(payment_id).provider_reference == session_id(retry)


def test_connection_refused_at_start_and_at_lookup_is_retried_later(portal, monkeypatch):
    monkeypatch.setenv(ENV_API_BASE, f"http://127.0.0.1:{closed_port()}")
    payer, payment_id, browser, response = start_in_browser(portal)
    assert response.status_code == 503 and "ne répond pas" in text(response)
    assert portal.payment(payment_id).state == "created"

    monkeypatch.setenv(ENV_API_BASE, portal.fake.url)
    response = browser.get(f"{portal.base}/paiement/{payment_id}/demarrer/", allow_redirects=False, timeout=15)
    portal.fake.notify = False
    portal.fake.pay(session_id(response))
    monkeypatch.setenv(ENV_API_BASE, f"http://127.0.0.1:{closed_port()}")  # Stripe down when the family returns
    page = browser.get(f"{portal.base}/paiement/{payment_id}/retour/", timeout=15)
    assert "en attente de confirmation bancaire" in text(page) and "rien n'est perdu" in text(page)
    event = portal.fake.events_of("checkout.session.completed")[-1]
    answer = post_event(portal, event)
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "30")  # Stripe retries later
    report = reconcile(portal)
    assert report["errors"] >= 1 and portal.payment(payment_id).state == "created"
    monkeypatch.setenv(ENV_API_BASE, portal.fake.url)  # back up: Stripe's retry settles it
    assert post_event(portal, event).status_code == 200
    assert portal.payment(payment_id).state == "paid"


def test_connect_direct_charge_on_the_communes_account(portal):
    account = "acct_1PaiementStripe"

    def regie_settings():
        from marelle.catalog.models import Regie

        return Regie.objects.get(code="scolaire").payment_settings

    def use_connect(settings):
        from marelle.catalog.models import Regie

        Regie.objects.filter(code="scolaire").update(payment_settings=settings)

    original = portal.run(regie_settings)
    portal.run(lambda: use_connect({**original, "connected_account": account}))
    try:
        portal.fake.add_endpoint(portal.base + NOTIFICATION_PATH, account=account, secret=WHSEC)
        payer, payment_id, browser, response = start_in_browser(portal)
        reference = session_id(response)
        creation = next(c for c in portal.fake.calls if c["path"] == "/v1/checkout/sessions")
        assert creation["headers"]["stripe-account"] == account
        assert creation["headers"]["authorization"] == f"Bearer {KEY}"  # the platform's key
        assert portal.fake.account_of(reference) == account
        page = choose(browser, response, "pay")
        assert "Paiement validé" in text(page) and portal.payment(payment_id).state == "paid"
        event = portal.fake.events_of("checkout.session.completed")[-1]
        assert event["account"] == account and portal.fake.events[event["id"]]["deliveries"] == [200]
        lookups = [c for c in portal.fake.calls if c["path"] == f"/v1/checkout/sessions/{reference}"]
        assert lookups and all(c["headers"]["stripe-account"] == account for c in lookups)
    finally:
        portal.run(lambda: use_connect(original))


def test_refund_through_stripe_then_refunds_made_in_the_dashboard(portal):
    payer, payment_id, browser, response = start_in_browser(portal)
    reference = session_id(response)
    choose(browser, response, "pay")

    def refund_through_stripe():
        from marelle.billing.settlement import payment_refund
        from marelle.payments.services import provider_refund

        from tests.factories import make_staff

        staff = make_staff("regie.stripe@mairie.fr", role="regisseur")
        return payment_refund(staff=staff, payment_id=payment_id, amount_cents=500, external=False,
                              provider_refund=provider_refund)

    assert portal.run(refund_through_stripe).state == "partially_refunded"
    refund_call = next(c for c in portal.fake.calls if c["path"] == "/v1/refunds")
    assert refund_call["headers"]["idempotency-key"] == f"paiementstripe:{payment_id}:refund:0:500"
    portal.fake.wait_deliveries()  # charge.refunded: Marelle already knows, nothing more
    attempt = portal.payment(payment_id)
    assert (attempt.state, attempt.refunded_cents) == ("partially_refunded", 500)
    assert portal.invoice(payer.invoice_id).paid_cents == payer.total_cents - 500

    intent = portal.fake.session(reference)["payment_intent"]
    portal.fake.refund({"payment_intent": intent, "amount": "300"}, "")  # made in the dashboard
    portal.fake.wait_deliveries()
    attempt = portal.payment(payment_id)
    assert (attempt.state, attempt.refunded_cents) == ("partially_refunded", 800)
    invoice = portal.invoice(payer.invoice_id)
    assert (invoice.status, invoice.paid_cents) == ("partially_paid", payer.total_cents - 800)
    replay = portal.fake.events_of("charge.refunded")[-1]
    assert portal.fake.deliver(replay["id"]) == [200]
    assert portal.payment(payment_id).refunded_cents == 800  # once
    portal.fake.refund({"payment_intent": intent}, "")  # the rest
    portal.fake.wait_deliveries()
    attempt = portal.payment(payment_id)
    assert (attempt.state, attempt.refunded_cents) == ("refunded", payer.total_cents)
    assert portal.invoice(payer.invoice_id).status == "to_pay"


def test_webhook_handling_stays_fast(portal):
    portal.fake.notify = False
    payer, payment_id, browser, response = start_in_browser(portal)
    portal.fake.pay(session_id(response))
    event = portal.fake.events_of("checkout.session.completed")[-1]
    timings = []
    for _ in range(20):
        began = time.perf_counter()
        assert post_event(portal, event).status_code == 200
        timings.append(time.perf_counter() - began)
    assert portal.payment(payment_id).state == "paid"
    # The first applies (one look-up at Stripe), the others are answered from the dedup table.
    assert statistics.median(timings) < 0.25, timings
