"""The settlement core: the one place where money received (or announced) changes invoices.

Every payment plugin, the régisseur's desk and the reconciliation task go through these
services; none of them touches ``Invoice.paid_cents`` by itself.

Principles (pretix's lessons, see shared/reference/architecture-anchors.md):

- A payment attempt is a row with its own state machine::

      created → pending → paid | refused | cancelled | expired
      paid → partially_refunded → refunded          (payment_refund only)

  ``payment_apply_status`` applies a provider's *authoritative* status (the plugin asked the
  provider; a webhook body is only a hint) under a row lock, once. A repeated, late or
  backward status changes nothing and is recorded as such; a success never becomes a
  failure. A failure (refused, cancelled, expired) may still become ``paid`` when the
  provider says the money arrived after all (the family paid after the reconciliation
  expired the attempt): money received is never ignored, and what the invoices no longer
  need goes to the family's credit.
- An amount that differs from the attempt's amount is never silently accepted: the attempt
  stays (or becomes) ``pending`` with an ``anomaly`` text for the régisseur, invoices are
  untouched, and the reconciliation task leaves it alone. The régisseur resolves it with
  ``payment_accept_reported_amount`` (then refunds any excess with ``payment_refund``).
- Allocation: ``Allocation`` rows of an attempt that is not paid yet are the *intended*
  invoices and amounts (the balances when the family clicked "Payer"). When the attempt is
  paid they are replaced by what was really allocated, oldest invoice first, each capped at
  the invoice's balance at that moment (another payment may have settled part of it in
  between); zero allocations are dropped. So for a paid (or refunded) attempt,
  ``sum(allocations)`` is what it currently pays on invoices, and
  ``amount - refunded - sum(allocations)`` is the part it left on the family's credit.
  ``FamilyCredit.balance_cents`` is the sum of those parts over the family's payments in the
  régie: using the credit (``credit_apply``) allocates those payments to the new invoice,
  so every euro on an invoice is traced to the payment that brought it.
- Lock order, everywhere, so that no two services deadlock: payment attempts (by pk), then
  invoices (by pk), then the family credit row. Payment and invoice rows are locked
  ``FOR NO KEY UPDATE``: inserting a row that references them (allocation, notification)
  does not wait for the lock.
- Every service is ``transaction.atomic``, takes keyword-only arguments, writes an audit
  row, and raises :class:`SettlementError` with a French message (``field`` names the
  input at fault when there is one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from marelle.audit.services import audit_record
from marelle.billing.models import (
    Allocation,
    FamilyCredit,
    Invoice,
    PaymentAttempt,
    ProviderNotification,
)
from marelle.catalog.models import Regie
from marelle.core import clock

logger = logging.getLogger(__name__)

State = PaymentAttempt.State
Means = PaymentAttempt.Means

UNPAID = (Invoice.Status.TO_PAY, Invoice.Status.PARTIALLY_PAID)
# Invoice statuses whose paid/unpaid status follows its paid_cents.
SETTLEABLE = (Invoice.Status.TO_PAY, Invoice.Status.PARTIALLY_PAID, Invoice.Status.PAID)
# A provider may report these; "refunded" goes through payment_refund (it needs an amount
# and the régisseur's decision on which invoices reopen).
PROVIDER_STATUSES = (State.CREATED, State.PENDING, State.PAID, State.REFUSED, State.CANCELLED, State.EXPIRED)
FAILURES = (State.REFUSED, State.CANCELLED, State.EXPIRED)
SUCCESSES = (State.PAID, State.PARTIALLY_REFUNDED, State.REFUNDED)
# Paid at the desk by the régisseur (online goes through payment_start; tresor_public is
# the Trésor public plugin's business).
MANUAL_MEANS = (Means.CHEQUE, Means.CASH, Means.CESU, Means.ANCV, Means.TRANSFER)
CASH_LIMIT_CENTS = 30_000

MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")


class SettlementError(Exception):
    """A refusal with a French message; ``field`` names the input at fault, if any."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


# --- Small helpers ---------------------------------------------------------------------


def euros(cents: int) -> str:
    """123456 → "1 234,56 €" (display only)."""
    sign, cents = ("-" if cents < 0 else ""), abs(cents)
    whole = f"{cents // 100:,}".replace(",", "\u202f")
    return f"{sign}{whole},{cents % 100:02d} €"


def french_date(day: date) -> str:
    return f"{'1er' if day.day == 1 else day.day} {MONTHS[day.month - 1]} {day.year}"


def _user_or_none(actor):
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None


def _require_staff(actor, *, allow_system: bool = False) -> None:
    if actor is None and allow_system:
        return
    if not getattr(actor, "is_commune_staff", False):
        raise SettlementError("Opération réservée au personnel de la commune.")


def _unique(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(i) for i in ids))


def _invoice_status_after(invoice: Invoice) -> str:
    if invoice.status not in SETTLEABLE:
        return invoice.status  # transmitted / cancelled / draft: not ours to change
    if invoice.paid_cents >= invoice.total_cents:
        return Invoice.Status.PAID
    return Invoice.Status.PARTIALLY_PAID if invoice.paid_cents > 0 else Invoice.Status.TO_PAY


def _lock_invoices(ids: Iterable[int]) -> dict[int, Invoice]:
    return {i.pk: i for i in Invoice.objects.select_for_update(no_key=True).filter(pk__in=list(ids)).order_by("pk")}


def _in_invoice_order(invoices: Iterable[Invoice]) -> list[Invoice]:
    """Oldest debt first: issue date, then number order (pk)."""
    return sorted(invoices, key=lambda i: (i.issued_at or datetime.min.replace(tzinfo=clock.PARIS), i.pk))


def _credit_add(*, family_id: int, regie_id: int, cents: int) -> None:
    if cents <= 0:
        return
    credit, _ = FamilyCredit.objects.get_or_create(family_id=family_id, regie_id=regie_id)
    FamilyCredit.objects.filter(pk=credit.pk).update(balance_cents=F("balance_cents") + cents)


def _locked_credit(*, family_id: int, regie_id: int) -> FamilyCredit | None:
    return FamilyCredit.objects.select_for_update().filter(family_id=family_id, regie_id=regie_id).first()


def credit_balance_cents(*, family, regie) -> int:
    """The family's credit in the régie (0 when none)."""
    return (FamilyCredit.objects.filter(family=family, regie=regie).values_list("balance_cents", flat=True)
            .first() or 0)


def _family_invoices(family, invoice_ids: list[int]) -> list[Invoice]:
    """The family's invoices among ``invoice_ids``; one that is not theirs reads as unknown
    (never reveal that another family's invoice exists)."""
    invoices = list(Invoice.objects.filter(pk__in=invoice_ids, family=family).select_related("regie"))
    if len(invoices) != len(invoice_ids):
        raise SettlementError("Facture introuvable pour ce foyer.", field="invoice_ids")
    return invoices


def _check_payable(invoices: list[Invoice]) -> None:
    for invoice in invoices:
        if invoice.kind != Invoice.Kind.INVOICE:
            raise SettlementError(f"« {invoice} » est un avoir : il ne se paie pas.", field="invoice_ids")
        if invoice.status == Invoice.Status.TRANSMITTED:
            raise SettlementError(f"La facture {invoice} a été transmise au Trésor public : elle se règle "
                                  "auprès du Trésor public.", field="invoice_ids")
        if invoice.status not in UNPAID or invoice.balance_cents <= 0:
            raise SettlementError(f"La facture {invoice} n'est pas à payer ({invoice.get_status_display().lower()}).",
                                  field="invoice_ids")


# --- Online payment windows -----------------------------------------------------------


@dataclass(frozen=True)
class PaymentWindowState:
    """Whether a régie takes online payments today, and until / from when."""

    open: bool
    rule: str  # "du 1 au 20 de chaque mois" ("" when always open)
    until: date | None  # open: last day of the current window (None: no end in sight)
    opens_on: date | None  # closed: next day it opens (None: never again)
    message: str


def _window_contains(window: dict, day: date) -> bool:
    if window.get("from_day") is not None:
        return int(window["from_day"]) <= day.day <= int(window["to_day"])
    start, end = date.fromisoformat(str(window["from_date"])), date.fromisoformat(str(window["to_date"]))
    return start <= day <= end


def _window_rule(window: dict) -> str:
    if window.get("from_day") is not None:
        return f"du {window['from_day']} au {window['to_day']} de chaque mois"
    start, end = date.fromisoformat(str(window["from_date"])), date.fromisoformat(str(window["to_date"]))
    return f"du {french_date(start)} au {french_date(end)}"


def online_payment_window(regie: Regie, *, today: date | None = None) -> PaymentWindowState:
    """The régie's online payment windows (YAML ``online_payment_windows``) seen from
    ``today`` (Paris). No window: always open."""
    windows = list(regie.online_payment_windows or [])
    today = today or clock.today()
    if not windows:
        return PaymentWindowState(True, "", None, None, "")
    rule = ", ".join(_window_rule(w) for w in windows)

    def is_open(day: date) -> bool:
        return any(_window_contains(w, day) for w in windows)

    horizon = 400
    if is_open(today):
        until = today
        for _ in range(horizon):
            if not is_open(until + timedelta(days=1)):
                break
            until += timedelta(days=1)
        else:
            until = None
        message = f"Paiement en ligne possible jusqu'au {french_date(until)}." if until else ""
        return PaymentWindowState(True, rule, until, None, message)

    candidates = [date.fromisoformat(str(w["from_date"])) for w in windows
                  if w.get("from_day") is None and date.fromisoformat(str(w["from_date"])) > today]
    if any(w.get("from_day") is not None for w in windows):
        candidates += [today + timedelta(days=n) for n in range(1, 63) if is_open(today + timedelta(days=n))][:1]
    opens_on = min(candidates) if candidates else None
    if opens_on:
        message = f"Paiement en ligne possible {rule} : à partir du {french_date(opens_on)}."
    else:
        message = f"Paiement en ligne possible {rule} : cette période est terminée, réglez auprès de la régie."
    return PaymentWindowState(False, rule, None, opens_on, message)


def online_payment_refusal(regie: Regie, *, today: date | None = None) -> str | None:
    """Why the régie's invoices cannot be paid online now (French), or None when they can."""
    from marelle.plugin_api.manager import get_payment_provider_class

    if not regie.payment_plugin:
        return (f"Les factures de la « {regie.label} » se règlent uniquement auprès de la régie "
                "(chèque, espèces, CESU, chèques vacances, virement) : pas de paiement en ligne.")
    provider = get_payment_provider_class(regie.payment_plugin)
    if provider is None:
        return f"Le paiement en ligne n'est pas disponible pour la « {regie.label} » : réglez auprès de la régie."
    if not provider.accepts_online_payment:
        return (f"Les factures de la « {regie.label} » sont transmises au Trésor public : elles se paient "
                "au Trésor public, pas sur le portail.")
    window = online_payment_window(regie, today=today)
    if not window.open:
        return window.message
    return None


# --- Allocation (shared by online, manual and anomaly resolution) ---------------------


def _allocate(payment: PaymentAttempt, invoice_ids: list[int]) -> dict:
    """Allocate ``payment.amount_cents`` to the invoices, oldest first, each up to its
    balance; the rest goes to the family's credit. Locks the invoices (pk order) and replaces
    the payment's allocation rows by what was really allocated. Returns a summary for the
    audit trail."""
    locked = _lock_invoices(invoice_ids)
    remaining = payment.amount_cents
    allocations, applied = [], {}
    for invoice in _in_invoice_order(locked.values()):
        if invoice.status not in UNPAID or invoice.kind != Invoice.Kind.INVOICE or invoice.balance_cents <= 0:
            continue
        cents = min(remaining, invoice.balance_cents)
        if cents <= 0:
            break
        invoice.paid_cents += cents
        invoice.status = _invoice_status_after(invoice)
        invoice.save(update_fields=["paid_cents", "status"])
        allocations.append(Allocation(payment=payment, invoice=invoice, amount_cents=cents))
        applied[invoice.number or str(invoice.pk)] = cents
        remaining -= cents
    payment.allocations.all().delete()  # the intended rows, if any
    Allocation.objects.bulk_create(allocations)
    _credit_add(family_id=payment.family_id, regie_id=payment.regie_id, cents=remaining)
    return {"allocated": applied, "credit_cents": remaining}


# --- Online payment: start --------------------------------------------------------------


@transaction.atomic
def payment_start(*, actor, family, invoice_ids: Iterable[int]) -> PaymentAttempt:
    """Start paying ``invoice_ids`` online: one attempt for the sum of their balances.

    The invoices must be the family's, of one régie, unpaid; the régie must take online
    payment (a plugin that accepts it) and be within its online payment windows today. The
    attempt is ``created`` with the régie's plugin and settings snapshotted; its allocation
    rows hold the *intended* amounts until it is paid. The plugin then starts the payment
    at the provider and records the provider's reference with
    :func:`payment_attach_reference`.
    """
    ids = _unique(invoice_ids)
    if not ids:
        raise SettlementError("Choisissez au moins une facture à payer.", field="invoice_ids")
    invoices = _family_invoices(family, ids)
    regies = {i.regie_id for i in invoices}
    if len(regies) > 1:
        raise SettlementError("Les factures payées ensemble doivent être de la même régie.", field="invoice_ids")
    _check_payable(invoices)
    regie = invoices[0].regie
    refusal = online_payment_refusal(regie)
    if refusal:
        raise SettlementError(refusal, field="invoice_ids")

    ordered = _in_invoice_order(invoices)
    amount = sum(i.balance_cents for i in ordered)
    payment = PaymentAttempt.objects.create(
        regie=regie, family=family, means=Means.ONLINE, state=State.CREATED, amount_cents=amount,
        provider=regie.payment_plugin, settings_snapshot=regie.payment_settings or {},
        created_by=_user_or_none(actor))
    Allocation.objects.bulk_create([Allocation(payment=payment, invoice=i, amount_cents=i.balance_cents)
                                    for i in ordered])
    audit_record(actor=actor, action="payment.started", target=f"payment:{payment.pk}", family_id=family.pk,
                 regie=regie.code, provider=payment.provider, amount_cents=amount,
                 invoices=[i.number for i in ordered])
    return payment


@transaction.atomic
def payment_attach_reference(*, payment_id: int, provider_reference: str) -> PaymentAttempt:
    """Record the provider's reference of an attempt (the plugin calls it once the provider
    accepted the start). Same reference again: no-op; another one: refused."""
    payment = _lock_payment(payment_id)
    provider_reference = (provider_reference or "").strip()
    if not provider_reference:
        raise SettlementError("Référence du prestataire manquante.")
    if payment.provider_reference == provider_reference:
        return payment
    if payment.provider_reference:
        raise SettlementError(f"Ce paiement a déjà la référence {payment.provider_reference}.")
    payment.provider_reference = provider_reference
    try:
        with transaction.atomic():
            payment.save(update_fields=["provider_reference"])
    except IntegrityError:
        raise SettlementError(f"La référence {provider_reference} est déjà celle d'un autre paiement.") from None
    audit_record(actor=None, action="payment.reference", target=f"payment:{payment.pk}", family_id=payment.family_id,
                 provider=payment.provider, provider_reference=provider_reference)
    return payment


def _lock_payment(payment_id: int) -> PaymentAttempt:
    try:
        return PaymentAttempt.objects.select_for_update(no_key=True).get(pk=payment_id)
    except PaymentAttempt.DoesNotExist:
        raise SettlementError("Paiement introuvable.") from None


# --- The provider's authoritative status -----------------------------------------------


@transaction.atomic
def payment_apply_status(*, payment_id: int, status: str, amount_cents: int | None = None,
                         provider_reference: str = "", raw: dict | None = None, event_id: str = "",
                         provider: str = "", refunded_cents: int | None = None) -> PaymentAttempt:
    """Apply the provider's authoritative ``status`` to the attempt, once.

    The caller (a plugin's notification view, the browser return, the reconciliation task)
    has asked the provider: ``status`` is one of created, pending, paid, refused, cancelled,
    expired; ``amount_cents`` the amount the provider says it collected (always give it
    for ``paid``; None means "not reported" and is accepted); ``raw`` the notification as
    received, kept for audit with what was made of it (``ProviderNotification``).

    - A notification whose ``event_id`` was already recorded for this provider changes
      nothing (not even a new record).
    - Transitions: created → pending → paid | refused | cancelled | expired (or directly
      from created); a failure may still become paid (late money is never ignored). A paid
      (or refunded) attempt never goes back or fails; repeated and backward statuses change
      nothing and are recorded as such.
    - ``paid`` with another amount than the attempt's: the attempt stays / becomes pending
      with an anomaly for the régisseur; invoices untouched.
    - ``paid``: allocated to its invoices (under row locks), any excess to the family's credit.
    - ``refunded_cents``: what the provider says it refunded in all (a refund made in its
      dashboard); for a paid attempt, what exceeds what Marelle already recorded is recorded
      as an external refund (``payment_refund``), so the same figure twice changes nothing.
    """
    status = str(status)
    if status not in PROVIDER_STATUSES:
        raise SettlementError(f"Statut de paiement inconnu : « {status} ».")
    if amount_cents is not None and (not isinstance(amount_cents, int) or amount_cents < 0):
        raise SettlementError(f"Montant invalide : {amount_cents!r} (centimes attendus).")
    payment = _lock_payment(payment_id)
    provider = provider or payment.provider
    if payment.provider and provider != payment.provider:
        raise SettlementError(f"Notification de « {provider} » pour un paiement « {payment.provider} ».")

    reported = {"status": status, "amount_cents": amount_cents, "provider_reference": provider_reference or ""}
    try:
        with transaction.atomic():
            notification = ProviderNotification.objects.create(
                provider=provider, payment=payment, event_id=event_id or "",
                payload={"raw": raw or {}, "reported": reported})
    except IntegrityError:
        logger.info("payment %s: duplicate event %s/%s ignored", payment.pk, provider, event_id)
        return payment

    before = payment.state
    outcome = _apply(payment, status, amount_cents, provider_reference or "")
    if isinstance(refunded_cents, int) and payment.state in (State.PAID, State.PARTIALLY_REFUNDED):
        extra = min(refunded_cents, payment.amount_cents) - payment.refunded_cents
        if extra > 0:
            try:
                with transaction.atomic():
                    payment = payment_refund(staff=None, payment_id=payment.pk, amount_cents=extra, external=True,
                                             by_provider=True, reason="remboursement annoncé par le prestataire")
                outcome = f"remboursement de {euros(extra)} annoncé par le prestataire"
            except SettlementError as error:
                # The books cannot take it (credit already spent…): kept for the régisseur,
                # acknowledged so that the provider stops sending it.
                logger.error("payment %s: refund of %s reported by the provider not recorded: %s", payment.pk,
                             extra, error.message)
                audit_record(actor=None, action="payment.refund_not_recorded", target=f"payment:{payment.pk}",
                             family_id=payment.family_id, amount_cents=extra, error=error.message)
                outcome = f"remboursement de {euros(extra)} annoncé, non enregistré : {error.message}"
    notification.outcome = outcome[:200]
    notification.save(update_fields=["outcome"])
    if payment.state == before:
        logger.info("payment %s: %s reported while %s: %s", payment.pk, status, before, outcome)
    return payment


def _apply(payment: PaymentAttempt, status: str, amount_cents: int | None, reference: str) -> str:
    current = payment.state
    target = f"payment:{payment.pk}"

    if current in SUCCESSES:
        if status == State.PAID:
            return f"répétition : déjà {payment.get_state_display().lower()}"
        audit_record(actor=None, action="payment.transition_ignored", target=target, family_id=payment.family_id,
                     state=current, reported=status)
        return f"ignoré : {current} → {status} (un paiement validé ne devient jamais un échec)"
    if status == current:
        return "répétition : rien à changer"

    if reference and payment.provider_reference and reference != payment.provider_reference:
        text = (f"Le prestataire annonce « {status} » avec la référence {reference}, différente de celle du "
                f"paiement ({payment.provider_reference}) : à vérifier.")
        _flag(payment, text, status=status)
        return "anomalie : référence différente"
    if reference and not payment.provider_reference:
        payment.provider_reference = reference
        try:
            with transaction.atomic():
                payment.save(update_fields=["provider_reference"])
        except IntegrityError:
            payment.provider_reference = ""
            _flag(payment, f"La référence {reference} annoncée par le prestataire est déjà celle d'un autre "
                           "paiement : à vérifier.", status=status)
            return "anomalie : référence déjà utilisée"

    if status == State.PAID:
        if amount_cents is not None and amount_cents != payment.amount_cents:
            text = (f"Montant reçu {euros(amount_cents)} différent du montant attendu "
                    f"{euros(payment.amount_cents)} : paiement en attente de vérification par la régie.")
            if payment.anomaly == text and current == State.PENDING:
                return "anomalie déjà signalée"
            _flag(payment, text, status=status, reported_cents=amount_cents)
            return f"anomalie : montant {amount_cents} ≠ {payment.amount_cents}"
        summary = _settle(payment)
        audit_record(actor=None, action="payment.paid", target=target, family_id=payment.family_id,
                     previous=current, amount_cents=payment.amount_cents, amount_verified=amount_cents is not None,
                     provider_reference=payment.provider_reference, **summary)
        return "payé" + (f" (après {current})" if current in FAILURES else "")

    if status in (State.CREATED, State.PENDING) and (current in FAILURES or status == State.CREATED):
        return f"ignoré : {current} → {status} (retour en arrière)"
    if status in FAILURES and current in FAILURES:
        return f"ignoré : déjà {current}"
    payment.state = status
    payment.save(update_fields=["state"])
    audit_record(actor=None, action=f"payment.{status}", target=target, family_id=payment.family_id,
                 previous=current)
    _count_state(status)
    return f"{current} → {status}"


def _count_state(state: str) -> None:
    """Prometheus: payments by state, counted once the change is committed."""
    from marelle.ops.metrics import count_payment_state

    transaction.on_commit(lambda: count_payment_state(state))


def _flag(payment: PaymentAttempt, text: str, *, status: str, reported_cents: int | None = None) -> None:
    """An anomaly for the régisseur: the attempt waits (pending), nothing is allocated."""
    previous = payment.state
    payment.anomaly = text
    if payment.state == State.CREATED:
        payment.state = State.PENDING
    payment.save(update_fields=["anomaly", "state", "provider_reference"])
    audit_record(actor=None, action="payment.anomaly", target=f"payment:{payment.pk}", family_id=payment.family_id,
                 previous=previous, reported=status, reported_cents=reported_cents, anomaly=text)


def _settle(payment: PaymentAttempt) -> dict:
    from marelle.billing.baskets import settle_basket_invoices

    intended = list(payment.allocations.order_by("pk").values_list("invoice_id", flat=True))
    # An immediate payment's draft invoice is numbered and issued now, so that it is settled.
    settle_basket_invoices(payment, intended)
    payment.state = State.PAID
    payment.settled_at = clock.now()
    payment.save(update_fields=["state", "settled_at", "amount_cents", "anomaly"])
    _count_state(State.PAID)
    return _allocate(payment, intended)


@transaction.atomic
def payment_accept_reported_amount(*, staff, payment_id: int) -> PaymentAttempt:
    """The régisseur accepts the amount the provider reported for an attempt flagged with an
    amount anomaly: the attempt becomes paid for that amount and is allocated (less: the
    invoices stay partially paid; more: the excess goes to the credit, refundable with
    :func:`payment_refund`)."""
    _require_staff(staff)
    payment = _lock_payment(payment_id)
    if payment.state != State.PENDING or not payment.anomaly:
        raise SettlementError("Ce paiement n'a pas d'anomalie de montant à traiter.")
    last = (payment.notifications.filter(payload__reported__status=State.PAID)
            .exclude(payload__reported__amount_cents=None).order_by("-pk").first())
    reported = last.payload["reported"]["amount_cents"] if last else None
    if reported is None or reported == payment.amount_cents:
        raise SettlementError("Aucun montant différent n'a été annoncé par le prestataire pour ce paiement.")
    expected = payment.amount_cents
    payment.amount_cents = reported
    payment.anomaly = (f"{payment.anomaly} — Montant reçu accepté par {staff.get_full_name() or staff.email} "
                       f"le {clock.local_now():%d/%m/%Y à %H:%M}.")
    summary = _settle(payment)
    audit_record(actor=staff, action="payment.anomaly_accepted", target=f"payment:{payment.pk}",
                 family_id=payment.family_id, expected_cents=expected, amount_cents=reported, **summary)
    return payment


# --- Desk payments ------------------------------------------------------------------------


@transaction.atomic
def payment_record_manual(*, staff, family, regie: Regie, means: str, amount_cents: int,
                          invoice_ids: Iterable[int], reference: str = "",
                          received_on: date | None = None) -> PaymentAttempt:
    """A payment received at the régie's desk (chèque, espèces up to 300 €, CESU, chèques
    vacances ANCV, virement): paid at once, allocated like an online payment (oldest invoice
    first, excess to the family's credit, a partial payment leaves the invoice partially
    paid). ``invoice_ids`` may be empty: the whole amount goes to the credit.

    ``received_on`` (default today) is kept in ``settings_snapshot["received_on"]`` until the
    model has a field for it.
    """
    _require_staff(staff)
    means = str(means)
    if means not in MANUAL_MEANS:
        raise SettlementError("Moyen de paiement non accepté au guichet (chèque, espèces, CESU, chèques vacances "
                              "ou virement).", field="means")
    if not isinstance(amount_cents, int) or amount_cents <= 0:
        raise SettlementError("Le montant doit être positif.", field="amount_cents")
    if means == Means.CASH and amount_cents > CASH_LIMIT_CENTS:
        raise SettlementError(f"Un paiement en espèces ne peut dépasser {euros(CASH_LIMIT_CENTS)}.",
                              field="amount_cents")
    reference = (reference or "").strip()
    if len(reference) > PaymentAttempt._meta.get_field("reference").max_length:
        raise SettlementError("Référence trop longue (40 caractères au plus).", field="reference")
    received_on = received_on or clock.today()
    if received_on > clock.today():
        raise SettlementError("La date de réception ne peut pas être dans le futur.", field="received_on")
    ids = _unique(invoice_ids)
    invoices = _family_invoices(family, ids) if ids else []
    if any(i.regie_id != regie.pk for i in invoices):
        raise SettlementError(f"Toutes les factures doivent être de la « {regie.label} ».", field="invoice_ids")
    _check_payable(invoices)

    payment = PaymentAttempt.objects.create(
        regie=regie, family=family, means=means, state=State.PAID, amount_cents=amount_cents, provider="",
        reference=reference, settings_snapshot={"received_on": received_on.isoformat()},
        created_by=_user_or_none(staff), settled_at=clock.now())
    summary = _allocate(payment, ids)
    audit_record(actor=staff, action="payment.recorded", target=f"payment:{payment.pk}", family_id=family.pk,
                 regie=regie.code, means=means, amount_cents=amount_cents, reference=reference,
                 received_on=received_on.isoformat(), **summary)
    return payment


# --- Family credit -------------------------------------------------------------------------


@transaction.atomic
def credit_note_to_credit(*, actor, invoice_id: int, amount_cents: int, reason: str) -> Invoice:
    """An avoir on an invoice already paid — a prepaid day cancelled within the rules: the
    amount leaves the invoice's allocations (latest payment first) and becomes the family's
    credit in the régie, usable on a next invoice (``credit_apply``). Returns the credit note.

    The invoice stays settled: its credit note covers what the allocations no longer do, so
    every euro of the family's credit is still traced to the payment that brought it."""
    from marelle.billing.invoicing import InvoicingError, credit_note_create

    rows = list(Allocation.objects.filter(invoice_id=invoice_id).order_by("-payment_id", "-pk"))
    payments = {p.pk: p for p in PaymentAttempt.objects.select_for_update(no_key=True)
                .filter(pk__in={a.payment_id for a in rows}).order_by("pk")}
    invoice = _lock_invoices([invoice_id]).get(int(invoice_id))
    if invoice is None or invoice.kind != Invoice.Kind.INVOICE:
        raise SettlementError("Facture introuvable.")
    allocated = sum(a.amount_cents for a in rows if payments[a.payment_id].state in SUCCESSES)
    if not 0 < amount_cents <= allocated:
        raise SettlementError(f"Avoir de {euros(amount_cents)} impossible : {euros(allocated)} réglés sur la facture "
                              f"{invoice}.")
    left = amount_cents
    for allocation in rows:
        if left == 0:
            break
        if payments[allocation.payment_id].state not in SUCCESSES:
            continue
        take = min(left, allocation.amount_cents)
        allocation.amount_cents -= take
        if allocation.amount_cents:
            allocation.save(update_fields=["amount_cents"])
        else:
            allocation.delete()
        left -= take
    invoice.paid_cents -= amount_cents
    invoice.save(update_fields=["paid_cents"])
    _credit_add(family_id=invoice.family_id, regie_id=invoice.regie_id, cents=amount_cents)
    try:
        credit = credit_note_create(actor=_user_or_none(actor), invoice_id=invoice.pk, amount_cents=amount_cents,
                                    reason=reason)
    except InvoicingError as error:
        raise SettlementError(str(error)) from None
    audit_record(actor=actor, action="credit.from_credit_note", target=f"invoice:{invoice.number}",
                 family_id=invoice.family_id, credit_note=credit.number, amount_cents=amount_cents)
    return credit


@transaction.atomic
def credit_apply(*, staff_or_system, family, regie: Regie, invoice_id: int) -> Invoice:
    """Use the family's credit in the régie on one of its unpaid invoices (up to its
    balance). The credit is traced to the payments that left it (oldest first): each
    gets an allocation on the invoice. ``staff_or_system``: a staff member, or None."""
    _require_staff(staff_or_system, allow_system=True)
    [invoice] = _family_invoices(family, [int(invoice_id)])
    if invoice.regie_id != regie.pk:
        raise SettlementError(f"Cette facture n'est pas de la « {regie.label} ».", field="invoice_id")
    _check_payable([invoice])

    payments = list(PaymentAttempt.objects.select_for_update(no_key=True)
                    .filter(family=family, regie=regie, state__in=(State.PAID, State.PARTIALLY_REFUNDED))
                    .order_by("pk"))
    invoice = _lock_invoices([invoice.pk])[invoice.pk]
    credit = _locked_credit(family_id=family.pk, regie_id=regie.pk)
    if credit is None or credit.balance_cents <= 0:
        raise SettlementError("Ce foyer n'a pas de crédit disponible dans cette régie.")
    if invoice.status not in UNPAID or invoice.balance_cents <= 0:
        raise SettlementError(f"La facture {invoice} est déjà réglée.", field="invoice_id")
    use = min(credit.balance_cents, invoice.balance_cents)

    allocated = dict(Allocation.objects.filter(payment__in=payments).values("payment_id")
                     .annotate(total=Sum("amount_cents")).values_list("payment_id", "total"))
    left, sources, rows = use, {}, []
    for payment in payments:
        free = payment.amount_cents - payment.refunded_cents - allocated.get(payment.pk, 0)
        take = min(free, left)
        if take <= 0:
            continue
        rows.append(Allocation(payment=payment, invoice=invoice, amount_cents=take))
        sources[payment.pk] = take
        left -= take
        if not left:
            break
    if left:
        # Credit that no payment explains (should not happen): used all the same, and said.
        logger.warning("credit of family %s in régie %s: %s cents not traced to a payment", family.pk, regie.pk, left)
    Allocation.objects.bulk_create(rows)
    invoice.paid_cents += use
    invoice.status = _invoice_status_after(invoice)
    invoice.save(update_fields=["paid_cents", "status"])
    FamilyCredit.objects.filter(pk=credit.pk).update(balance_cents=F("balance_cents") - use)
    audit_record(actor=staff_or_system, action="credit.applied", target=f"invoice:{invoice.number}",
                 family_id=family.pk, regie=regie.code, amount_cents=use, from_payments=sources, untraced_cents=left)
    invoice.refresh_from_db()
    return invoice


# --- Refunds -------------------------------------------------------------------------------

# Extension point for the plugins issue: ``provider_refund(payment, amount_cents) -> str``
# asks the payment's provider to refund and returns the provider's refund reference (or
# raises, and nothing is recorded). Called under the attempt's row lock, so two refunds of
# the same attempt never both reach the provider.
ProviderRefund = Callable[[PaymentAttempt, int], str]


@transaction.atomic
def payment_refund(*, staff, payment_id: int, amount_cents: int, external: bool = True,
                   provider_refund: ProviderRefund | None = None, reason: str = "",
                   by_provider: bool = False) -> PaymentAttempt:
    """Refund all or part of a paid attempt.

    ``external=True``: the régie refunded by other means (virement, cash…), recorded here.
    ``external=False``: refunded through the provider by ``provider_refund`` (see
    :data:`ProviderRefund`; the payment plugins supply it when their provider supports it).

    What the refund takes back comes first from what the payment left on the family's
    credit (as far as the credit still holds it), then from its invoices, latest first:
    their ``paid_cents`` go down and they go back to partially paid / to pay.

    ``by_provider=True`` (``payment_apply_status`` only): the provider reports a refund made
    outside Marelle; no staff, recorded as external.
    """
    _require_staff(staff, allow_system=by_provider and external)
    payment = _lock_payment(payment_id)
    if payment.state not in (State.PAID, State.PARTIALLY_REFUNDED):
        raise SettlementError("Seul un paiement validé peut être remboursé.")
    refundable = payment.amount_cents - payment.refunded_cents
    if not isinstance(amount_cents, int) or not 0 < amount_cents <= refundable:
        raise SettlementError(f"Montant du remboursement invalide (au plus {euros(refundable)}).",
                              field="amount_cents")
    if not external and provider_refund is None:
        raise SettlementError("Le remboursement par le prestataire n'est pas disponible pour ce paiement : "
                              "remboursez par un autre moyen et enregistrez un remboursement externe.",
                              field="external")

    allocations = list(payment.allocations.order_by("pk"))
    invoices = _lock_invoices({a.invoice_id for a in allocations})
    credit = _locked_credit(family_id=payment.family_id, regie_id=payment.regie_id)
    on_credit = refundable - sum(a.amount_cents for a in allocations)
    from_credit = min(amount_cents, max(on_credit, 0), credit.balance_cents if credit else 0)
    if from_credit:
        FamilyCredit.objects.filter(pk=credit.pk).update(balance_cents=F("balance_cents") - from_credit)
    left, reopened = amount_cents - from_credit, {}
    order = {inv.pk: rank for rank, inv in enumerate(_in_invoice_order(invoices.values()))}
    for allocation in sorted(allocations, key=lambda a: (order[a.invoice_id], a.pk), reverse=True):
        if not left:
            break
        take = min(left, allocation.amount_cents)
        invoice = invoices[allocation.invoice_id]
        invoice.paid_cents -= take
        invoice.status = _invoice_status_after(invoice)
        invoice.save(update_fields=["paid_cents", "status"])
        if take == allocation.amount_cents:
            allocation.delete()
        else:
            allocation.amount_cents -= take
            allocation.save(update_fields=["amount_cents"])
        key = invoice.number or str(invoice.pk)
        reopened[key] = reopened.get(key, 0) + take
        left -= take
    if left:
        # What the payment left on the credit was used elsewhere, then spent: should not happen.
        raise SettlementError("Le remboursement dépasse ce que ce paiement règle encore (crédit déjà utilisé).",
                              field="amount_cents")
    # Last, once the books are known to balance: if the provider refuses (raises), nothing
    # above is kept.
    provider_reference = "" if external else (provider_refund(payment, amount_cents) or "")

    payment.refunded_cents += amount_cents
    payment.state = State.REFUNDED if payment.refunded_cents == payment.amount_cents else State.PARTIALLY_REFUNDED
    payment.save(update_fields=["refunded_cents", "state"])
    audit_record(actor=staff, action="payment.refunded", target=f"payment:{payment.pk}", family_id=payment.family_id,
                 amount_cents=amount_cents, external=external, provider_reference=provider_reference,
                 from_credit_cents=from_credit, invoices=reopened, reason=reason.strip())
    return payment
