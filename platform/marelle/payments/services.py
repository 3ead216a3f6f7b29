"""Between the payment providers (plugins) and the settlement core.

The provider translates; the settlement core (:mod:`marelle.billing.settlement`) decides.
This module builds a provider for an attempt (from the settings snapshotted when the attempt
started, secrets read from the environment), turns an attempt into a
:class:`~marelle.plugin_api.PaymentRequest`, and hands what the provider reports to
``payment_attach_reference`` / ``payment_apply_status``. It changes no state itself.

Functions meant for other modules:

- :func:`start_at_provider` — the "Payer" click: ``provider.start`` then
  ``payment_attach_reference``;
- :func:`refresh_status` — ask ``provider.fetch_status`` and apply it (browser return,
  notification);
- :func:`handle_notification` — recognise a notification, look the payment up, refresh it;
- :func:`fetch_status_for_payment` — the ``fetch_status`` callable of
  :func:`marelle.billing.reconciliation.reconcile_pending`;
- :func:`provider_refund` — the ``provider_refund`` callable of
  :func:`marelle.billing.settlement.payment_refund`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from django.db import OperationalError, connection, transaction

from marelle.billing.models import PaymentAttempt, ProviderNotification
from marelle.core import clock
from marelle.plugin_api import (
    NotificationData,
    PaymentItem,
    PaymentProvider,
    PaymentRequest,
    PaymentStart,
    ProviderError,
    ProviderEvent,
    ProviderRejected,
    ProviderStatus,
    RefundRequest,
)
from marelle.plugin_api.manager import ProviderConfigurationError, create_payment_provider

logger = logging.getLogger(__name__)

State = PaymentAttempt.State
# How long a status update waits for the attempt's row lock before giving up (the
# notification view then answers 503 so that the provider retries).
LOCK_TIMEOUT = "3s"
# An attempt still "created" without a provider reference this long after it started never
# reached the provider: reconciliation expires it.
CREATED_WITHOUT_REFERENCE_EXPIRES_AFTER = timedelta(hours=2)


class PaymentBusy(Exception):
    """The attempt's row is locked by another status update: try again in a moment."""


class StartRefused(Exception):
    """The attempt cannot be started (any more); ``message`` is French, for the family."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- Building providers and requests ----------------------------------------------------


def provider_for_payment(payment: PaymentAttempt) -> PaymentProvider:
    """The attempt's provider, with the settings snapshotted when it started."""
    settings = payment.settings_snapshot if payment.settings_snapshot else payment.regie.payment_settings
    return create_payment_provider(payment.provider, settings or {})


def provider_for_regie(regie) -> PaymentProvider:
    return create_payment_provider(regie.payment_plugin, regie.payment_settings or {})


def payment_reference(payment: PaymentAttempt) -> str:
    """Marelle's reference of an attempt, derived from it: 6–30 ASCII letters and digits,
    stable, unique in the commune (PayFiP's ``refdet``): "M" + start date + id."""
    started = clock.local_now() if payment.created_at is None else payment.created_at.astimezone(clock.PARIS)
    return f"M{started:%y%m%d}{payment.pk:08d}"


def payment_description(payment: PaymentAttempt, commune_name: str = "") -> str:
    rows = list(payment.allocations.order_by("pk").values_list("invoice__number", "invoice__label"))
    numbers = [number for number, _ in rows if number]
    if numbers:
        label = ("Facture " if len(numbers) == 1 else "Factures ") + ", ".join(numbers)
    else:  # an immediate payment (adhesion, prepaid bookings): its invoice is numbered once paid
        label = ", ".join(text for _, text in rows if text) or "Paiement"
    return f"{label} – {commune_name}" if commune_name else label


def payer_email(payment: PaymentAttempt) -> str:
    if payment.created_by_id and getattr(payment.created_by, "email", ""):
        return payment.created_by.email
    guardian = payment.family.guardians.filter(position=1).select_related("user").first()
    if guardian is None:
        return ""
    return getattr(guardian, "email", "") or getattr(getattr(guardian, "user", None), "email", "") or ""


def payment_items(payment: PaymentAttempt) -> tuple[PaymentItem, ...]:
    """One line per invoice the attempt intends to pay (its allocations); none when they do
    not add up to the attempt's amount."""
    rows = list(payment.allocations.order_by("pk").values_list("invoice__number", "invoice__label", "amount_cents"))
    # An immediate payment's invoice has no number before it is paid: its label says what it is.
    items = tuple(PaymentItem(label=f"Facture {number}" if number else label or "Paiement", amount_cents=cents)
                  for number, label, cents in rows if cents > 0)
    return items if sum(item.amount_cents for item in items) == payment.amount_cents else ()


def build_request(payment: PaymentAttempt, *, return_url: str, notification_url: str) -> PaymentRequest:
    tenant = getattr(connection, "tenant", None)
    numbers = tuple(n for n in payment.allocations.order_by("pk").values_list("invoice__number", flat=True) if n)
    return PaymentRequest(
        payment_id=payment.pk, reference=payment_reference(payment), amount_cents=payment.amount_cents,
        payer_email=payer_email(payment), description=payment_description(payment, getattr(tenant, "name", "")),
        return_url=return_url, notification_url=notification_url, regie_code=payment.regie.code,
        commune_slug=getattr(tenant, "slug", connection.schema_name), invoice_numbers=numbers,
        items=payment_items(payment))


# --- Start ---------------------------------------------------------------------------------


def start_at_provider(*, payment: PaymentAttempt, return_url: str, notification_url: str) -> PaymentStart:
    """Create the payment at the provider and record its reference (settlement core's
    ``payment_attach_reference``). Returns where to send the browser.

    Only an online attempt still ``created`` without a provider reference can start; two
    clicks at once: the second gets :class:`StartRefused`. Raises :class:`ProviderError`
    (``ProviderUnavailable``: nothing happened, the family may retry;
    ``ProviderRejected``: the provider refused, the attempt is cancelled).
    """
    from marelle.billing.settlement import payment_apply_status, payment_attach_reference

    with transaction.atomic():
        try:
            locked = (PaymentAttempt.objects.select_for_update(nowait=True, no_key=True, of=("self",))
                      .select_related("regie", "family", "created_by").get(pk=payment.pk))
        except OperationalError:
            raise StartRefused("Ce paiement est déjà en cours d'ouverture dans une autre fenêtre.") from None
        _check_startable(locked)
        provider = provider_for_payment(locked)
        if not provider.accepts_online_payment:
            raise StartRefused("Ce moyen de paiement ne se règle pas en ligne.")
        request = build_request(locked, return_url=return_url, notification_url=notification_url)
        try:
            started = provider.start(request)
        except ProviderRejected as error:
            logger.warning("payment %s: start refused by %s: %s", locked.pk, locked.provider, error)
            rejected = error
        else:
            payment_attach_reference(payment_id=locked.pk, provider_reference=started.provider_reference)
            return started
    # Outside the start transaction: the refusal is applied by the settlement core.
    payment_apply_status(payment_id=payment.pk, status=State.CANCELLED, provider=payment.provider,
                         raw={"source": "start", "code": rejected.code, "message": rejected.message,
                              "detail": rejected.detail})
    raise rejected


def _check_startable(payment: PaymentAttempt) -> None:
    if payment.means != PaymentAttempt.Means.ONLINE or not payment.provider:
        raise StartRefused("Ce paiement ne se fait pas en ligne.")
    if payment.state == State.CREATED and not payment.provider_reference:
        return
    if payment.state == State.PAID:
        raise StartRefused("Ce paiement est déjà validé.")
    if payment.state in (State.CREATED, State.PENDING):
        raise StartRefused("Ce paiement a déjà été ouvert auprès du service de paiement : consultez son état "
                           "ci-dessous avant d'en recommencer un.")
    raise StartRefused("Ce paiement n'a pas abouti : recommencez depuis vos factures.")


# --- Status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refreshed:
    payment: PaymentAttempt
    status: ProviderStatus | None  # None when nothing was asked (no reference, final state)


def _apply(payment: PaymentAttempt, status: ProviderStatus, *, event: ProviderEvent | None = None,
           source: str) -> PaymentAttempt:
    """Apply a provider status through the settlement core, waiting at most LOCK_TIMEOUT."""
    from marelle.billing.settlement import payment_apply_status

    expected = payment_reference(payment)
    if status.reference and status.reference != expected:
        raise ProviderRejected(f"Le prestataire rattache l'opération {payment.provider_reference} à la référence "
                               f"{status.reference}, pas à {expected} : à vérifier.", code="reference")
    raw = {"source": source, "status": status.status, "detail": status.detail, "provider": dict(status.raw)}
    if event is not None:
        raw["event"] = {"kind": event.kind, **dict(event.raw)}
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            return payment_apply_status(
                payment_id=payment.pk, status=status.status, amount_cents=status.amount_cents,
                provider_reference=status.provider_reference or payment.provider_reference, raw=raw,
                event_id=event.event_id if event else "", provider=payment.provider,
                refunded_cents=status.refunded_cents)
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == "55P03":  # lock_not_available
            raise PaymentBusy(f"payment {payment.pk} is locked") from error
        raise


def refresh_status(*, payment: PaymentAttempt, event: ProviderEvent | None = None, source: str) -> Refreshed:
    """Ask the provider for the attempt's authoritative status and apply it.

    Nothing is asked for an attempt without a provider reference or already paid/refunded,
    except a paid one when ``event`` is about a refund (made at the provider, e.g. in Stripe's
    dashboard: the settlement core records what the provider says was refunded).
    Raises ``ProviderError`` (``ProviderUnavailable``: try later) and :class:`PaymentBusy`.
    """
    refund_news = event is not None and event.about_refund and payment.state in (State.PAID, State.PARTIALLY_REFUNDED)
    if not payment.provider_reference or (payment.state in (State.PAID, State.REFUNDED, State.PARTIALLY_REFUNDED)
                                          and not refund_news):
        return Refreshed(payment, None)
    provider = provider_for_payment(payment)
    status = provider.fetch_status(payment.provider_reference, started_at=payment.created_at)
    return Refreshed(_apply(payment, status, event=event, source=source), status)


def fetch_status_for_payment(payment: PaymentAttempt) -> tuple[str, int | None, str]:
    """For :func:`marelle.billing.reconciliation.reconcile_pending`: the provider's answer for
    one attempt as ``(status, amount_cents, provider_reference)``. Provider errors propagate
    (the reconciliation counts them and retries on its next run)."""
    if not payment.provider_reference:
        age = clock.now() - payment.created_at
        if age >= CREATED_WITHOUT_REFERENCE_EXPIRES_AFTER:
            return State.EXPIRED, None, ""
        return payment.state, None, ""
    provider = provider_for_payment(payment)
    status = provider.fetch_status(payment.provider_reference, started_at=payment.created_at)
    expected = payment_reference(payment)
    if status.reference and status.reference != expected:
        raise ProviderRejected(f"référence {status.reference} au lieu de {expected}", code="reference")
    return status.status, status.amount_cents, status.provider_reference or payment.provider_reference


# --- Notifications ------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationOutcome:
    http_status: int
    text: str
    payment: PaymentAttempt | None = None


def handle_notification(*, provider_id: str, data: NotificationData, regies) -> NotificationOutcome:
    """A provider called ``/paiement/notification/<provider_id>/``: recognise it with the
    provider of one of ``regies`` (those of the commune configured with it), find the
    attempt, ask the provider for the authoritative status, apply it.

    - not recognised by any régie's provider → 400;
    - unknown reference (forged, or another platform's) → 200, recorded, nothing changed;
    - provider unavailable → 503 (the provider retries; the reconciliation does too);
    - row locked by another update → 503.
    """
    event = None
    for regie in regies:
        try:
            provider = provider_for_regie(regie)
        except ProviderConfigurationError as error:
            logger.error("régie %s: provider %s cannot be built: %s", regie.code, provider_id, error)
            continue
        event = provider.parse_notification(data)
        if event is not None:
            break
    if event is None:
        logger.warning("notification for %s not recognised (%s from %s)", provider_id, data.method, data.remote_addr)
        return NotificationOutcome(400, "notification non reconnue")

    if event.event_id and ProviderNotification.objects.filter(provider=provider_id, event_id=event.event_id).exists():
        # A replayed or repeated event (Stripe delivers at least once): already applied, and
        # the provider is not asked again.
        return NotificationOutcome(200, "déjà reçu")
    payment = _payment_for_event(provider_id, event)
    if payment is None:
        logger.warning("notification %s for unknown reference %r from %s: ignored", provider_id,
                       event.provider_reference, data.remote_addr)
        ProviderNotification.objects.create(
            provider=provider_id, payment=None, event_id="",
            payload={"raw": {"event": {"kind": event.kind, **dict(event.raw)}, "remote_addr": data.remote_addr},
                     "reported": None},
            outcome="référence inconnue : ignorée")
        return NotificationOutcome(200, "ignoré")
    try:
        refreshed = refresh_status(payment=payment, event=event, source="notification")
    except PaymentBusy:
        return NotificationOutcome(503, "occupé, réessayez", payment)
    except ProviderError as error:
        logger.warning("notification %s for payment %s: status not available: %r", provider_id, payment.pk, error)
        if isinstance(error, ProviderRejected):
            return NotificationOutcome(200, "reçu, non appliqué", payment)
        return NotificationOutcome(503, "prestataire indisponible, réessayez", payment)
    return NotificationOutcome(200, "OK", refreshed.payment)


REFERENCE = re.compile(r"^M\d{6}(\d{8,})$")  # see payment_reference


def _payment_for_event(provider_id: str, event: ProviderEvent) -> PaymentAttempt | None:
    """The attempt an event is about: by the provider's reference, else by Marelle's reference
    when the event carries it (never by an empty reference)."""
    attempts = PaymentAttempt.objects.select_related("regie").filter(provider=provider_id)
    if event.provider_reference:
        found = attempts.filter(provider_reference=event.provider_reference).first()
        if found is not None:
            return found
    match = REFERENCE.match(event.reference or "")
    if match:
        found = attempts.filter(pk=int(match[1])).exclude(provider_reference="").first()
        if found is not None and payment_reference(found) == event.reference:
            return found
    return None


# --- Refunds ----------------------------------------------------------------------------------


def provider_refund(payment: PaymentAttempt, amount_cents: int) -> str:
    """For :func:`marelle.billing.settlement.payment_refund` (``external=False``): ask the
    attempt's provider to refund; returns the provider's refund reference."""
    provider = provider_for_payment(payment)
    if not provider.supports_refund:
        from marelle.billing.settlement import SettlementError

        raise SettlementError("Ce moyen de paiement ne permet pas de rembourser en ligne : remboursez par un autre "
                              "moyen et enregistrez un remboursement externe.")
    result = provider.refund(RefundRequest(
        payment_id=payment.pk, provider_reference=payment.provider_reference, amount_cents=amount_cents,
        idempotency_key=f"{connection.schema_name}:{payment.pk}:refund:{payment.refunded_cents}:{amount_cents}"))
    if result.status == "failed":
        from marelle.billing.settlement import SettlementError

        raise SettlementError(f"Le prestataire a refusé le remboursement : {result.detail or 'motif non précisé'}.")
    return result.refund_reference


