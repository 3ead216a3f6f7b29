"""Reads for the billing pages, the PDF and the e-mails: invoices and payments of a family,
how a régie is paid (online, at the desk, Trésor public) and when, the régisseur's lists.

Every list here costs a fixed number of queries whatever the number of invoices, lines or
payments it returns. Amounts stay in integer cents; ``*_display`` strings are the French
formatting of them (``1 234,50 €``) for templates that cannot call ``format_euros``.
"""

from __future__ import annotations

import calendar
import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, F, Min, OuterRef, Prefetch, Q, Subquery, Sum, Value
from django.db.models.functions import Concat, TruncDate
from django.utils.formats import date_format

from marelle.audit.models import AuditEvent
from marelle.billing.models import Allocation, Invoice, InvoiceLine, InvoicingRun, PaymentAttempt
from marelle.billing.pricing import format_euros
from marelle.catalog.models import Regie
from marelle.core import clock
from marelle.families.models import Family, Guardian

logger = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")

# --- States and their legend ---------------------------------------------------------------

#: Invoice display states (an avoir is shown as such whatever its status), in legend order.
INVOICE_STATES: OrderedDict[str, tuple[str, str]] = OrderedDict([
    ("to_pay", ("À payer", "La facture est à régler au plus tard à sa date d'échéance.")),
    ("partially_paid", ("Partiellement payée", "Une partie a déjà été réglée ; le reste est à payer.")),
    ("paid", ("Payée", "La facture est entièrement réglée.")),
    ("transmitted", ("Transmise au Trésor public",
                     "La facture est à régler auprès du Trésor public (DGFiP), qui vous envoie un avis "
                     "des sommes à payer ; elle apparaît soldée sur le portail.")),
    ("cancelled", ("Annulée", "La facture a été annulée : il n'y a rien à payer.")),
    ("credit_note", ("Avoir", "Un avoir corrige une facture : il diminue la somme à payer.")),
])

#: Payment display states, in legend order (the first three are the ones families meet).
PAYMENT_STATES: OrderedDict[str, tuple[str, str]] = OrderedDict([
    ("pending", ("En attente de validation par la banque",
                 "Le paiement a été envoyé ; la banque ne l'a pas encore confirmé.")),
    ("paid", ("Validé", "Le paiement est confirmé et réglé sur les factures indiquées.")),
    ("refused", ("Refusé", "La banque a refusé le paiement : la facture reste à payer.")),
    ("created", ("En cours", "Le paiement a été préparé mais pas encore envoyé à la banque.")),
    ("cancelled", ("Annulé", "Le paiement a été abandonné avant d'être validé.")),
    ("expired", ("Expiré", "Le paiement n'a pas été terminé à temps.")),
    ("refunded", ("Remboursé", "Le paiement a été remboursé.")),
    ("partially_refunded", ("Partiellement remboursé", "Une partie du paiement a été remboursée.")),
])
FAMILY_PAYMENT_LEGEND = ("pending", "paid", "refused")

#: What a family may select and pay online.
UNPAID = (Invoice.Status.TO_PAY, Invoice.Status.PARTIALLY_PAID)
#: Money actually received (the journal, the exports' totals).
RECEIVED = (PaymentAttempt.State.PAID, PaymentAttempt.State.REFUNDED, PaymentAttempt.State.PARTIALLY_REFUNDED)
#: Means a régisseur records at the desk.
DESK_MEANS = (PaymentAttempt.Means.CHEQUE, PaymentAttempt.Means.CASH, PaymentAttempt.Means.CESU,
              PaymentAttempt.Means.ANCV, PaymentAttempt.Means.TRANSFER)


def invoice_state(invoice: Invoice) -> str:
    if invoice.kind == Invoice.Kind.CREDIT_NOTE:
        return "credit_note"
    return invoice.status


#: What the family reads once the Trésor public reports on a transmitted invoice (the
#: recovery app keeps the state on the transmission règlement, see tresor_public_recovery).
TRESOR_PUBLIC_LABELS = {
    "collected": "Réglée auprès du Trésor public",
    "partially_collected": "Partiellement réglée auprès du Trésor public",
}


def _tresor_public_payment(invoice: Invoice) -> PaymentAttempt | None:
    """The transmission règlement among the *prefetched* allocations (never a query: lists
    without the prefetch simply show the plain state)."""
    allocations = getattr(invoice, "_prefetched_objects_cache", {}).get("allocations") or ()
    for allocation in allocations:
        if allocation.payment.means == PaymentAttempt.Means.TRESOR_PUBLIC:
            return allocation.payment
    return None


def tresor_public_recovery(invoice: Invoice) -> tuple[str, int]:
    """(state reported by the Trésor public, cents recovered) for a transmitted invoice;
    ("", 0) when nothing is known."""
    payment = _tresor_public_payment(invoice)
    if payment is None or payment.state != PaymentAttempt.State.PAID:
        return "", 0
    snapshot = payment.settings_snapshot or {}
    return str(snapshot.get("recovery_status", "")), int(snapshot.get("recovered_cents") or 0)


def invoice_state_label(invoice: Invoice) -> str:
    state = invoice_state(invoice)
    if state in ("paid", "transmitted"):
        recovery, _ = tresor_public_recovery(invoice)
        if recovery in TRESOR_PUBLIC_LABELS:
            return TRESOR_PUBLIC_LABELS[recovery]
    return INVOICE_STATES.get(state, (invoice.get_status_display(), ""))[0]


def payment_state_label(state: str) -> str:
    return PAYMENT_STATES.get(state, (state, ""))[0]


def invoice_legend() -> list[tuple[str, str, str]]:
    return [(key, label, help_text) for key, (label, help_text) in INVOICE_STATES.items()]


def payment_legend() -> list[tuple[str, str, str]]:
    return [(key, *PAYMENT_STATES[key]) for key in FAMILY_PAYMENT_LEGEND]


# --- Dates ---------------------------------------------------------------------------------


def compact_dates(dates) -> str:
    """["2026-09-14", "2026-09-15", "2026-09-17"] → "14, 15, 17/09"; across months
    "28, 29/09, 01, 02/10"; across years the year is added to each month."""
    days = sorted({d if isinstance(d, date) else date.fromisoformat(str(d)) for d in dates})
    if not days:
        return ""
    with_year = days[0].year != days[-1].year
    groups: list[str] = []
    current: tuple[int, int] | None = None
    numbers: list[str] = []

    def close():
        if current is not None:
            year, month = current
            suffix = f"/{month:02d}" + (f"/{year}" if with_year else "")
            groups.append(", ".join(numbers) + suffix)

    for day in days:
        key = (day.year, day.month)
        if key != current:
            close()
            current, numbers = key, []
        numbers.append(f"{day.day:02d}")
    close()
    return ", ".join(groups)


def long_date(day: date | None) -> str:
    return date_format(day, "j F Y") if day else ""


def short_date(day: date | None) -> str:
    return day.strftime("%d/%m/%Y") if day else ""


def local_date(moment: datetime | None) -> date | None:
    return moment.astimezone(PARIS).date() if moment else None


def period_text(start: date | None, end: date | None) -> str:
    if start and end:
        return f"du {short_date(start)} au {short_date(end)}"
    return short_date(start or end)


# --- How a régie is paid -------------------------------------------------------------------


@dataclass(frozen=True)
class WindowStatus:
    """Online payment windows of a régie seen from a day, as the settlement core computes
    them (``settlement.online_payment_window``: the same rule refuses a payment outside
    them). ``always``: no window configured; ``text``: "jusqu'au … / à partir du …"."""

    always: bool
    is_open: bool
    until: date | None = None
    opens_on: date | None = None
    rule: str = ""
    text: str = ""


ALWAYS_OPEN = WindowStatus(always=True, is_open=True)


def window_status(regie: Regie, today: date | None = None) -> WindowStatus:
    if not regie.online_payment_windows:
        return ALWAYS_OPEN
    try:
        from marelle.billing.settlement import online_payment_window
    except ImportError:  # the settlement core not installed: no information rather than a guess
        return ALWAYS_OPEN
    state = online_payment_window(regie, today=today)
    return WindowStatus(always=False, is_open=state.open, until=state.until, opens_on=state.opens_on,
                        rule=state.rule, text=state.message)


@dataclass(frozen=True)
class PaymentChannel:
    """How the invoices of one régie are paid.

    ``kind``: "online" (a provider that takes card payments on the portal), "tresor_public"
    (a provider through which the family pays the Trésor public, outside the portal), or
    "desk" (no plugin: at the régie's desk only).
    """

    kind: str
    regie_label: str
    provider_label: str = ""
    windows: WindowStatus = ALWAYS_OPEN

    @property
    def online(self) -> bool:
        return self.kind == "online"

    @property
    def online_now(self) -> bool:
        return self.kind == "online" and self.windows.is_open

    @property
    def tresor_public(self) -> bool:
        return self.kind == "tresor_public"


def payment_channel(regie: Regie, *, today: date | None = None) -> PaymentChannel:
    """No query: the régie row and the in-memory plugin registry."""
    plugin = regie.payment_plugin
    if not plugin:
        return PaymentChannel(kind="desk", regie_label=regie.label)
    from marelle.plugin_api.manager import get_payment_provider_class

    try:
        provider = get_payment_provider_class(plugin)
    except Exception:  # noqa: BLE001 - a broken registry must not hide the invoices
        logger.exception("payment plugins could not be loaded")
        provider = None
    if provider is None:
        logger.warning("régie %s: payment plugin %r is not installed", regie.code, plugin)
        return PaymentChannel(kind="desk", regie_label=regie.label)
    if not getattr(provider, "accepts_online_payment", True):
        return PaymentChannel(kind="tresor_public", regie_label=regie.label, provider_label=provider.verbose_name)
    return PaymentChannel(kind="online", regie_label=regie.label, provider_label=provider.verbose_name,
                          windows=window_status(regie, today))


def tresor_public_reference(invoice: Invoice) -> str:
    """The reference the Trésor public gave (titre, avis), when a transmission recorded one.

    Uses the prefetched ``allocations`` (with their payment) when present."""
    allocations = getattr(invoice, "_prefetched_objects_cache", {}).get("allocations")
    if allocations is None:
        allocations = invoice.allocations.select_related("payment")
    for allocation in allocations:
        payment = allocation.payment
        if payment.means == PaymentAttempt.Means.TRESOR_PUBLIC:
            return payment.reference or payment.provider_reference
    return ""


def payment_instructions(invoice: Invoice, channel: PaymentChannel, *, portal_url: str = "") -> list[str]:
    """What the family reads under "Comment payer" (the detail page and the PDF)."""
    if invoice.kind == Invoice.Kind.CREDIT_NOTE:
        ref = invoice.credited_invoice.number if invoice.credited_invoice_id else ""
        return [f"Cet avoir diminue de {format_euros(-invoice.total_cents)} la somme due sur la facture {ref}. "
                "Il n'y a rien à payer."]
    if invoice.status == Invoice.Status.CANCELLED:
        return ["Cette facture est annulée : il n'y a rien à payer."]
    recovery, recovered = tresor_public_recovery(invoice)
    if recovery == "collected":
        return ["Cette facture a été réglée auprès du Trésor public. Merci."]
    if channel.tresor_public or invoice.status == Invoice.Status.TRANSMITTED:
        if invoice.status in UNPAID:
            text = ("Cette facture sera transmise au Trésor public : vous recevrez un avis des sommes à payer "
                    "et la réglerez auprès du Trésor public (DGFiP), pas sur ce portail.")
        else:
            text = ("Cette facture est transmise au Trésor public : vous recevrez un avis des sommes à payer "
                    "et la réglerez auprès du Trésor public (DGFiP), pas sur ce portail.")
        reference = tresor_public_reference(invoice)
        lines = [text]
        if recovery == "partially_collected":
            lines.append(f"Le Trésor public a déjà reçu {format_euros(recovered)} sur "
                         f"{format_euros(invoice.total_cents)}.")
        if reference:
            lines.append(f"Référence à rappeler au Trésor public : {reference}.")
        return lines
    if invoice.balance_cents <= 0:
        return ["Cette facture est entièrement réglée. Merci."]
    if channel.online:
        where = f" ({portal_url})" if portal_url else ""
        lines = [f"Paiement en ligne par carte bancaire sur le portail famille, rubrique «\u00a0Mes factures et "
                 f"paiements\u00a0»{where}."]
        if not channel.windows.always:
            lines.append(channel.windows.text)
        lines.append(f"Ou auprès de la {channel.regie_label} (chèque, espèces, CESU, chèques vacances, virement).")
        return lines
    return [f"À régler auprès de la régie : {channel.regie_label} (chèque, espèces, CESU, chèques vacances, "
            "virement). Le paiement en ligne n'est pas proposé pour cette régie."]


def online_note(invoice: Invoice, channel: PaymentChannel) -> str:
    """One line for the list: why an unpaid invoice can or cannot be paid online now."""
    if invoice.kind == Invoice.Kind.CREDIT_NOTE or invoice.status == Invoice.Status.CANCELLED:
        return ""
    if tresor_public_recovery(invoice)[0] == "collected":
        return ""
    if channel.tresor_public or invoice.status == Invoice.Status.TRANSMITTED:
        reference = tresor_public_reference(invoice)
        return ("À régler auprès du Trésor public" + (f" (référence {reference})" if reference else "")
                + " : pas de paiement sur ce portail.")
    if invoice.status not in UNPAID or invoice.balance_cents <= 0:
        return ""
    if channel.kind == "desk":
        return "À régler auprès de la régie."
    return channel.windows.text


# --- Lines grouped per child ---------------------------------------------------------------


@dataclass
class LineRow:
    label: str
    dates: str
    quantity: int
    unit_price: str
    amount: str


@dataclass
class ChildLines:
    child_name: str
    lines: list[LineRow]
    total: str


def lines_by_child(lines) -> list[ChildLines]:
    groups: OrderedDict[str, list[InvoiceLine]] = OrderedDict()
    for line in lines:
        groups.setdefault(line.child_name or "", []).append(line)
    return [ChildLines(child_name=name, total=format_euros(sum(line.amount_cents for line in group)),
                       lines=[LineRow(label=line.label, dates=compact_dates(line.dates), quantity=line.quantity,
                                      unit_price=format_euros(line.unit_price_cents),
                                      amount=format_euros(line.amount_cents)) for line in group])
            for name, group in groups.items()]


# --- Families' side ------------------------------------------------------------------------


def decorate_invoice(invoice: Invoice, channel: PaymentChannel) -> Invoice:
    """Attach what the templates show (no query when allocations are prefetched)."""
    invoice.state_key = invoice_state(invoice)
    invoice.state_label = invoice_state_label(invoice)
    invoice.total_display = format_euros(invoice.total_cents)
    invoice.paid_display = format_euros(invoice.paid_cents)
    invoice.balance_display = format_euros(invoice.balance_cents)
    invoice.channel = channel
    invoice.payable_online = (invoice.kind == Invoice.Kind.INVOICE and invoice.status in UNPAID
                              and invoice.balance_cents > 0 and channel.online_now)
    invoice.note = online_note(invoice, channel)
    return invoice


def _family_invoice_queryset(family: Family):
    return (Invoice.objects.filter(family=family).exclude(status=Invoice.Status.DRAFT)
            .select_related("regie", "credited_invoice")
            .prefetch_related(Prefetch("allocations", queryset=Allocation.objects.select_related("payment")))
            .order_by("-issued_at", "-pk"))


def family_invoice_list(family: Family, *, today: date | None = None) -> list[Invoice]:
    """The family's issued invoices and credit notes, newest first, decorated (2 queries)."""
    channels: dict[int, PaymentChannel] = {}
    invoices = list(_family_invoice_queryset(family))
    for invoice in invoices:
        if invoice.regie_id not in channels:
            channels[invoice.regie_id] = payment_channel(invoice.regie, today=today)
        decorate_invoice(invoice, channels[invoice.regie_id])
    return invoices


def family_invoice(family: Family, invoice_id) -> Invoice:
    """One of the family's issued invoices, with its lines; raises Invoice.DoesNotExist for
    anything else (another family's, a draft, not a number)."""
    try:
        invoice_id = int(invoice_id)
    except (TypeError, ValueError):
        raise Invoice.DoesNotExist from None
    invoice = (_family_invoice_queryset(family)
               .prefetch_related("lines", Prefetch("credit_notes", queryset=Invoice.objects.order_by("issued_at")))
               .get(pk=invoice_id))
    return decorate_invoice(invoice, payment_channel(invoice.regie))


def family_billing_summary(family: Family) -> dict:
    """For the family's home card: how many invoices are left to pay, and how much; the
    immediate payments waiting (adhesion, prepaid bookings) and the soonest deadline (2 queries)."""
    from marelle.billing.baskets import payable_baskets

    totals = (Invoice.objects.filter(family=family, kind=Invoice.Kind.INVOICE, status__in=UNPAID,
                                     total_cents__gt=F("paid_cents"))
              .aggregate(count=Count("id"), due=Sum(F("total_cents") - F("paid_cents"))))
    baskets = (payable_baskets(family)
               .aggregate(count=Count("id"), due=Sum("invoice__total_cents"), soonest=Min("expires_at")))
    return {"to_pay_count": totals["count"], "to_pay_cents": totals["due"] or 0,
            "to_pay_display": format_euros(totals["due"] or 0),
            "immediate_count": baskets["count"], "immediate_display": format_euros(baskets["due"] or 0),
            "immediate_before": baskets["soonest"]}


def decorate_payment(payment: PaymentAttempt) -> PaymentAttempt:
    payment.state_label = payment_state_label(payment.state)
    payment.amount_display = format_euros(payment.amount_cents)
    payment.refunded_display = format_euros(payment.refunded_cents) if payment.refunded_cents else ""
    payment.invoice_numbers = [a.invoice.number for a in payment.allocations.all()]
    payment.display_reference = attempt_reference(payment)
    return payment


def attempt_reference(payment: PaymentAttempt) -> str:
    """The reference shown to the family and the régisseur for a payment."""
    return payment.provider_reference or payment.reference or f"P{payment.pk:06d}"


def family_payments(family: Family) -> list[PaymentAttempt]:
    """The family's payments, newest first (an attempt never sent to the provider is not one)."""
    payments = (PaymentAttempt.objects.filter(family=family).exclude(state=PaymentAttempt.State.CREATED)
                .select_related("regie")
                .prefetch_related(Prefetch("allocations", queryset=Allocation.objects.select_related("invoice")))
                .order_by("-created_at", "-pk"))
    return [decorate_payment(p) for p in payments]


class SelectionError(ValueError):
    """The invoices chosen for an online payment cannot be paid together (French message)."""


@dataclass
class PaymentSelection:
    regie: Regie
    channel: PaymentChannel
    invoices: list[Invoice]

    @property
    def total_cents(self) -> int:
        return sum(i.balance_cents for i in self.invoices)

    @property
    def total_display(self) -> str:
        return format_euros(self.total_cents)

    @property
    def ids(self) -> list[int]:
        return [i.pk for i in self.invoices]


def _online_refusal(regie: Regie, channel: PaymentChannel, today: date | None) -> str:
    """Why the régie's invoices cannot be paid online now, worded by the settlement core."""
    try:
        from marelle.billing.settlement import online_payment_refusal
    except ImportError:
        online_payment_refusal = None
    refusal = online_payment_refusal(regie, today=today) if online_payment_refusal else None
    if refusal:
        return refusal
    if channel.kind != "online":
        return f"Les factures de la {regie.label} ne se paient pas en ligne."
    return channel.windows.text or "Le paiement en ligne n'est pas ouvert actuellement."


def payment_selection(family: Family, invoice_ids, *, today: date | None = None) -> PaymentSelection:
    """The family's unpaid invoices ``invoice_ids``, all of one régie payable online now."""
    try:
        ids = sorted({int(i) for i in invoice_ids})
    except (TypeError, ValueError):
        raise SelectionError("Sélection de factures invalide.") from None
    if not ids:
        raise SelectionError("Cochez au moins une facture à payer.")
    invoices = list(_family_invoice_queryset(family).filter(pk__in=ids).order_by("issued_at", "pk"))
    if len(invoices) != len(ids):
        raise SelectionError("Une des factures choisies est introuvable.")
    regies = {i.regie_id for i in invoices}
    if len(regies) > 1:
        raise SelectionError("Les factures payées ensemble doivent être de la même régie : "
                             "payez-les en plusieurs fois, une régie à la fois.")
    regie = invoices[0].regie
    channel = payment_channel(regie, today=today)
    for invoice in invoices:
        decorate_invoice(invoice, channel)
    if not channel.online_now:
        raise SelectionError(_online_refusal(regie, channel, today))
    not_payable = [i.number for i in invoices if not i.payable_online]
    if not_payable:
        raise SelectionError(f"Facture déjà réglée ou non payable en ligne : {', '.join(not_payable)}.")
    return PaymentSelection(regie=regie, channel=channel, invoices=invoices)


# --- Régisseur's side ----------------------------------------------------------------------


def guardian_name_annotations():
    """The first guardian's names, for rows that have a ``family_id`` (one subquery each)."""
    first = Guardian.objects.filter(family=OuterRef("family_id"), position=1)
    return {
        "guardian_last_name": Subquery(first.values("last_name")[:1]),
        "guardian_first_name": Subquery(first.values("first_name")[:1]),
    }


def family_display(obj) -> str:
    last = getattr(obj, "guardian_last_name", "") or ""
    first = getattr(obj, "guardian_first_name", "") or ""
    name = f"{last.upper()} {first}".strip()
    return f"{name} (F{obj.family_id:06d})" if name else f"F{obj.family_id:06d}"


def runs_list():
    return (InvoicingRun.objects.select_related("regie", "created_by")
            .annotate(invoice_count=Count("invoices"), total_cents=Sum("invoices__total_cents"))
            .order_by("-created_at", "-pk"))


@dataclass
class RunSummary:
    run: InvoicingRun
    invoice_count: int
    total_cents: int
    line_count: int

    @property
    def total_display(self) -> str:
        return format_euros(self.total_cents)


def run_summary(run: InvoicingRun) -> RunSummary:
    totals = run.invoices.aggregate(n=Count("id", distinct=True), total=Sum("total_cents"))
    lines = InvoiceLine.objects.filter(invoice__run=run).count()
    return RunSummary(run=run, invoice_count=totals["n"] or 0, total_cents=totals["total"] or 0, line_count=lines)


def run_invoices(run: InvoicingRun):
    """The run's invoices with the family name and lines (for a page of the review)."""
    return (run.invoices.annotate(**guardian_name_annotations())
            .prefetch_related("lines")
            .order_by("guardian_last_name", "guardian_first_name", "family_id"))


def decorate_staff_invoice(invoice: Invoice) -> Invoice:
    invoice.family_label = family_display(invoice)
    invoice.state_label = invoice_state_label(invoice)
    invoice.state_key = invoice_state(invoice)
    invoice.total_display = format_euros(invoice.total_cents)
    invoice.paid_display = format_euros(invoice.paid_cents)
    invoice.balance_display = format_euros(invoice.balance_cents)
    return invoice


def staff_invoice(invoice_id) -> Invoice:
    try:
        invoice_id = int(invoice_id)
    except (TypeError, ValueError):
        raise Invoice.DoesNotExist from None
    invoice = (Invoice.objects.exclude(status=Invoice.Status.DRAFT)
               .annotate(**guardian_name_annotations())
               .select_related("regie", "credited_invoice", "family")
               .prefetch_related("lines", Prefetch("allocations", queryset=Allocation.objects.select_related("payment")),
                                 Prefetch("credit_notes", queryset=Invoice.objects.order_by("issued_at")))
               .get(pk=invoice_id))
    return decorate_staff_invoice(invoice)


REMINDER_ACTION = "invoice.reminded"


def unpaid_invoices(*, regie: Regie | None = None, overdue_only: bool = False, today: date | None = None):
    """Issued invoices with something left to pay, oldest due first, with the family name and
    the date of the last reminder (one query)."""
    today = today or clock.today()
    last_reminder = (AuditEvent.objects.filter(action=REMINDER_ACTION,
                                               target=Concat(Value("invoice:"), OuterRef("number")))
                     .order_by("-at").values("at")[:1])
    invoices = (Invoice.objects.filter(kind=Invoice.Kind.INVOICE, status__in=UNPAID, total_cents__gt=F("paid_cents"))
                .select_related("regie")
                .annotate(last_reminded_at=Subquery(last_reminder), **guardian_name_annotations())
                .order_by("due_date", "number"))
    if regie is not None:
        invoices = invoices.filter(regie=regie)
    if overdue_only:
        invoices = invoices.filter(due_date__lt=today)
    return invoices


@dataclass
class JournalTotals:
    by_means: list[tuple[str, int, str, int]]  # (means label, count, total display, total cents)
    count: int
    total_cents: int

    @property
    def total_display(self) -> str:
        return format_euros(self.total_cents)


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=PARIS)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=PARIS)


def _received(regie: Regie):
    return (PaymentAttempt.objects.filter(regie=regie, state__in=RECEIVED)
            .exclude(means=PaymentAttempt.Means.TRESOR_PUBLIC))


def _totals(payments) -> JournalTotals:
    labels = dict(PaymentAttempt.Means.choices)
    rows = payments.order_by().values("means").annotate(n=Count("id"), total=Sum("amount_cents")).order_by("means")
    by_means = [(str(labels.get(r["means"], r["means"])), r["n"], format_euros(r["total"]), r["total"]) for r in rows]
    return JournalTotals(by_means=by_means, count=sum(r[1] for r in by_means), total_cents=sum(r[3] for r in by_means))


def payment_journal(regie: Regie, day: date) -> tuple[list[PaymentAttempt], JournalTotals]:
    """Money received by ``regie`` on ``day`` (Paris time), and totals by means of payment.

    Transmissions to the Trésor public are not receipts of the régie: left out."""
    start, end = _day_bounds(day)
    payments = _received(regie).filter(settled_at__gte=start, settled_at__lt=end)
    rows = list(payments.select_related("family", "created_by")
                .annotate(**guardian_name_annotations())
                .prefetch_related(Prefetch("allocations", queryset=Allocation.objects.select_related("invoice")))
                .order_by("settled_at", "pk"))
    for payment in rows:
        decorate_payment(payment)
        payment.family_label = family_display(payment)
    return rows, _totals(payments)


def month_summary(regie: Regie, day: date) -> tuple[list[dict], JournalTotals]:
    """Per day of ``day``'s month: totals by means (what the régisseur justifies monthly)."""
    first = day.replace(day=1)
    last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
    start, _ = _day_bounds(first)
    _, end = _day_bounds(last)
    payments = _received(regie).filter(settled_at__gte=start, settled_at__lt=end)
    rows = (payments.order_by().annotate(day=TruncDate("settled_at", tzinfo=PARIS))
            .values("day", "means").annotate(n=Count("id"), total=Sum("amount_cents")).order_by("day", "means"))
    labels = dict(PaymentAttempt.Means.choices)
    per_day: dict[date, dict] = defaultdict(lambda: {"count": 0, "total": 0, "means": []})
    for row in rows:
        entry = per_day[row["day"]]
        entry["count"] += row["n"]
        entry["total"] += row["total"]
        entry["means"].append(f"{labels.get(row['means'], row['means'])} : {format_euros(row['total'])}")
    days = [{"day": d, "count": v["count"], "total_display": format_euros(v["total"]), "means": v["means"]}
            for d, v in sorted(per_day.items())]
    return days, _totals(payments)


def export_invoices(*, regie: Regie | None, start: date | None, end: date | None):
    invoices = (Invoice.objects.exclude(status=Invoice.Status.DRAFT).select_related("regie", "credited_invoice")
                .order_by("regie__code", "number"))
    if regie is not None:
        invoices = invoices.filter(regie=regie)
    if start:
        invoices = invoices.filter(issued_at__gte=_day_bounds(start)[0])
    if end:
        invoices = invoices.filter(issued_at__lt=_day_bounds(end)[1])
    return invoices


def export_payments(*, regie: Regie | None, start: date | None, end: date | None):
    payments = (PaymentAttempt.objects.exclude(state=PaymentAttempt.State.CREATED)
                .select_related("regie", "created_by")
                .annotate(invoice_numbers_agg=ArrayAgg("allocations__invoice__number", distinct=True,
                                                       filter=Q(allocations__isnull=False), default=Value([])))
                .order_by("settled_at", "created_at", "pk"))
    if regie is not None:
        payments = payments.filter(regie=regie)
    if start:
        payments = payments.filter(Q(settled_at__gte=_day_bounds(start)[0])
                                   | Q(settled_at__isnull=True, created_at__gte=_day_bounds(start)[0]))
    if end:
        payments = payments.filter(Q(settled_at__lt=_day_bounds(end)[1])
                                   | Q(settled_at__isnull=True, created_at__lt=_day_bounds(end)[1]))
    return payments


def family_unpaid_invoices(family: Family, regie: Regie | None = None):
    invoices = (Invoice.objects.filter(family=family, kind=Invoice.Kind.INVOICE, status__in=UNPAID,
                                       total_cents__gt=F("paid_cents"))
                .select_related("regie").order_by("due_date", "number"))
    if regie is not None:
        invoices = invoices.filter(regie=regie)
    return invoices


def family_recent_invoices(family: Family, limit: int = 20):
    return [decorate_staff_invoice(i) for i in
            Invoice.objects.filter(family=family).exclude(status=Invoice.Status.DRAFT)
            .select_related("regie").order_by("-issued_at", "-pk")[:limit]]
