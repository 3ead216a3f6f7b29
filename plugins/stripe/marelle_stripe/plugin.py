"""Stripe Checkout, with the money going to the commune's own Stripe account (``protocols.md`` §2, §4.2).

Flow: ``start`` creates a Checkout Session (``mode=payment``, EUR, one line per invoice,
metadata with the commune, the régie, the payment id and Marelle's reference) and sends the
family to its ``url``; Stripe POSTs signed events to the régie's notification URL
(``/paiement/notification/stripe/<régie>/`` on the commune's host); ``parse_notification``
checks the signature and says which session the event is about; Marelle then calls
``fetch_status``, which re-reads the session (``expand=payment_intent.latest_charge``): the
only truth, whatever order events come in.

Whose money: never the platform's. Either the régie has its own Stripe account and its own
keys (``secret_key_env`` names the variable holding that account's key), or the platform is
a Stripe Connect platform and the régie a connected account (``connected_account``):
*direct charges*, every call made with the platform key and ``Stripe-Account: acct_…``, so
that the payment, its refunds and its disputes live on the commune's account.

Where the API is: ``https://api.stripe.com`` with a live key, always; otherwise the régie
setting ``api_base`` if given, else the environment variable ``MARELLE_STRIPE_API_BASE``, else
``https://api.stripe.com``. The
fake server (``python -m marelle_stripe.fake_server``) answers at ``http://127.0.0.1:8891``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import stripe
from marelle.plugin_api import (
    NotificationData,
    PaymentProvider,
    PaymentRequest,
    PaymentStart,
    PluginSettings,
    ProviderEvent,
    ProviderRejected,
    ProviderStatus,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
    SecretRef,
    hookimpl,
)
from pydantic import AfterValidator, Field

logger = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
ENV_API_BASE = "MARELLE_STRIPE_API_BASE"
PRODUCTION_API_BASE = "https://api.stripe.com"
MIN_AMOUNT_CENTS = 50  # Stripe's minimum charge in EUR
MAX_AMOUNT_CENTS = 99_999_999  # Stripe's maximum amount (8 digits)
SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]+$")
MEL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SESSION_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded",
                  "checkout.session.async_payment_failed", "checkout.session.expired")
REFUND_EVENTS = ("charge.refunded", "refund.updated", "refund.created", "refund.failed", "charge.refund.updated")
# Events the régie's webhook endpoint should send (docs/plugins.md, "Stripe").
ENABLED_EVENTS = SESSION_EVENTS + ("charge.refunded", "refund.updated")
REFUND_STATUSES = {"succeeded": "succeeded", "pending": "pending", "requires_action": "pending",
                   "failed": "failed", "canceled": "failed"}


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"adresse de l'API Stripe invalide : http(s)://hôte attendu (valeur lue : {value!r})")
    return value.rstrip("/")


def _descriptor(value: str) -> str:
    # Stripe: Latin letters, digits, spaces and some punctuation; never < > \ ' " *.
    if re.search(r"[<>\\'\"*]", value) or not value.isascii() or not re.search(r"[A-Za-z]", value):
        raise ValueError("libellé de relevé bancaire invalide : lettres latines sans accent, chiffres et espaces, "
                         "sans < > \\ ' \" *")
    return value


class StripeSettings(PluginSettings):
    # Names of environment variables: the keys themselves never sit in a YAML file. With
    # Connect, the platform's key; otherwise the régie's own account's key.
    secret_key_env: SecretRef
    # The signing secret (whsec_…) of the webhook endpoint registered for this régie.
    webhook_secret_env: SecretRef
    # Stripe Connect, direct charges: the commune's connected account; every call carries
    # Stripe-Account, so the money, refunds and disputes are on the commune's account.
    connected_account: Annotated[str, Field(pattern=r"^acct_[A-Za-z0-9]+$")] | None = None
    # Stripe lets a Checkout Session live from 30 minutes to 24 hours.
    session_expiry_minutes: Annotated[int, Field(ge=30, le=1440)] = 60
    # Added to the account's descriptor on the card statement (Stripe: at most 22 in all).
    statement_descriptor_suffix: Annotated[str, Field(min_length=2, max_length=22),
                                           AfterValidator(_descriptor)] | None = None
    publishable_key: Annotated[str, Field(pattern=r"^pk_(test|live)_[A-Za-z0-9]+$")] | None = None
    # Age beyond which a signed event is refused (replays); Stripe's default is 300 s.
    webhook_tolerance_seconds: Annotated[int, Field(ge=60, le=900)] = 300
    timeout_seconds: Annotated[float, Field(ge=1, le=60)] = 10.0
    # The SDK retries connection errors, 409 and 5xx with the same idempotency key.
    max_network_retries: Annotated[int, Field(ge=0, le=5)] = 2
    # Where the API is (tests, demo): see the module's docstring.
    api_base: Annotated[str, AfterValidator(_base_url)] | None = None


class StripeProvider(PaymentProvider):
    identifier = "stripe"
    verbose_name = "Stripe (paiement par carte bancaire)"
    settings_schema = StripeSettings
    supports_refund = True
    min_amount_cents = MIN_AMOUNT_CENTS
    max_amount_cents = MAX_AMOUNT_CENTS

    settings: StripeSettings

    @property
    def live(self) -> bool:
        return self.secrets.get("secret_key_env", "").startswith(("sk_live_", "rk_live_"))

    @property
    def api_base(self) -> str:
        # A live key only ever goes to Stripe: another address (a typo, a copied test YAML) must
        # not receive it.
        if self.live:
            return PRODUCTION_API_BASE
        if self.settings.api_base:
            return self.settings.api_base
        override = os.environ.get(ENV_API_BASE, "").strip()
        if override:
            return override.rstrip("/")
        return PRODUCTION_API_BASE

    def client(self) -> stripe.StripeClient:
        # One client per call, never the SDK's module globals: threads and régies don't mix.
        return stripe.StripeClient(
            self.secrets.get("secret_key_env", ""), stripe_account=self.settings.connected_account,
            base_addresses={"api": self.api_base}, max_network_retries=self.settings.max_network_retries,
            http_client=stripe.RequestsClient(timeout=self.settings.timeout_seconds))

    def _call(self, operation: str, function):
        try:
            return function()
        except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as error:
            # Timeouts, refused connections, 5xx, malformed answers, rate limits: try later.
            logger.warning("Stripe %s unavailable: %r", operation, error)
            raise ProviderUnavailable(code="indisponible", detail=f"{type(error).__name__}: {error}"[:300]) from None
        except (stripe.AuthenticationError, stripe.PermissionError) as error:
            logger.error("Stripe %s: key or account refused: %r", operation, error)
            raise ProviderRejected("Le compte Stripe de la régie refuse l'opération (clé ou compte connecté à "
                                   "vérifier) : les services de la commune en ont été informés.",
                                   code=_code(error) or "authentification", detail=str(error)[:300]) from None
        except stripe.StripeError as error:
            if (error.http_status or 0) >= 500 or error.http_status in (409, None):
                raise ProviderUnavailable(code="indisponible", detail=f"{type(error).__name__}: {error}"[:300]) from None
            code = _code(error) or "refus"
            raise ProviderRejected(f"Stripe a refusé l'opération (code {code}).", code=code,
                                   detail=(error.user_message or str(error))[:300]) from None

    # --- start ------------------------------------------------------------------------------

    def start(self, request: PaymentRequest) -> PaymentStart:
        if not MIN_AMOUNT_CENTS <= request.amount_cents <= MAX_AMOUNT_CENTS:
            raise ProviderRejected(f"Stripe accepte les paiements de {_euros(MIN_AMOUNT_CENTS)} à "
                                   f"{_euros(MAX_AMOUNT_CENTS)} : ce montant ({_euros(request.amount_cents)}) doit "
                                   "être réglé auprès de la régie.", code="montant")
        for url in (request.return_url, request.notification_url):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"absolute URL expected, got {url!r}")
            if self.live and parts.scheme != "https":
                raise ProviderRejected("Stripe en production exige des adresses https.", code="url")
        params = self.session_params(request, now=int(datetime.now(PARIS).timestamp()))
        # Stable for one attempt and one minute: a retry after a timeout gets the same session
        # back instead of a second one; Stripe keeps keys 24 h.
        key = f"marelle:{request.commune_slug}:{request.payment_id}:{request.reference}:{params['expires_at']}"
        session = self._call("checkout.sessions.create", lambda: self.client().v1.checkout.sessions.create(
            params, {"idempotency_key": key}))
        if not session.get("url") or not SESSION_ID.match(session.get("id") or ""):
            raise ProviderUnavailable(code="indisponible", detail="réponse de Stripe sans session")
        return PaymentStart(provider_reference=session["id"], redirect_url=session["url"],
                            raw={"session": session["id"], "expires_at": session.get("expires_at"),
                                 "amount_total": session.get("amount_total"),
                                 "account": self.settings.connected_account or ""})

    def session_params(self, request: PaymentRequest, *, now: int) -> dict:
        """The Checkout Session's parameters (``now``: unix seconds)."""
        items = request.items or ()
        lines = ([(item.label, item.amount_cents) for item in items] if items
                 else [(request.description or request.reference, request.amount_cents)])
        metadata = {"tenant": request.commune_slug, "regie": request.regie_code,
                    "payment_id": str(request.payment_id), "reference": request.reference}
        intent = {"metadata": metadata}
        if self.settings.statement_descriptor_suffix:
            intent["statement_descriptor_suffix"] = self.settings.statement_descriptor_suffix
        separator = "&" if "?" in request.return_url else "?"
        # Rounded to the minute, so that the idempotency key holds for a retry.
        expires_at = (now // 60 + 1) * 60 + self.settings.session_expiry_minutes * 60
        params = {
            "mode": "payment", "currency": "eur", "locale": "fr",
            "line_items": [{"quantity": 1, "price_data": {"currency": "eur", "unit_amount": cents,
                                                           "product_data": {"name": label[:250] or request.reference}}}
                           for label, cents in lines],
            "client_reference_id": request.reference, "metadata": metadata, "payment_intent_data": intent,
            # Stripe puts the session id in place of the template; the return page needs nothing more.
            "success_url": f"{request.return_url}{separator}session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{request.return_url}{separator}abandon=1", "expires_at": expires_at,
        }
        email = request.payer_email.strip()
        if MEL.match(email):
            params["customer_email"] = email
        return params

    # --- notification ---------------------------------------------------------------------

    def parse_notification(self, data: NotificationData) -> ProviderEvent | None:
        header = data.headers.get("stripe-signature", "")
        secret = self.secrets.get("webhook_secret_env", "")
        if data.method != "POST" or not header or not secret or not data.body:
            return None
        try:
            payload = data.body.decode("utf-8")
            # Any v1 entry may match (secret rotation); older than the tolerance: a replay.
            stripe.WebhookSignature.verify_header(payload, header, secret, self.settings.webhook_tolerance_seconds)
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError):
            return None
        if not isinstance(event, dict) or event.get("object") != "event" or not str(event.get("id", "")).startswith("evt_"):
            return None
        obj = (event.get("data") or {}).get("object") or {}
        kind = str(event.get("type", ""))
        account = event.get("account") or ""
        # Signed with this régie's secret but about another account or mode: not ours.
        if account and account != (self.settings.connected_account or ""):
            return None
        if bool(event.get("livemode")) != self.live:
            return None
        raw = {"id": event["id"], "type": kind, "account": account, "object": obj.get("id", ""),
               "created": event.get("created")}
        if kind.startswith("checkout.session."):
            session_id = str(obj.get("id", ""))
            if not SESSION_ID.match(session_id):
                return None
            return ProviderEvent(provider_reference=session_id, event_id=event["id"], kind=kind, raw=raw,
                                 reference=str(obj.get("client_reference_id") or ""))
        if kind in REFUND_EVENTS:
            # A charge carries the payment intent's metadata; a refund made by Marelle carries
            # the session id: either finds the payment.
            metadata = obj.get("metadata") or {}
            return ProviderEvent(provider_reference=str(metadata.get("checkout_session") or ""), event_id=event["id"],
                                 kind=kind, raw=raw, reference=str(metadata.get("reference") or ""), about_refund=True)
        # Signed but of a kind Marelle does not use: acknowledged (no provider reference,
        # nothing looked up) so that Stripe does not retry it for three days.
        return ProviderEvent(provider_reference="", event_id=event["id"], kind=kind, raw=raw)

    # --- status -----------------------------------------------------------------------------

    def retrieve(self, session_id: str) -> dict:
        session = self._call("checkout.sessions.retrieve", lambda: self.client().v1.checkout.sessions.retrieve(
            session_id, {"expand": ["payment_intent.latest_charge"]}))
        try:
            return json.loads(json.dumps(session))
        except (TypeError, ValueError):
            raise ProviderUnavailable(code="indisponible", detail="réponse de Stripe illisible") from None

    def fetch_status(self, provider_reference: str, *, started_at: datetime | None = None) -> ProviderStatus:
        return self.status_from_session(provider_reference, self.retrieve(provider_reference))

    def status_from_session(self, session_id: str, session: dict) -> ProviderStatus:
        intent = session.get("payment_intent") if isinstance(session.get("payment_intent"), dict) else {}
        charge = intent.get("latest_charge") if isinstance(intent.get("latest_charge"), dict) else {}
        state, payment_status = session.get("status"), session.get("payment_status")
        raw = {"id": session.get("id"), "status": state, "payment_status": payment_status,
               "amount_total": session.get("amount_total"), "currency": session.get("currency"),
               "client_reference_id": session.get("client_reference_id"), "metadata": session.get("metadata") or {},
               "payment_intent": intent.get("id") or session.get("payment_intent"),
               "payment_intent_status": intent.get("status"), "charge": charge.get("id"),
               "amount_refunded": charge.get("amount_refunded"), "livemode": session.get("livemode"),
               "expires_at": session.get("expires_at")}
        common = {"provider_reference": session_id, "reference": session.get("client_reference_id") or "", "raw": raw}
        if session.get("currency") not in (None, "eur"):
            raise ProviderRejected(f"La session Stripe {session_id} est en {session.get('currency')}, pas en euros.",
                                   code="devise")
        amount = session.get("amount_total") if isinstance(session.get("amount_total"), int) else None
        if state == "complete" and payment_status in ("paid", "no_payment_required"):
            when = charge.get("created") or intent.get("created")
            refunded = charge.get("amount_refunded") if isinstance(charge.get("amount_refunded"), int) else None
            return ProviderStatus("paid", amount_cents=amount, refunded_cents=refunded,
                                  paid_at=datetime.fromtimestamp(when, PARIS) if isinstance(when, int) else None,
                                  detail=f"payé (paiement {intent.get('id') or '?'})", **common)
        if state == "complete":
            # Completed but unpaid: a delayed method (SEPA debit) still processing, or failed.
            if intent.get("status") in ("canceled", "requires_payment_method"):
                return ProviderStatus("refused", amount_cents=amount, detail="paiement différé refusé", **common)
            return ProviderStatus("pending", amount_cents=amount, detail="paiement différé en cours", **common)
        if state == "expired":
            return ProviderStatus("expired", detail="session expirée", **common)
        if state == "open":
            error = (intent.get("last_payment_error") or {}).get("code")
            return ProviderStatus("pending", detail="session ouverte" + (f" (dernier essai : {error})" if error else ""),
                                  **common)
        logger.warning("Stripe %s: unknown session status %r", session_id, state)
        return ProviderStatus("pending", detail=f"état {state!r} non reconnu", **common)

    # --- refund -----------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> RefundResult:
        session = self.retrieve(request.provider_reference)
        intent = session.get("payment_intent")
        intent_id = intent.get("id") if isinstance(intent, dict) else intent
        if not intent_id:
            raise ProviderRejected("Cette session Stripe n'a pas de paiement à rembourser.", code="sans_paiement")
        params = {"payment_intent": intent_id, "amount": request.amount_cents, "reason": "requested_by_customer",
                  "metadata": {"checkout_session": request.provider_reference, "payment_id": str(request.payment_id),
                               "reference": (session.get("metadata") or {}).get("reference", "")}}
        options = {"idempotency_key": request.idempotency_key} if request.idempotency_key else {}
        refund = self._call("refunds.create", lambda: self.client().v1.refunds.create(params, options))
        status = REFUND_STATUSES.get(refund.get("status"), "pending")
        return RefundResult(status=status, amount_cents=refund.get("amount") or request.amount_cents,
                            refund_reference=refund.get("id") or "",
                            detail="" if status != "failed" else f"remboursement {refund.get('status')}",
                            raw={"id": refund.get("id"), "status": refund.get("status"), "charge": refund.get("charge")})


def _code(error: stripe.StripeError) -> str:
    """Stripe's error code (``card_declined``, ``resource_missing``…), else its type."""
    body = error.json_body if isinstance(error.json_body, dict) else {}
    details = body.get("error") if isinstance(body.get("error"), dict) else {}
    return str(error.code or details.get("code") or details.get("type") or "")


def _euros(cents: int) -> str:
    whole = f"{cents // 100:,}".replace(",", "\u202f")
    return f"{whole},{cents % 100:02d} €"


@hookimpl
def marelle_register_payment_providers():
    return [StripeProvider]
