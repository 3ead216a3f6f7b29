"""End-to-end payment tests: a committed commune served by a WSGI thread, families with
issued invoices, a browser (requests) logged in as one of them, *.localhost resolved to
this machine (as browsers do), and the payment pages mounted at /paiement/."""

from __future__ import annotations

import re
import socket
import socketserver
import threading
from dataclasses import dataclass
from datetime import date, datetime
from importlib import import_module
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from zoneinfo import ZoneInfo

import requests
import time_machine
from django.conf import settings
from django.db import connection, connections

from tests.support import (
    ALPHA_YAML,
    create_committed_commune,
    drop_committed_commune,
    in_own_connection,
)

PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=PARIS)
URLCONF = "tests.plugins.urls_payments"


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


def resolve_localhost(monkeypatch) -> None:
    """*.localhost → 127.0.0.1 in this process (RFC 6761; browsers and curl do it)."""
    monkeypatch.setattr(socket, "getaddrinfo", _getaddrinfo)


@dataclass
class Payer:
    email: str
    user_id: int
    family_id: int
    invoice_id: int
    invoice_number: str
    total_cents: int


class PaymentWorld:
    """A committed commune ``slug`` with issued September invoices for ``families`` families."""

    def __init__(self, slug: str, families: int, yaml_text: str = ALPHA_YAML):
        self.slug = slug
        self.commune = create_committed_commune(slug, yaml_text)
        self.host = f"{slug}.localhost"
        self.payers: list[Payer] = []
        self._httpd = None
        try:
            in_own_connection(lambda: self._populate(families))
        except BaseException:
            drop_committed_commune(self.commune)
            raise

    def _populate(self, families: int) -> None:
        from marelle.billing.invoicing import invoicing_run_draft, invoicing_run_issue
        from marelle.billing.models import Invoice
        from marelle.booking.services import Change, reservation_submit
        from marelle.catalog.models import Regie

        from tenants.models import Domain
        from tests.factories import accept_document, enrol, make_family

        Domain.objects.create(tenant_id=self.commune.pk, domain=self.host)
        connection.set_tenant(self.commune)
        with time_machine.travel(MONDAY, tick=False):
            for index in range(families):
                family = make_family(f"payeur{index}@example.fr", last_name=f"Payeur{index}", children=("Enfant",))
                child = family.children.get()
                accept_document(child)
                reservation_submit(actor=None, enrolment=enrol(child, "cantine"),
                                   changes=[Change(date(2026, 9, 14), "repas"), Change(date(2026, 9, 15), "repas")])
        with time_machine.travel(datetime(2026, 10, 5, 9, 0, tzinfo=PARIS), tick=False):
            run = invoicing_run_draft(actor=None, regie=Regie.objects.get(code="scolaire"),
                                      period_start=date(2026, 9, 1), period_end=date(2026, 9, 30), label="Septembre")
            invoicing_run_issue(actor=None, run_id=run.pk)
        for invoice in Invoice.objects.filter(run=run).select_related("family").order_by("number"):
            guardian = invoice.family.guardians.get(position=1)
            self.payers.append(Payer(guardian.email, guardian.user_id, invoice.family_id, invoice.pk, invoice.number,
                                     invoice.total_cents))

    # --- the web server ---------------------------------------------------------------

    def serve(self) -> str:
        from django.contrib.staticfiles.handlers import StaticFilesHandler
        from django.core.wsgi import get_wsgi_application

        app = StaticFilesHandler(get_wsgi_application())
        self._httpd = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.port = self._httpd.server_address[1]
        self.base = f"http://{self.host}:{self.port}"
        return self.base

    def close(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
        connections.close_all()
        drop_committed_commune(self.commune)

    # --- helpers ----------------------------------------------------------------------

    def run(self, function):
        """Run ``function()`` in the commune's schema on a connection of its own (committed)."""

        def inside():
            connection.set_tenant(self.commune)
            return function()

        return in_own_connection(inside)

    def take_payer(self) -> Payer:
        return self.payers.pop()

    def start_payment(self, payer: Payer) -> int:
        """The family selects its invoice and clicks "Payer" (settlement core's payment_start)."""

        def start():
            from django.contrib.auth import get_user_model
            from marelle.billing.settlement import payment_start
            from marelle.families.models import Family

            user = get_user_model().objects.get(pk=payer.user_id)
            return payment_start(actor=user, family=Family.objects.get(pk=payer.family_id),
                                 invoice_ids=[payer.invoice_id]).pk

        return self.run(start)

    def payment(self, payment_id: int):
        from marelle.billing.models import PaymentAttempt

        return self.run(lambda: PaymentAttempt.objects.get(pk=payment_id))

    def invoice(self, invoice_id: int):
        from marelle.billing.models import Invoice

        return self.run(lambda: Invoice.objects.get(pk=invoice_id))

    def notifications(self, payment_id: int | None = None):
        from marelle.billing.models import ProviderNotification

        return self.run(lambda: list(ProviderNotification.objects.filter(payment_id=payment_id).order_by("pk")))

    def browser(self, payer: Payer | None = None) -> requests.Session:
        """A browser; logged in as ``payer`` when given (a session made like force_login)."""
        session = requests.Session()
        if payer is None:
            return session

        def make_session():
            from django.contrib.auth import (
                BACKEND_SESSION_KEY,
                HASH_SESSION_KEY,
                SESSION_KEY,
                get_user_model,
            )

            user = get_user_model().objects.get(pk=payer.user_id)
            store = import_module(settings.SESSION_ENGINE).SessionStore()
            store[SESSION_KEY] = str(user.pk)
            store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            store[HASH_SESSION_KEY] = user.get_session_auth_hash()
            store.save()
            return store.session_key

        session.cookies.set(settings.SESSION_COOKIE_NAME, self.run(make_session), domain=self.host)
        return session


# Names of the environment variables a Stripe régie's settings point to (values set by tests).
STRIPE_KEY_ENV = "MARELLE_TEST_STRIPE_SECRET_KEY"
STRIPE_WEBHOOK_ENV = "MARELLE_TEST_STRIPE_WEBHOOK_SECRET"
PAYFIP_REGIE_PAYMENT = """    payment:
      plugin: payfip
      settings:
        numcli: "123456"
"""


def stripe_yaml(yaml_text: str = ALPHA_YAML, **settings) -> str:
    """``yaml_text`` (alpha's fixture) with its régie paid through Stripe instead of PayFiP."""
    assert PAYFIP_REGIE_PAYMENT in yaml_text
    values = {"secret_key_env": STRIPE_KEY_ENV, "webhook_secret_env": STRIPE_WEBHOOK_ENV, **settings}
    lines = "".join(f"        {key}: {value}\n" for key, value in values.items())
    return yaml_text.replace(PAYFIP_REGIE_PAYMENT, f"    payment:\n      plugin: stripe\n      settings:\n{lines}")


def csrf_form(html: str) -> dict[str, str]:
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    return {"csrfmiddlewaretoken": token.group(1)} if token else {}


def world_fixture(slug: str, *, families: int, yaml_text: str):
    """A module-scoped pytest fixture: a committed commune with ``families`` payers, served
    by a thread for the whole module (creating a schema is the expensive part)."""
    import pytest

    @pytest.fixture(scope="module")
    def world(django_db_setup, django_db_blocker):
        with django_db_blocker.unblock():
            world = PaymentWorld(slug, families=families, yaml_text=yaml_text)
            try:
                world.serve()
                yield world
            finally:
                world.close()

    return world

