"""Immediate payment: adhesions and prepaid bookings go into a basket paid online at once.

- An adhesion paid immediately (YAML ``enrolment.adhesion.payment: immediate``) or the
  bookings of a service with ``booking.prepayment`` make a :class:`Basket` for the family
  and the service's régie, with a draft invoice holding the lines, and an expiry
  (``booking.prepayment.basket_expiry_minutes``; adhesions: the same setting, else 30 min).
- "Payer" (:func:`basket_checkout`) starts a payment attempt for the draft invoice through
  the same plugins as any invoice (online payment windows do not apply: the family cannot
  wait for the window to book).
- The settlement core calls :func:`settle_basket_invoices` when the attempt is paid: the
  invoice is numbered and issued (the régie's gapless numbering), then settled like any
  other, and the basket's items are confirmed (adhesion paid: bookings open).
- :func:`expire_unpaid_baskets` (Celery beat, every 5 minutes in every commune) releases
  the bookings of baskets left unpaid after their expiry; a basket whose payment is in
  progress at the provider waits :data:`PAYMENT_PAGE_GRACE` more. Money that arrives for an
  expired basket is never lost: it goes to the family's credit.

Lock order (as in the settlement core): payment attempt, basket, invoice counter, invoices,
enrolment / bookings.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.db.models import Q

from marelle.audit.services import audit_record
from marelle.billing.models import (
    Allocation,
    Basket,
    BasketItem,
    Invoice,
    InvoiceLine,
    PaymentAttempt,
)
from marelle.billing.pricing import format_euros
from marelle.core import clock

logger = logging.getLogger(__name__)

DEFAULT_EXPIRY_MINUTES = 30
AWAITING_ADHESION = "awaiting_payment"  # booking.Enrolment.Adhesion.AWAITING_PAYMENT (no import cycle)
# How long past its expiry a basket waits for a payment the family started at the bank.
PAYMENT_PAGE_GRACE = timedelta(minutes=20)
State = PaymentAttempt.State
IN_FLIGHT = (State.CREATED, State.PENDING)


class BasketError(Exception):
    """A refusal with a French message for the family."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _service_conf(service):
    from marelle.core.commune import current_config

    return next((s for s in current_config().services if s.code == service.code), None)


def is_prepaid(service) -> bool:
    """The service's bookings are paid when booked (YAML ``booking.prepayment``)."""
    conf = _service_conf(service)
    return bool(conf and conf.booking.prepayment)


def payable_baskets(family):
    """The family's baskets that can still be paid, as a queryset."""
    return Basket.objects.filter(family=family, state=Basket.State.OPEN, expires_at__gt=clock.now())


def open_basket_for(reservation) -> Basket | None:
    """The open basket paying a réservation's bookings: the one its submission just made, or
    (a replayed submission, a request accepted later) the one on record."""
    if hasattr(reservation, "basket"):
        return reservation.basket
    return (Basket.objects.filter(state=Basket.State.OPEN, items__booking__reservation=reservation)
            .select_related("invoice").first())


def _expiry_minutes(service) -> int:
    conf = _service_conf(service)
    prepayment = conf.booking.prepayment if conf else None
    return prepayment.basket_expiry_minutes if prepayment else DEFAULT_EXPIRY_MINUTES


def _adhesion_label(service) -> str:
    conf = _service_conf(service)
    return conf.enrolment.adhesion.label if conf and conf.enrolment.adhesion else "Adhésion"


def online_refusal(regie) -> str | None:
    """Why this régie cannot take an immediate online payment (French), or None."""
    from marelle.plugin_api.manager import get_payment_provider_class

    provider = get_payment_provider_class(regie.payment_plugin) if regie.payment_plugin else None
    if provider is None or not provider.accepts_online_payment:
        return (f"Le paiement en ligne n'est pas proposé par la « {regie.label} » : réglez auprès de la régie, "
                "l'agent l'enregistrera aussitôt.")
    return None


def _new_basket(*, family, regie, label: str, minutes: int, period_start, period_end) -> Basket:
    invoice = Invoice.objects.create(regie=regie, family=family, label=label[:150], period_start=period_start,
                                     period_end=period_end, status=Invoice.Status.DRAFT)
    return Basket.objects.create(family=family, regie=regie, invoice=invoice, label=label[:150],
                                 expires_at=clock.now() + timedelta(minutes=minutes))


# --- Filling a basket -----------------------------------------------------------------------


@transaction.atomic
def basket_for_adhesion(*, actor, family, enrolment_id: int) -> Basket:
    """The open basket paying this enrolment's adhesion (made on first call, reused while it
    is open and not expired)."""
    from marelle.booking.models import Enrolment

    enrolment = (Enrolment.objects.select_for_update(of=("self",))
                 .select_related("child", "service__regie", "period").filter(pk=enrolment_id,
                                                                             child__family=family).first())
    if enrolment is None:
        raise BasketError("Inscription introuvable.")
    if enrolment.adhesion != Enrolment.Adhesion.AWAITING_PAYMENT or enrolment.adhesion_amount_cents <= 0:
        raise BasketError("Aucune adhésion n'est à payer pour cette inscription.")
    regie = enrolment.service.regie
    refusal = online_refusal(regie)
    if refusal:
        raise BasketError(refusal)
    existing = (Basket.objects.filter(state=Basket.State.OPEN, expires_at__gt=clock.now(),
                                      items__enrolment=enrolment, items__kind=BasketItem.Kind.ADHESION)
                .order_by("-pk").first())
    if existing:
        return existing
    child = enrolment.child
    label = (f"{_adhesion_label(enrolment.service)} – {enrolment.service.label} – {child.first_name} "
             f"({enrolment.period.label})")
    basket = _new_basket(family=family, regie=regie, label=label, minutes=_expiry_minutes(enrolment.service),
                         period_start=enrolment.period.start, period_end=enrolment.period.end)
    BasketItem.objects.create(basket=basket, kind=BasketItem.Kind.ADHESION, enrolment=enrolment,
                              amount_cents=enrolment.adhesion_amount_cents)
    _write_invoice_lines(basket)
    audit_record(actor=actor, action="basket.created", target=f"basket:{basket.pk}", family_id=family.pk,
                 kind="adhesion", enrolment=enrolment.pk, amount_cents=enrolment.adhesion_amount_cents)
    return basket


def basket_for_reservation(*, actor, reservation, accepted_by_staff: bool = False) -> Basket | None:
    """Put the réservation's accepted, priced bookings not in a basket yet into one when the
    service is paid in advance (``booking.prepayment``). Called inside the transaction that
    accepted them (the family's submission, or staff accepting requests: then the family has
    ``after_acceptance_hours`` to pay), so an accepted booking never exists without its
    basket. None when nothing is to be paid now."""
    from marelle.booking.models import Booking

    enrolment = reservation.enrolment
    conf = _service_conf(enrolment.service)
    if conf is None or conf.booking.prepayment is None:
        return None
    bookings = list(reservation.lines.filter(action=Booking.Action.BOOK, state=Booking.State.ACCEPTED,
                                             basket_item__isnull=True)
                    .filter(Q(unit_price_cents__gt=0) | Q(surcharge_cents__gt=0)).order_by("day", "unit_id"))
    if not bookings:
        return None
    regie = enrolment.service.regie
    if online_refusal(regie):
        # Misconfigured (prepayment without online payment): billed on the monthly invoice.
        logger.warning("service %s: prepayment without online payment; bookings invoiced later",
                       enrolment.service.code)
        return None
    child = reservation.child
    label = f"Réservation {reservation.number} – {enrolment.service.label} – {child.first_name}"
    prepayment = conf.booking.prepayment
    minutes = prepayment.after_acceptance_hours * 60 if accepted_by_staff else prepayment.basket_expiry_minutes
    basket = _new_basket(family=child.family, regie=regie, label=label, minutes=minutes,
                         period_start=bookings[0].day, period_end=bookings[-1].day)
    BasketItem.objects.bulk_create([
        BasketItem(basket=basket, kind=BasketItem.Kind.BOOKING, enrolment=enrolment, booking=b,
                   amount_cents=b.unit_price_cents + b.surcharge_cents) for b in bookings])
    _write_invoice_lines(basket)
    audit_record(actor=actor, action="basket.created", target=f"basket:{basket.pk}", family_id=child.family_id,
                 kind="bookings", reservation=reservation.number, amount_cents=basket.invoice.total_cents)
    return basket


def _write_invoice_lines(basket: Basket) -> None:
    """(Re)write the draft invoice from the items still due: one line per child, unit and
    price (dates listed), late-booking surcharges apart, like the invoicing run's lines."""
    invoice = basket.invoice
    InvoiceLine.objects.filter(invoice=invoice).delete()
    lines = []
    grouped: dict[tuple, list] = defaultdict(list)
    items = list(basket.items.select_related("enrolment__child", "enrolment__service", "booking__unit__service")
                 .order_by("pk"))
    for item in items:
        child = item.enrolment.child
        if item.kind == BasketItem.Kind.ADHESION:
            service = item.enrolment.service
            lines.append(InvoiceLine(invoice=invoice, child=child, child_name=f"{child.first_name} {child.last_name}",
                                     service=service, label=f"{_adhesion_label(service)} – {service.label}",
                                     quantity=1, unit_price_cents=item.amount_cents, amount_cents=item.amount_cents))
            continue
        booking = item.booking
        grouped[(child.pk, booking.unit_id, booking.unit_price_cents, False)].append(booking)
        if booking.surcharge_cents:
            grouped[(child.pk, booking.unit_id, booking.surcharge_cents, True)].append(booking)
    children = {item.enrolment.child.pk: item.enrolment.child for item in items}
    for (child_id, _unit_id, price, surcharge), bookings in grouped.items():
        child, unit = children[child_id], bookings[0].unit
        label = f"Supplément réservation tardive – {unit.label}" if surcharge else f"{unit.service.label} – {unit.label}"
        lines.append(InvoiceLine(invoice=invoice, child=child, child_name=f"{child.first_name} {child.last_name}",
                                 service=unit.service, unit=unit, label=label,
                                 dates=[b.day.isoformat() for b in bookings], quantity=len(bookings),
                                 unit_price_cents=price, amount_cents=price * len(bookings)))
    for position, line in enumerate(lines):
        line.position = position
    InvoiceLine.objects.bulk_create(lines)
    invoice.total_cents = sum(line.amount_cents for line in lines)
    invoice.save(update_fields=["total_cents"])


def open_baskets(family) -> list[Basket]:
    """The family's baskets still payable, soonest expiry first, with ``total_cents``,
    ``deadline`` (Paris time) and ``lines`` ready for display."""
    baskets = list(payable_baskets(family).select_related("invoice", "regie").prefetch_related("invoice__lines").order_by("expires_at"))
    for basket in baskets:
        basket.total_cents = basket.invoice.total_cents
        basket.deadline = basket.expires_at.astimezone(clock.PARIS)
        basket.total_display = format_euros(basket.total_cents)
        basket.lines = list(basket.invoice.lines.all())
        for line in basket.lines:
            line.price_display, line.amount_display = format_euros(line.unit_price_cents), format_euros(line.amount_cents)
            line.days_display = ", ".join(f"{d[8:10]}/{d[5:7]}" for d in line.dates)
        basket.releases_bookings = any(item.kind == BasketItem.Kind.BOOKING for item in basket.items.all())
    return baskets


def next_steps(payment: PaymentAttempt) -> list[tuple[str, str]]:
    """(label, url) of what a paid immediate payment opened: the plannings of the children
    whose adhesion it paid, shown on the payment's return page."""
    from django.urls import reverse

    if payment.state != State.PAID:
        return []
    items = (BasketItem.objects.filter(kind=BasketItem.Kind.ADHESION, basket__state=Basket.State.PAID,
                                       basket__invoice__allocations__payment=payment)
             .select_related("enrolment__child", "enrolment__service").order_by("pk"))
    return [(f"Réserver les jours de {item.enrolment.child.first_name} – {item.enrolment.service.label}",
             reverse("booking:planning", args=[item.enrolment_id])) for item in items]


def baskets_by_regie(baskets: list[Basket]) -> list[dict]:
    """Open baskets grouped by régie, with what paying a whole group costs."""
    groups: dict[int, dict] = {}
    for basket in baskets:
        group = groups.setdefault(basket.regie_id, {"regie": basket.regie, "baskets": [], "total_cents": 0})
        group["baskets"].append(basket)
        group["total_cents"] += basket.total_cents
    for group in groups.values():
        group["total_display"] = format_euros(group["total_cents"])
    return list(groups.values())


# --- Paying -----------------------------------------------------------------------------------


def _lock_basket(basket_id: int, *, family=None) -> Basket:
    baskets = Basket.objects.select_for_update(of=("self",)).select_related("regie", "invoice")
    if family is not None:
        baskets = baskets.filter(family=family)
    basket = baskets.filter(pk=basket_id).first()
    if basket is None:
        raise BasketError("Paiement introuvable pour ce foyer.")
    return basket


def _drop_released_bookings(basket: Basket) -> None:
    """Bookings cancelled since the basket was made are not paid for."""
    from marelle.booking.models import Booking

    gone = basket.items.filter(kind=BasketItem.Kind.BOOKING).exclude(booking__state=Booking.State.ACCEPTED)
    if gone.exists():
        gone.delete()
        _write_invoice_lines(basket)


@transaction.atomic
def basket_checkout(*, actor, family, basket_ids: list[int]) -> PaymentAttempt:
    """Start paying open baskets of one régie online, together (several children's adhesions
    in one payment, as families expect): one payment attempt for their draft invoices, with
    the régie's plugin and settings snapshotted; then ``payments:start`` sends the family to
    the provider. The same selection clicked twice before reaching the provider gets the same
    attempt back."""
    ids = sorted({int(i) for i in basket_ids})
    if not ids:
        raise BasketError("Choisissez au moins un paiement.")
    baskets = [_lock_basket(basket_id, family=family) for basket_id in ids]
    if len({b.regie_id for b in baskets}) > 1:
        raise BasketError("Les paiements réglés ensemble doivent être de la même régie.")
    for basket in baskets:
        if basket.state == Basket.State.PAID:
            raise BasketError(f"« {basket.label} » a déjà été payé.")
        if basket.state == Basket.State.EXPIRED or basket.expires_at <= clock.now():
            raise BasketError(f"Le délai de paiement de « {basket.label} » est dépassé : les réservations "
                              "correspondantes ont été libérées. Vous pouvez réserver à nouveau.")
    regie = baskets[0].regie
    refusal = online_refusal(regie)
    if refusal:
        raise BasketError(refusal)
    for basket in baskets:
        _drop_released_bookings(basket)
        paid = [i.enrolment.child.first_name for i in basket.items.filter(kind=BasketItem.Kind.ADHESION)
                .select_related("enrolment__child").exclude(enrolment__adhesion=AWAITING_ADHESION)]
        if paid:  # settled meanwhile (at the desk, or a late payment of an earlier basket)
            raise BasketError(f"L'adhésion de {', '.join(paid)} est déjà payée : rien à régler ici.")
    invoices = [b.invoice for b in baskets if b.invoice.total_cents > 0]
    if not invoices:
        raise BasketError("Il ne reste rien à payer.")
    amount = sum(i.total_cents for i in invoices)
    wanted = {i.pk for i in invoices}
    for current in (PaymentAttempt.objects.filter(allocations__invoice__in=invoices, state=State.CREATED,
                                                  provider_reference="", amount_cents=amount)
                    .prefetch_related("allocations").distinct().order_by("-pk")):
        if {a.invoice_id for a in current.allocations.all()} == wanted:
            return current
    payment = PaymentAttempt.objects.create(
        regie=regie, family=family, means=PaymentAttempt.Means.ONLINE, state=State.CREATED, amount_cents=amount,
        provider=regie.payment_plugin, settings_snapshot=regie.payment_settings or {},
        created_by=actor if getattr(actor, "pk", None) else None)
    Allocation.objects.bulk_create([Allocation(payment=payment, invoice=i, amount_cents=i.total_cents)
                                    for i in invoices])
    audit_record(actor=actor, action="payment.started", target=f"payment:{payment.pk}", family_id=family.pk,
                 regie=regie.code, provider=payment.provider, amount_cents=amount, baskets=ids)
    return payment


def settle_basket_invoices(payment: PaymentAttempt, invoice_ids: list[int]) -> None:
    """Called by the settlement core, under the payment's lock, when an attempt is paid and
    before its money is allocated: the draft invoice of an open basket among ``invoice_ids``
    is numbered and issued (so the allocation settles it), and the basket's items confirmed.

    A basket already expired released its bookings: its draft stays a draft and the money goes
    to the family's credit. An expired basket of adhesions only released nothing: paid late, it
    is settled all the same while those adhesions still wait for their payment (else the money
    goes to credit: the adhesion was paid meanwhile)."""
    from marelle.billing.invoicing import debtors_of, reserve_invoice_numbers
    from marelle.booking.services import enrolment_adhesion_paid

    baskets = list(Basket.objects.select_for_update(of=("self",)).select_related("regie", "invoice")
                   .filter(invoice_id__in=invoice_ids, state__in=(Basket.State.OPEN, Basket.State.EXPIRED))
                   .prefetch_related("items__enrolment").order_by("pk"))
    now = clock.now()
    for basket in baskets:
        if basket.state == Basket.State.EXPIRED:
            items = list(basket.items.all())
            if any(i.kind != BasketItem.Kind.ADHESION or i.enrolment.adhesion != AWAITING_ADHESION for i in items):
                continue
        invoice = basket.invoice
        [number] = reserve_invoice_numbers(basket.regie, clock.today().year, 1)
        invoice.number, invoice.status, invoice.issued_at, invoice.due_date = number, Invoice.Status.TO_PAY, now, \
            clock.today()
        invoice.debtor = debtors_of([invoice.family_id]).get(invoice.family_id, {})
        invoice.save(update_fields=["number", "status", "issued_at", "due_date", "debtor"])
        basket.state, basket.closed_at = Basket.State.PAID, now
        basket.save(update_fields=["state", "closed_at"])
        for item in basket.items.filter(kind=BasketItem.Kind.ADHESION):
            enrolment_adhesion_paid(actor=None, enrolment_id=item.enrolment_id, source="paiement en ligne")
        audit_record(actor=None, action="basket.paid", target=f"basket:{basket.pk}", family_id=basket.family_id,
                     invoice=number, payment=payment.pk)
        transaction.on_commit(lambda pk=invoice.pk: _invoice_issued(pk))


def _invoice_issued(invoice_id: int) -> None:
    from marelle.billing.tasks import invoices_issued_chunk

    invoices_issued_chunk.delay([invoice_id])


# --- Cancelling a prepaid day ------------------------------------------------------------------


def credit_cancelled_prepaid_days(*, actor, bookings, reservation=None) -> list[Invoice]:
    """Days cancelled within the rules that were paid in advance: one avoir per invoice, the
    amount on the family's credit (used on a next invoice). Inside the réservation's
    transaction. Days still in an unpaid basket are simply left out of it at payment."""
    from marelle.billing.settlement import credit_note_to_credit

    paid = dict(BasketItem.objects.filter(booking__in=bookings, basket__state=Basket.State.PAID)
                .values_list("booking_id", "basket__invoice_id"))
    by_invoice: dict[int, list] = defaultdict(list)
    for booking in bookings:
        if booking.pk in paid:
            by_invoice[paid[booking.pk]].append(booking)
    notes = []
    for invoice_id, days in sorted(by_invoice.items()):
        amount = sum(b.unit_price_cents + b.surcharge_cents for b in days)
        listed = ", ".join(f"{b.day:%d/%m}" for b in sorted(days, key=lambda b: b.day))
        why = f"réservation {reservation.number}" if reservation else "annulation acceptée par la commune"
        notes.append(credit_note_to_credit(actor=actor, invoice_id=invoice_id, amount_cents=amount,
                                           reason=f"jours annulés ({listed}), {why}"))
    return notes


# --- Expiry -----------------------------------------------------------------------------------


def expire_unpaid_baskets_now(*, limit: int = 500) -> dict:
    """Release the bookings of open baskets past their expiry (one transaction each). A
    basket with a payment still under way at the provider is left for the reconciliation."""
    counts = Counter(expired=0, waiting_for_payment=0)
    due = list(Basket.objects.filter(state=Basket.State.OPEN, expires_at__lte=clock.now())
               .order_by("expires_at", "pk").values_list("pk", flat=True)[:limit])
    for basket_id in due:
        counts[_expire_one(basket_id)] += 1
    return dict(counts)


@transaction.atomic
def _expire_one(basket_id: int) -> str:
    from marelle.booking.services import release_unpaid_bookings

    basket = _lock_basket(basket_id)
    if basket.state != Basket.State.OPEN:
        return "already_closed"
    # A family on the bank's page at the deadline may finish paying: its places wait a little
    # (a PayFiP page lives 15 minutes), not for hours (abandoned pages only expire at the bank
    # much later). Money arriving after the release is kept as the family's credit.
    in_flight = PaymentAttempt.objects.filter(allocations__invoice=basket.invoice, state__in=IN_FLIGHT).exclude(
        state=State.CREATED, provider_reference="")
    if clock.now() < basket.expires_at + PAYMENT_PAGE_GRACE and in_flight.exists():
        return "waiting_for_payment"
    booking_ids = list(basket.items.filter(kind=BasketItem.Kind.BOOKING).values_list("booking_id", flat=True))
    released = release_unpaid_bookings(booking_ids=booking_ids)
    basket.state, basket.closed_at = Basket.State.EXPIRED, clock.now()
    basket.save(update_fields=["state", "closed_at"])
    audit_record(actor=None, action="basket.expired", target=f"basket:{basket.pk}", family_id=basket.family_id,
                 released=released)
    return "expired"


@shared_task(name="marelle.billing.baskets.expire_unpaid_baskets")
def expire_unpaid_baskets() -> dict:
    """Per commune (fanned out by beat every 5 minutes)."""
    counts = expire_unpaid_baskets_now()
    if counts["expired"]:
        logger.info("baskets expired: %s", counts)
    return counts
