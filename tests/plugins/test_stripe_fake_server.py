"""The fake Stripe itself: what the real SDK and a webhook receiver see of it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import stripe
from marelle.plugin_api.testing import closed_port
from marelle_stripe.fake_server import FakeStripe, parse_form

KEY = "sk_test_fake0123"


class Receiver:
    """A webhook endpoint that keeps what it receives."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/paiement/notification/stripe/scolaire/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    with FakeStripe() as server:
        yield server


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def client(fake: FakeStripe, account: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(KEY, stripe_account=account, base_addresses={"api": fake.url})


def session_params(**changes):
    return {"mode": "payment", "currency": "eur", "success_url": "https://a.example/ok?s={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://a.example/retour/", "metadata": {"tenant": "alpha"},
            "line_items": [{"quantity": 1, "price_data": {"currency": "eur", "unit_amount": 1500,
                                                          "product_data": {"name": "Facture SCO-1"}}},
                           {"quantity": 2, "price_data": {"currency": "eur", "unit_amount": 250,
                                                          "product_data": {"name": "Facture SCO-2"}}}], **changes}


def test_stripe_form_encoding_is_decoded_into_nested_values():
    body = ("line_items[0][price_data][unit_amount]=4250&line_items[0][quantity]=1&line_items[1][quantity]=2"
            "&metadata[tenant]=alpha&expand[0]=payment_intent&enabled_events[]=a&enabled_events[]=b&mode=payment")
    assert parse_form(body) == {
        "line_items": [{"price_data": {"unit_amount": "4250"}, "quantity": "1"}, {"quantity": "2"}],
        "metadata": {"tenant": "alpha"}, "expand": ["payment_intent"], "enabled_events": ["a", "b"], "mode": "payment"}


def test_the_sdk_creates_retrieves_and_expires_sessions(fake):
    session = client(fake).v1.checkout.sessions.create(session_params())
    assert (session.status, session.payment_status, session.amount_total) == ("open", "unpaid", 2000)
    assert session.url == f"{fake.url}/checkout/{session.id}" and session.metadata["tenant"] == "alpha"
    assert client(fake).v1.checkout.sessions.retrieve(session.id).id == session.id
    assert client(fake).v1.checkout.sessions.expire(session.id).status == "expired"
    with pytest.raises(stripe.InvalidRequestError):
        client(fake).v1.checkout.sessions.expire(session.id)
    with pytest.raises(stripe.InvalidRequestError, match="expires_at"):
        client(fake).v1.checkout.sessions.create(session_params(expires_at=int(fake.now()) + 600))
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("pk_test_nope", base_addresses={"api": fake.url}).v1.checkout.sessions.retrieve(session.id)


def test_expanded_payment_intent_and_charge_after_payment(fake):
    session = client(fake).v1.checkout.sessions.create(session_params())
    assert fake.pay(session.id) == f"https://a.example/ok?s={session.id}"
    again = client(fake).v1.checkout.sessions.retrieve(session.id, {"expand": ["payment_intent.latest_charge"]})
    assert again.payment_intent.status == "succeeded" and again.payment_intent.latest_charge.amount == 2000
    intent = client(fake).v1.payment_intents.retrieve(again.payment_intent.id)
    assert intent.metadata == {}  # no payment_intent_data given


def test_webhook_endpoints_through_the_api_and_events_signed_like_stripe(fake, receiver):
    endpoint = client(fake).v1.webhook_endpoints.create(
        {"url": receiver.url, "enabled_events": ["checkout.session.completed"]})
    assert endpoint.secret.startswith("whsec_") and endpoint.status == "enabled"
    session = client(fake).v1.checkout.sessions.create(session_params())
    fake.pay(session.id)
    fake.expire(client(fake).v1.checkout.sessions.create(session_params()).id)  # not enabled: not sent
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert headers["content-type"].startswith("application/json")
    event = stripe.Webhook.construct_event(body, headers["stripe-signature"], endpoint.secret)
    assert (event.type, event.data.object.id) == ("checkout.session.completed", session.id)
    assert "account" not in json.loads(body)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["stripe-signature"], "whsec_autre")
    # A replay is the same event, signed afresh.
    fake.deliver(event.id)
    assert json.loads(receiver.received[1][1])["id"] == event.id
    assert receiver.received[1][0]["stripe-signature"] != "" and fake.events[event.id]["deliveries"] == [200, 200]


def test_connected_accounts_see_only_their_objects_and_endpoints(fake, receiver):
    commune = client(fake, "acct_1Commune")
    commune.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["*"]})
    session = commune.v1.checkout.sessions.create(session_params())
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client(fake).v1.checkout.sessions.retrieve(session.id)
    assert raised.value.code == "resource_missing"
    platform_session = client(fake).v1.checkout.sessions.create(session_params())
    fake.pay(platform_session.id)  # the platform's: not sent to the commune's endpoint
    fake.pay(session.id)
    assert [json.loads(body)["account"] for _, body in receiver.received] == ["acct_1Commune"]


def test_same_idempotency_key_same_answer(fake):
    first = client(fake).v1.checkout.sessions.create(session_params(), {"idempotency_key": "k-1"})
    second = client(fake).v1.checkout.sessions.create(session_params(), {"idempotency_key": "k-1"})
    third = client(fake).v1.checkout.sessions.create(session_params(), {"idempotency_key": "k-2"})
    assert first.id == second.id != third.id


def test_hosted_page_buttons(fake):
    session = client(fake).v1.checkout.sessions.create(session_params())
    page = requests.get(session.url, timeout=5)
    for button in ('value="pay">Payer<', 'value="sepa">Payer par prélèvement SEPA', 'value="refuse">Refuser',
                   'value="cancel">Annuler<', "Facture SCO-1", "20,00 €"):
        assert button in page.text
    declined = requests.post(session.url, data={"choice": "refuse"}, allow_redirects=False, timeout=5)
    assert declined.status_code == 402 and "refusée" in declined.text
    cancel = requests.post(session.url, data={"choice": "cancel"}, allow_redirects=False, timeout=5)
    assert (cancel.status_code, cancel.headers["Location"]) == (303, "https://a.example/retour/")
    paid = requests.post(session.url, data={"choice": "pay"}, allow_redirects=False, timeout=5)
    assert (paid.status_code, paid.headers["Location"]) == (303, f"https://a.example/ok?s={session.id}")
    assert requests.get(session.url, timeout=5).status_code == 410
    assert requests.get(f"{fake.url}/checkout/cs_test_inconnue", timeout=5).status_code == 404


def test_the_fake_runs_as_a_command_with_a_webhook(receiver):
    port = closed_port()
    process = subprocess.Popen([sys.executable, "-m", "marelle_stripe.fake_server", "--port", str(port),
                                "--webhook", f"{receiver.url}=whsec_cli"], stdout=subprocess.PIPE, text=True)
    try:
        assert f"MARELLE_STRIPE_API_BASE=http://127.0.0.1:{port}" in process.stdout.readline()
        fake = FakeStripe(port=port)  # only for its URL
        session = client(fake).v1.checkout.sessions.create(session_params())
        requests.post(session.url, data={"choice": "pay"}, allow_redirects=False, timeout=5)
        headers, body = receiver.received[-1]
        assert stripe.Webhook.construct_event(body, headers["stripe-signature"], "whsec_cli").data.object.id == \
            session.id
    finally:
        process.terminate()
        process.wait(timeout=10)
