"""The régisseur's side of billing (mounted at /gestion/facturation/, roles régisseur and
administrateur).

- invoicing runs: list, "Nouvelle facturation" (régie, period, label) → draft → review
  (count, total, per-family totals and lines) → "Émettre" or "Abandonner";
- journal of payments per régie and day, totals by means of payment, and the month's
  recap per day (what the régisseur justifies to the comptable);
- unpaid invoices, with "Relancer" (reminder e-mail, audited);
- CSV exports of invoices and payments (";" separator, UTF-8 with BOM, for spreadsheets);
- a payment received at the desk (family search → its unpaid invoices → means, amount,
  reference) recorded by ``settlement.payment_record_manual``;
- one invoice, its PDF, and an avoir on it (``credit_note_create``).
"""

from __future__ import annotations

import csv
from datetime import date

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import F, Sum
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_http_methods, require_POST

from marelle.backoffice.access import staff_required
from marelle.backoffice.selectors import family_search
from marelle.billing import forms, settlement
from marelle.billing.invoicing import (
    InvoicingError,
    credit_note_create,
    invoicing_run_abandon,
    invoicing_run_draft,
    invoicing_run_issue,
)
from marelle.billing.models import FamilyCredit, Invoice, InvoicingRun, PaymentAttempt
from marelle.billing.pricing import format_euros
from marelle.billing.selectors import (
    UNPAID,
    decorate_payment,
    decorate_staff_invoice,
    export_invoices,
    export_payments,
    family_display,
    family_recent_invoices,
    family_unpaid_invoices,
    guardian_name_annotations,
    invoice_state_label,
    lines_by_child,
    local_date,
    month_summary,
    payment_journal,
    payment_state_label,
    period_text,
    run_invoices,
    run_summary,
    runs_list,
    staff_invoice,
    unpaid_invoices,
)
from marelle.billing.tasks import invoice_remind
from marelle.billing.views_family import REFUSALS, error_text, pdf_response
from marelle.catalog.models import Regie
from marelle.core import clock
from marelle.families.models import Family
from marelle.payments.services import provider_refund

ROLES = ("regisseur", "administrateur")
PAGE_SIZE = 50
regisseur_required = staff_required(roles=ROLES)


def _back(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


# --- Invoicing runs ------------------------------------------------------------------------


@regisseur_required
def runs(request):
    page = Paginator(runs_list(), 30).get_page(request.GET.get("page"))
    for run in page:
        run.total_display = format_euros(run.total_cents or 0)
    return render(request, "billing/staff/runs.html", {"page": page})


@regisseur_required
@require_http_methods(["GET", "POST"])
def run_create(request):
    form = forms.RunCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            run = invoicing_run_draft(actor=request.user, regie=data["regie"], period_start=data["period_start"],
                                      period_end=data["period_end"], label=data["label"].strip())
        except InvoicingError as error:
            form.add_error(None, str(error))
        else:
            count = run.invoices.count()
            if count:
                messages.success(request, f"Brouillon créé : {count} facture{'s' if count > 1 else ''} à vérifier "
                                          "avant l'émission.")
            else:
                messages.warning(request, "Brouillon créé, mais aucune prestation n'est à facturer sur cette "
                                          "période pour cette régie.")
            return redirect("billing_staff:run", run_id=run.pk)
    return render(request, "billing/staff/run_create.html", {"form": form},
                  status=400 if request.method == "POST" else 200)


def _run_or_404(run_id) -> InvoicingRun:
    return get_object_or_404(InvoicingRun.objects.select_related("regie", "created_by"), pk=run_id)


@regisseur_required
def run_detail(request, run_id):
    run = _run_or_404(run_id)
    summary = run_summary(run)
    page = Paginator(run_invoices(run), PAGE_SIZE).get_page(request.GET.get("page"))
    for invoice in page:
        decorate_staff_invoice(invoice)
        invoice.groups = lines_by_child(invoice.lines.all())
    return render(request, "billing/staff/run_detail.html", {
        "run": run, "summary": summary, "page": page,
        "period": period_text(run.period_start, run.period_end),
    })


@regisseur_required
@require_POST
def run_issue(request, run_id):
    run = _run_or_404(run_id)
    try:
        invoicing_run_issue(actor=request.user, run_id=run.pk)
    except InvoicingError as error:
        messages.error(request, str(error))
    else:
        numbers = list(run.invoices.exclude(number="").order_by("number").values_list("number", flat=True))
        if numbers:
            messages.success(request, f"{len(numbers)} facture{'s' if len(numbers) > 1 else ''} émise"
                                      f"{'s' if len(numbers) > 1 else ''} (n° {numbers[0]} à {numbers[-1]}). "
                                      "Les PDF et les e-mails aux familles partent en arrière-plan.")
        else:
            messages.success(request, "Facturation émise (aucune facture).")
    return redirect("billing_staff:run", run_id=run.pk)


@regisseur_required
@require_POST
def run_abandon(request, run_id):
    run = _run_or_404(run_id)
    try:
        invoicing_run_abandon(actor=request.user, run_id=run.pk)
    except InvoicingError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"La facturation « {run.label} » est abandonnée ; ses brouillons sont supprimés.")
    return redirect("billing_staff:run", run_id=run.pk)


# --- Journal -------------------------------------------------------------------------------


@regisseur_required
def journal(request):
    first = Regie.objects.active().first()
    data = request.GET.copy()
    data.setdefault("regie", str(first.pk) if first else "")
    data.setdefault("jour", clock.today().isoformat())
    form = forms.JournalForm(data)
    context = {"form": form}
    if form.is_valid():
        regie, day = form.cleaned_data["regie"], form.cleaned_data["jour"]
        payments, totals = payment_journal(regie, day)
        days, month_totals = month_summary(regie, day)
        context.update(regie=regie, day=day, payments=payments, totals=totals, days=days,
                       month_totals=month_totals,
                       export_query=urlencode({"regie": regie.pk, "du": day.isoformat(), "au": day.isoformat()}))
    return render(request, "billing/staff/journal.html", context, status=200 if form.is_valid() else 400)


# --- Unpaid invoices and reminders ---------------------------------------------------------


@regisseur_required
def unpaid(request):
    form = forms.UnpaidFilterForm(request.GET or None)
    regie = overdue = None
    if form.is_bound and form.is_valid():
        regie, overdue = form.cleaned_data["regie"], form.cleaned_data["echues"]
    invoices = unpaid_invoices(regie=regie, overdue_only=bool(overdue))
    page = Paginator(invoices, PAGE_SIZE).get_page(request.GET.get("page"))
    today = clock.today()
    for invoice in page:
        decorate_staff_invoice(invoice)
        invoice.overdue_days = (today - invoice.due_date).days if invoice.due_date and invoice.due_date < today else 0
    total = invoices.order_by().aggregate(total=Sum(F("total_cents") - F("paid_cents")))["total"] or 0
    return render(request, "billing/staff/unpaid.html", {
        "form": form, "page": page, "total_display": format_euros(total), "count": page.paginator.count,
        "here": request.get_full_path(),
    })


@regisseur_required
@require_POST
def remind(request):
    ids = [i for i in request.POST.getlist("factures") if i.isdigit()]
    back = _back(request, reverse("billing_staff:unpaid"))
    if not ids:
        messages.error(request, "Cochez au moins une facture à relancer.")
        return redirect(back)
    sent, skipped = invoice_remind(actor=request.user, invoice_ids=ids)
    if sent:
        messages.success(request, f"{sent} relance{'s' if sent > 1 else ''} envoyée{'s' if sent > 1 else ''} par e-mail.")
    if skipped:
        messages.warning(request, "Pas de relance (facture réglée ou famille sans adresse e-mail) : "
                                  + ", ".join(skipped) + ".")
    return redirect(back)


# --- CSV exports ---------------------------------------------------------------------------


class _Echo:
    def write(self, value):
        return value


def csv_amount(cents: int | None) -> str:
    cents = cents or 0
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    return f"{sign}{euros},{rest:02d}"


def _csv_response(filename: str, header: list[str], rows) -> StreamingHttpResponse:
    writer = csv.writer(_Echo(), delimiter=";", lineterminator="\r\n")

    def stream():
        yield "\ufeff" + writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse((chunk.encode("utf-8") for chunk in stream()),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


def _export_form(request):
    form = forms.ExportForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return form, None
    return form, (form.cleaned_data if form.is_bound else {"regie": None, "du": None, "au": None})


def _export_suffix(filters: dict) -> str:
    parts = [filters["regie"].code] if filters.get("regie") else []
    parts += [d.isoformat() for d in (filters.get("du"), filters.get("au")) if d]
    return ("-" + "-".join(parts)) if parts else ""


INVOICE_HEADER = ["Numéro", "Type", "Régie", "Référence famille", "Débiteur", "Adresse", "Code postal", "Ville",
                  "Objet", "Début de période", "Fin de période", "Émise le", "Échéance", "État", "Avoir sur",
                  "Montant", "Réglé", "Reste à payer"]
PAYMENT_HEADER = ["Date", "Régie", "Référence famille", "Moyen de paiement", "État", "Montant", "Remboursé",
                  "Référence", "Prestataire", "Référence prestataire", "Factures", "Saisi par", "Anomalie"]


def _fmt(day: date | None) -> str:
    return day.strftime("%d/%m/%Y") if day else ""


def _render_exports(request, errors=None, status: int = 200):
    return render(request, "billing/staff/exports.html", {
        "errors": errors,
        "invoices_form": forms.ExportForm(request.GET or None, auto_id="factures_%s"),
        "payments_form": forms.ExportForm(request.GET or None, auto_id="paiements_%s"),
    }, status=status)


@regisseur_required
def exports(request):
    return _render_exports(request)


@regisseur_required
def export_invoices_csv(request):
    form, filters = _export_form(request)
    if filters is None:
        return _render_exports(request, errors=form, status=400)
    invoices = export_invoices(regie=filters["regie"], start=filters["du"], end=filters["au"])

    def rows():
        for i in invoices.iterator(chunk_size=2000):
            debtor = i.debtor or {}
            yield [i.number, i.get_kind_display(), i.regie.label, f"F{i.family_id:06d}", debtor.get("name", ""),
                   debtor.get("address", ""), debtor.get("postcode", ""), debtor.get("city", ""), i.label,
                   _fmt(i.period_start), _fmt(i.period_end), _fmt(local_date(i.issued_at)), _fmt(i.due_date),
                   invoice_state_label(i), i.credited_invoice.number if i.credited_invoice_id else "",
                   csv_amount(i.total_cents), csv_amount(i.paid_cents), csv_amount(i.total_cents - i.paid_cents)]

    return _csv_response(f"factures{_export_suffix(filters)}.csv", INVOICE_HEADER, rows())


@regisseur_required
def export_payments_csv(request):
    form, filters = _export_form(request)
    if filters is None:
        return _render_exports(request, errors=form, status=400)
    payments = export_payments(regie=filters["regie"], start=filters["du"], end=filters["au"])

    def rows():
        for p in payments.iterator(chunk_size=2000):
            moment = p.settled_at or p.created_at
            by = p.created_by.get_full_name() if p.created_by_id and p.created_by else ""
            yield [moment.astimezone(clock.PARIS).strftime("%d/%m/%Y %H:%M"), p.regie.label, f"F{p.family_id:06d}",
                   p.get_means_display(), payment_state_label(p.state), csv_amount(p.amount_cents),
                   csv_amount(p.refunded_cents), p.reference, p.provider, p.provider_reference,
                   ", ".join(sorted(n for n in p.invoice_numbers_agg if n)), by, p.anomaly]

    return _csv_response(f"paiements{_export_suffix(filters)}.csv", PAYMENT_HEADER, rows())


# --- Payment at the desk -------------------------------------------------------------------


def _family_or_404(family_id) -> Family:
    try:
        return Family.objects.prefetch_related("guardians").get(pk=int(family_id))
    except (Family.DoesNotExist, TypeError, ValueError):
        raise Http404("Famille introuvable") from None


@regisseur_required
@require_http_methods(["GET", "POST"])
def manual_payment(request):
    family_id = request.POST.get("famille") or request.GET.get("famille")
    if not family_id:
        search = forms.FamilySearchForm(request.GET or None)
        query = search.cleaned_data["q"] if search.is_bound and search.is_valid() else ""
        results = list(family_search(query)[:20]) if query else []
        return render(request, "billing/staff/manual_payment_search.html",
                      {"search": search, "query": query, "results": results})

    family = _family_or_404(family_id)
    form = forms.ManualPaymentForm(request.POST or None, family=family)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                payment = settlement.payment_record_manual(
                    staff=request.user, family=family, regie=data["regie"], means=data["means"],
                    amount_cents=data["amount"], invoice_ids=[i.pk for i in data["invoices"]],
                    reference=data["reference"].strip(), received_on=data["received_on"])
            except REFUSALS as error:
                form.add_error(None, error_text(error))
            else:
                amount = format_euros(data["amount"])
                messages.success(request, f"Règlement de {amount} enregistré pour {family} "
                                          f"({payment.get_means_display()}).")
                return redirect(f"{reverse('billing_staff:manual_payment')}?{urlencode({'famille': family.pk})}")
    payments = [decorate_payment(p) for p in
                PaymentAttempt.objects.filter(family=family).exclude(state=PaymentAttempt.State.CREATED)
                .select_related("regie").prefetch_related("allocations__invoice").order_by("-created_at")[:10]]
    return render(request, "billing/staff/manual_payment.html", {
        "family": family, "form": form, "unpaid": [decorate_staff_invoice(i) for i in family_unpaid_invoices(family)],
        "recent": family_recent_invoices(family), "payments": payments,
    }, status=status)


# --- One invoice: detail, PDF, credit note -------------------------------------------------


def _invoice_or_404(invoice_id) -> Invoice:
    try:
        return staff_invoice(invoice_id)
    except Invoice.DoesNotExist:
        raise Http404("Facture introuvable") from None


def _render_invoice(request, invoice: Invoice, form=None, status: int = 200):
    credit_notes = list(invoice.credit_notes.all())
    for credit in credit_notes:
        credit.total_display = format_euros(credit.total_cents)
    can_credit = (invoice.kind == Invoice.Kind.INVOICE
                  and invoice.status not in (Invoice.Status.DRAFT, Invoice.Status.CANCELLED))
    family_credit = 0
    if invoice.kind == Invoice.Kind.INVOICE and invoice.status in UNPAID and invoice.balance_cents > 0:
        family_credit = (FamilyCredit.objects.filter(family_id=invoice.family_id, regie_id=invoice.regie_id)
                         .values_list("balance_cents", flat=True).first() or 0)
    return render(request, "billing/staff/invoice.html", {
        "invoice": invoice, "family_label": family_display(invoice),
        "groups": lines_by_child(invoice.lines.all()),
        "period": period_text(invoice.period_start, invoice.period_end),
        "credit_notes": credit_notes,
        "payments": [decorate_payment(a.payment) for a in invoice.allocations.all()],
        "form": form or (forms.CreditNoteForm(invoice=invoice) if can_credit else None),
        "can_credit": can_credit,
        "family_credit": format_euros(family_credit) if family_credit > 0 else "",
    }, status=status)


@regisseur_required
def invoice_detail(request, invoice_id):
    return _render_invoice(request, _invoice_or_404(invoice_id))


@regisseur_required
def invoice_pdf(request, invoice_id):
    return pdf_response(_invoice_or_404(invoice_id))


@regisseur_required
@require_POST
def credit_note(request, invoice_id):
    invoice = _invoice_or_404(invoice_id)
    form = forms.CreditNoteForm(request.POST, invoice=invoice)
    if form.is_valid():
        try:
            credit = credit_note_create(actor=request.user, invoice_id=invoice.pk,
                                        amount_cents=form.cleaned_data["amount"], reason=form.cleaned_data["reason"])
        except InvoicingError as error:
            form.add_error("amount" if "Montant" in str(error) else None, str(error))
        else:
            messages.success(request, f"Avoir {credit.number} de {format_euros(-credit.total_cents)} créé sur la "
                                      f"facture {invoice.number}.")
            return redirect("billing_staff:invoice", invoice_id=invoice.pk)
    return _render_invoice(request, invoice, form=form, status=400)


@regisseur_required
@require_POST
def credit_use(request, invoice_id):
    """Use the family's credit (trop-perçu) in the régie on this invoice."""
    invoice = _invoice_or_404(invoice_id)
    try:
        updated = settlement.credit_apply(staff_or_system=request.user, family=invoice.family, regie=invoice.regie,
                                          invoice_id=invoice.pk)
    except REFUSALS as error:
        messages.error(request, error_text(error))
    else:
        messages.success(request, f"Crédit de la famille utilisé : reste à payer {format_euros(updated.balance_cents)}.")
    return redirect("billing_staff:invoice", invoice_id=invoice.pk)


# --- One payment: detail, refund, amount anomaly -------------------------------------------------


def _payment_or_404(payment_id) -> PaymentAttempt:
    try:
        payment = (PaymentAttempt.objects.select_related("regie", "family", "created_by")
                   .annotate(**guardian_name_annotations())
                   .prefetch_related("allocations__invoice", "notifications").get(pk=int(payment_id)))
    except (PaymentAttempt.DoesNotExist, TypeError, ValueError):
        raise Http404("Paiement introuvable") from None
    decorate_payment(payment)
    payment.family_label = family_display(payment)
    return payment


def _render_payment(request, payment: PaymentAttempt, form=None, status: int = 200):
    refundable = payment.state in (PaymentAttempt.State.PAID, PaymentAttempt.State.PARTIALLY_REFUNDED)
    allocations = [(a.invoice, format_euros(a.amount_cents)) for a in payment.allocations.all()]
    return render(request, "billing/staff/payment.html", {
        "payment": payment, "allocations": allocations,
        "received_on": (payment.settings_snapshot or {}).get("received_on", ""),
        "form": form or (forms.RefundForm(payment=payment) if refundable else None),
        "refundable": format_euros(payment.amount_cents - payment.refunded_cents) if refundable else "",
        "notifications": list(payment.notifications.all().order_by("-received_at")[:20]),
    }, status=status)


@regisseur_required
def payment_detail(request, payment_id):
    return _render_payment(request, _payment_or_404(payment_id))


@regisseur_required
@require_POST
def payment_refund(request, payment_id):
    payment = _payment_or_404(payment_id)
    form = forms.RefundForm(request.POST, payment=payment)
    if form.is_valid():
        through_provider = form.cleaned_data.get("through_provider", False)
        try:
            settlement.payment_refund(staff=request.user, payment_id=payment.pk,
                                      amount_cents=form.cleaned_data["amount"], external=not through_provider,
                                      provider_refund=provider_refund if through_provider else None,
                                      reason=form.cleaned_data["reason"])
        except REFUSALS as error:
            field = "amount" if getattr(error, "field", None) == "amount_cents" else None
            form.add_error(field, error_text(error))
        else:
            messages.success(request, f"Remboursement de {format_euros(form.cleaned_data['amount'])} enregistré.")
            return redirect("billing_staff:payment", payment_id=payment.pk)
    return _render_payment(request, payment, form=form, status=400)


@regisseur_required
@require_POST
def payment_accept_amount(request, payment_id):
    payment = _payment_or_404(payment_id)
    try:
        settlement.payment_accept_reported_amount(staff=request.user, payment_id=payment.pk)
    except REFUSALS as error:
        messages.error(request, error_text(error))
    else:
        messages.success(request, "Montant annoncé par le prestataire accepté : le paiement est réglé sur les factures.")
    return redirect("billing_staff:payment", payment_id=payment.pk)
