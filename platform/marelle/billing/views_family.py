"""The families' side of billing (mounted at /factures/): "Mes factures et paiements".

- ``invoices``: invoices by régie with their state and how to pay them, the legend, the
  family's payments with theirs; unpaid invoices of a régie payable online now can be
  ticked and paid together (one régie at a time);
- ``invoice`` / ``invoice_pdf``: one invoice and its PDF (another family's id is a 404);
- ``pay``: GET the recap of the ticked invoices (numbers, amounts, total), POST "Payer":
  ``settlement.payment_start`` creates the attempt, then the family goes to the provider
  through :func:`provider_redirect` (the payments app's start page) or, while that app is
  not mounted, to the attempt's placeholder page;
- ``payment``: one payment of the family: where it stands.

Nothing here changes an invoice or a payment: the settlement core decides everything.
"""

from __future__ import annotations

import logging
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods

from marelle.billing import settlement
from marelle.billing.baskets import BasketError, basket_checkout, baskets_by_regie, open_baskets
from marelle.billing.models import Basket, FamilyCredit, Invoice, PaymentAttempt
from marelle.billing.pdf import invoice_pdf_bytes, pdf_filename
from marelle.billing.pricing import format_euros
from marelle.billing.selectors import (
    SelectionError,
    attempt_reference,
    decorate_payment,
    family_invoice,
    family_invoice_list,
    family_payments,
    invoice_legend,
    lines_by_child,
    local_date,
    long_date,
    payment_instructions,
    payment_legend,
    payment_selection,
    period_text,
)
from marelle.billing.settlement import SettlementError
from marelle.families.permissions import require_family

logger = logging.getLogger(__name__)


# What the settlement core refuses with a message for the person (a 400, never a 500).
REFUSALS = (SettlementError, ValidationError)


def error_text(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        return " ".join(str(m) for m in error.messages)
    return str(error) or "L'opération a été refusée."


def provider_redirect(request, attempt: PaymentAttempt) -> HttpResponse | None:
    """Hook for the payment plugins: the response that takes the family to the provider.

    The payments app (``marelle.payments``, mounted at /paiement/ as namespace "payments")
    starts the attempt at its provider on ``payments:start`` (redirect, or a form that
    submits itself) and brings the family back to ``payments:return``. While that page is not
    mounted: None, and the family sees this module's placeholder page with the reference.
    """
    try:
        return HttpResponseRedirect(reverse("payments:start", args=[attempt.pk]))
    except NoReverseMatch:
        return None


# --- Pages ---------------------------------------------------------------------------------


def family_required(view):
    """Signed-in account holder of an active family (others: 403); the family is passed on."""
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, require_family(request.user), *args, **kwargs)
        response["Cache-Control"] = "private, no-store"
        return response
    return login_required(wrapper)


def _by_regie(invoices):
    """[(régie, channel, invoices)] in the order of the newest invoice of each régie."""
    groups: dict[int, tuple] = {}
    for invoice in invoices:
        if invoice.regie_id not in groups:
            groups[invoice.regie_id] = (invoice.regie, invoice.channel, [])
        groups[invoice.regie_id][2].append(invoice)
    return [(regie, channel, items, any(i.payable_online for i in items)) for regie, channel, items in groups.values()]


def _render_list(request, family, *, selected=(), error: str = "", error_regie=None, status: int = 200):
    invoices = family_invoice_list(family)
    credits = {c.regie_id: format_euros(c.balance_cents)
               for c in FamilyCredit.objects.filter(family=family, balance_cents__gt=0)}
    return render(request, "billing/family/invoices.html", {
        "groups": [(*group, credits.get(group[0].pk)) for group in _by_regie(invoices)],
        "has_invoices": bool(invoices),
        "payments": family_payments(family),
        "invoice_legend": invoice_legend(),
        "payment_legend": payment_legend(),
        "selected": {str(i) for i in selected},
        "error": error,
        "error_regie": error_regie,
        "open_baskets": open_baskets(family),
    }, status=status)


@family_required
@require_GET
def invoices(request, family):
    return _render_list(request, family)


def _own_invoice(family, invoice_id) -> Invoice:
    try:
        return family_invoice(family, invoice_id)
    except Invoice.DoesNotExist:
        raise Http404("Facture introuvable") from None


@family_required
@require_GET
def invoice(request, family, invoice_id):
    invoice = _own_invoice(family, invoice_id)
    credit_notes = list(invoice.credit_notes.all())
    for credit in credit_notes:
        credit.total_display = format_euros(-credit.total_cents)
    payments = [decorate_payment(a.payment) for a in invoice.allocations.all()
                if a.payment.state != PaymentAttempt.State.CREATED]
    return render(request, "billing/family/invoice.html", {
        "invoice": invoice,
        "groups": lines_by_child(invoice.lines.all()),
        "issued_on": long_date(local_date(invoice.issued_at)),
        "due_on": long_date(invoice.due_date),
        "period": period_text(invoice.period_start, invoice.period_end),
        "credit_notes": credit_notes,
        "payments": payments,
        "instructions": payment_instructions(invoice, invoice.channel),
    })


@family_required
@require_GET
def invoice_pdf(request, family, invoice_id):
    invoice = _own_invoice(family, invoice_id)
    return pdf_response(invoice)


def pdf_response(invoice: Invoice) -> HttpResponse:
    response = HttpResponse(invoice_pdf_bytes(invoice), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{pdf_filename(invoice)}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@family_required
@require_http_methods(["GET", "POST"])
def pay(request, family):
    data = request.POST if request.method == "POST" else request.GET
    ids = data.getlist("factures")
    try:
        selection = payment_selection(family, ids)
    except SelectionError as error:
        if request.method == "POST":
            messages.error(request, str(error))
            return redirect("billing:invoices")
        return _render_list(request, family, selected=ids, error=str(error), status=400)
    if request.method == "GET":
        return render(request, "billing/family/recap.html", {"selection": selection})

    try:
        attempt = settlement.payment_start(actor=request.user, family=family, invoice_ids=selection.ids)
    except REFUSALS as error:
        return render(request, "billing/family/recap.html", {"selection": selection, "error": error_text(error)},
                      status=400)
    response = provider_redirect(request, attempt)
    if response is not None:
        return response
    return redirect("billing:payment", payment_id=attempt.pk)


@family_required
@require_GET
def payment(request, family, payment_id):
    try:
        attempt = (PaymentAttempt.objects.select_related("regie")
                   .prefetch_related("allocations__invoice").get(pk=payment_id, family=family))
    except PaymentAttempt.DoesNotExist:
        raise Http404("Paiement introuvable") from None
    decorate_payment(attempt)
    return render(request, "billing/family/payment.html", {
        "attempt": attempt,
        "reference": attempt_reference(attempt),
        "invoice_numbers": attempt.invoice_numbers,
    })



# --- Immediate payments (adhesions, prepaid bookings) ---------------------------------------


@family_required
@require_GET
def baskets(request, family):
    recent = list(Basket.objects.filter(family=family).exclude(state=Basket.State.OPEN)
                  .select_related("invoice").order_by("-closed_at", "-pk")[:5])
    return render(request, "billing/family/baskets.html", {"groups": baskets_by_regie(open_baskets(family)),
                                                            "recent": recent})


@family_required
@require_http_methods(["POST"])
def basket_pay(request, family):
    try:
        ids = [int(i) for i in request.POST.getlist("panier")]
    except ValueError:
        ids = []
    try:
        attempt = basket_checkout(actor=request.user, family=family, basket_ids=ids)
    except BasketError as error:
        messages.error(request, error.message)
        return redirect("billing:baskets")
    return provider_redirect(request, attempt) or redirect("billing:payment", payment_id=attempt.pk)
