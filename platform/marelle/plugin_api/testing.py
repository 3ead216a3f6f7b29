"""The contract test suite every payment provider plugin runs against itself.

Subclass :class:`PaymentProviderContract` in your plugin's tests, say how to reach your
local fake of the provider, and pytest runs the contract's tests on your provider::

    import pytest
    from marelle.plugin_api.testing import PaymentProviderContract
    from marelle_guichet.fake_network import FakeNetwork
    from marelle_guichet.plugin import GuichetProvider

    class TestGuichetContract(PaymentProviderContract):
        provider_class = GuichetProvider
        bad_settings = [({"validity_days": 0}, "supérieur ou égal à 1")]

        @pytest.fixture
        def server(self):
            with FakeNetwork() as network:
                yield network

        def settings_for(self, server):
            return {"api_url": server.url, "api_key_env": "GUICHET_API_KEY"}

        def environ(self, server):
            return {"GUICHET_API_KEY": server.api_key}

        def complete(self, server, provider_reference, outcome):
            ...  # make the fake report ``outcome`` for this payment

        def notification_for(self, server, provider_reference):
            ...  # the NotificationData the provider would send

What the contract checks (each a test of the suite):

- the class is well formed (identifier, French label, settings schema, method signatures);
- bad settings are refused with French messages, unknown keys too;
- ``start`` returns a redirect URL (or a form) and a provider reference, unique per start;
- a notification is recognised and gives the payment's reference; parsing is pure
  (same data, same event) and foreign data is not taken for a notification;
- ``fetch_status`` maps the provider's outcomes to ``pending`` (nothing yet), ``paid``
  (with the amount, and an aware date when given), ``refused``, ``cancelled``, ``expired``,
  and asking twice gives the same answer;
- an unreachable provider raises ``ProviderUnavailable`` (timeouts and refused connections
  are not crashes), when the plugin says how to make it unreachable;
- ``refund`` is consistent with ``supports_refund``.

The tests never request the database: a provider that touches the ORM fails them
(pytest-django refuses database access to tests that did not ask for it).
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from marelle.plugin_api.manager import create_payment_provider
from marelle.plugin_api.payment import (
    NotificationData,
    PaymentProvider,
    PaymentRequest,
    PaymentStart,
    PluginSettings,
    ProviderEvent,
    ProviderStatus,
    ProviderUnavailable,
    RefundNotSupported,
    RefundRequest,
    settings_errors,
)

OUTCOMES = ("paid", "refused", "cancelled", "expired")
# Pydantic's English messages: a French-speaking operator must never read them.
ENGLISH = ("Field required", "Input should", "String should", "Value error", "Extra inputs are not permitted",
           "value is not", "Invalid")


def closed_port() -> int:
    """A local TCP port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PaymentProviderContract:
    """Base class of a plugin's contract tests. See the module's docstring."""

    #: the provider class under test (or override the ``provider_class`` fixture).
    provider_class: ClassVar[type[PaymentProvider] | None] = None
    #: (settings, a French fragment expected in the error messages).
    bad_settings: ClassVar[list[tuple[dict[str, Any], str]]] = []
    #: what the contract asks the provider to collect.
    amount_cents: ClassVar[int] = 1234
    #: outcomes the provider can report (drop those it cannot, e.g. "refused" for a desk).
    outcomes: ClassVar[tuple[str, ...]] = OUTCOMES

    # --- to implement -------------------------------------------------------------------

    @pytest.fixture
    def server(self):
        """Yield your local fake of the provider, started."""
        raise NotImplementedError("define a `server` fixture yielding the plugin's fake server")

    def settings_for(self, server) -> dict[str, Any]:
        """Valid settings of a régie, pointing at ``server``."""
        raise NotImplementedError

    def environ(self, server) -> Mapping[str, str]:
        """Environment variables the settings' SecretRef fields name (default: none)."""
        return {}

    def complete(self, server, provider_reference: str, outcome: str) -> None:
        """Make ``server`` report ``outcome`` (one of :data:`OUTCOMES`) for the payment."""
        raise NotImplementedError

    def notification_for(self, server, provider_reference: str) -> NotificationData:
        """The notification the provider sends about the payment."""
        raise NotImplementedError

    def unreachable_settings(self, server) -> dict[str, Any] | None:
        """Settings pointing at a closed port (see :func:`closed_port`), or None to skip."""
        return None

    # --- fixtures the tests use ----------------------------------------------------------

    @pytest.fixture(name="provider_class")
    def _provider_class(self):
        if self.provider_class is None:
            raise NotImplementedError("set `provider_class` or override the `provider_class` fixture")
        return self.provider_class

    @pytest.fixture
    def provider(self, provider_class, server) -> PaymentProvider:
        return create_payment_provider(provider_class.identifier, self.settings_for(server),
                                       environ=self.environ(server), provider_class=provider_class)

    @pytest.fixture
    def payment_request(self) -> PaymentRequest:
        return self.make_request(1)

    def make_request(self, payment_id: int) -> PaymentRequest:
        return PaymentRequest(
            payment_id=payment_id, reference=f"M261005{payment_id:08d}", amount_cents=self.amount_cents,
            payer_email="famille.dupont@example.fr", description="Factures SCO-2026-000042 – Commune d'Alpha",
            return_url=f"https://alpha.example/paiement/{payment_id}/retour/",
            notification_url="https://alpha.example/paiement/notification/contrat/scolaire/",
            regie_code="scolaire", commune_slug="alpha", invoice_numbers=("SCO-2026-000042",))

    def _online(self, provider_class):
        if not provider_class.accepts_online_payment:
            pytest.skip("the provider takes no online payment")

    # --- the contract --------------------------------------------------------------------

    def test_class_is_well_formed(self, provider_class):
        assert provider_class.identifier and provider_class.identifier == provider_class.identifier.lower()
        assert provider_class.verbose_name.strip()
        assert issubclass(provider_class.settings_schema, PluginSettings)
        assert provider_class.settings_schema.model_config.get("extra") == "forbid"
        if provider_class.accepts_online_payment:
            for name in ("start", "parse_notification", "fetch_status"):
                assert getattr(provider_class, name) is not getattr(PaymentProvider, name), f"{name} not implemented"
            parameters = inspect.signature(provider_class.fetch_status).parameters
            assert "started_at" in parameters and parameters["started_at"].kind is inspect.Parameter.KEYWORD_ONLY

    def test_valid_settings_build_a_provider(self, provider):
        assert isinstance(provider.settings, PluginSettings)

    def test_bad_settings_are_refused_in_french(self, provider_class, server):
        assert self.bad_settings, "list at least one bad setting with the French message it gets"
        for data, fragment in self.bad_settings:
            errors = settings_errors(provider_class.settings_schema, {**self.settings_for(server), **data})
            text = " ; ".join(map(str, errors))
            assert errors, f"{data} accepted"
            assert fragment in text, f"{data}: « {fragment} » not in « {text} »"
            assert not any(english in text for english in ENGLISH), text

    def test_unknown_setting_is_refused(self, provider_class, server):
        errors = settings_errors(provider_class.settings_schema, {**self.settings_for(server), "inconnu": 1})
        assert [str(e) for e in errors] == ["inconnu : réglage inconnu"]

    def test_start_returns_a_redirect_and_a_reference(self, provider_class, provider, payment_request):
        self._online(provider_class)
        started = provider.start(payment_request)
        assert isinstance(started, PaymentStart) and started.provider_reference
        target = started.redirect_url or started.form.action
        assert urlsplit(target).scheme in ("http", "https") and urlsplit(target).netloc

    def test_each_start_has_its_own_reference(self, provider_class, provider):
        self._online(provider_class)
        first = provider.start(self.make_request(1)).provider_reference
        second = provider.start(self.make_request(2)).provider_reference
        assert first != second

    def test_notification_gives_the_payment_reference(self, provider_class, provider, server, payment_request):
        self._online(provider_class)
        reference = provider.start(payment_request).provider_reference
        self.complete(server, reference, "paid")
        event = provider.parse_notification(self.notification_for(server, reference))
        assert isinstance(event, ProviderEvent) and event.provider_reference == reference

    def test_parsing_is_pure(self, provider_class, provider, server, payment_request):
        self._online(provider_class)
        reference = provider.start(payment_request).provider_reference
        data = self.notification_for(server, reference)
        assert provider.parse_notification(data) == provider.parse_notification(data)

    def test_foreign_data_is_not_a_notification(self, provider_class, provider):
        self._online(provider_class)
        assert provider.parse_notification(NotificationData(method="POST")) is None
        assert provider.parse_notification(NotificationData(
            method="POST", form={"bonjour": "<script>"}, body=b"bonjour=%3Cscript%3E",
            headers={"content-type": "application/x-www-form-urlencoded"})) is None

    def test_status_is_pending_before_any_outcome(self, provider_class, provider, payment_request):
        self._online(provider_class)
        reference = provider.start(payment_request).provider_reference
        status = provider.fetch_status(reference)
        assert isinstance(status, ProviderStatus) and status.status == "pending"

    @pytest.mark.parametrize("outcome", OUTCOMES)
    def test_status_mapping(self, provider_class, provider, server, payment_request, outcome):
        self._online(provider_class)
        if outcome not in self.outcomes:
            pytest.skip(f"the provider cannot report {outcome}")
        reference = provider.start(payment_request).provider_reference
        self.complete(server, reference, outcome)
        status = provider.fetch_status(reference)
        assert status.status == outcome, status
        if outcome == "paid":
            assert status.amount_cents in (None, payment_request.amount_cents)
            assert status.paid_at is None or status.paid_at.tzinfo is not None
        assert provider.fetch_status(reference) == status  # asking again changes nothing

    def test_unreachable_provider_is_unavailable_not_a_crash(self, provider_class, server, payment_request):
        self._online(provider_class)
        settings = self.unreachable_settings(server)
        if settings is None:
            pytest.skip("the plugin gives no unreachable settings")
        provider = create_payment_provider(provider_class.identifier, settings, environ=self.environ(server),
                                           provider_class=provider_class)
        with pytest.raises(ProviderUnavailable) as raised:
            provider.start(payment_request)
        assert raised.value.message  # French, for the family
        with pytest.raises(ProviderUnavailable):
            provider.fetch_status("reference-inconnue-0001")

    def test_refund_matches_supports_refund(self, provider_class, provider):
        if provider_class.supports_refund:
            assert provider_class.refund is not PaymentProvider.refund
        else:
            with pytest.raises(RefundNotSupported):
                provider.refund(RefundRequest(payment_id=1, provider_reference="x", amount_cents=100))
