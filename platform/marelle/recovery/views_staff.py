"""The régisseur's side of the Trésor public (roles régisseur and administrateur).

- ``batches``: the régies that transmit their invoices, their bordereaux (state, numbers,
  totals, file), and the files read back;
- ``prepare``: what a new bordereau would carry (the invoices, and those left out with why),
  then "Préparer le bordereau" creates the draft;
- ``batch_detail`` / ``export`` / ``abandon`` / ``download``: a bordereau, "Générer le fichier
  PES" (numbers, file, invoices transmitted), the file itself;
- ``feedback``: upload an acquittement or a PES Retour and read what changed.

Everything that changes something goes through :mod:`marelle.recovery.services`.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from marelle.backoffice.access import staff_required
from marelle.billing.pricing import format_euros
from marelle.families.models import Guardian
from marelle.recovery import services
from marelle.recovery.models import FeedbackFile, RecoveryBatch, RecoveryItem

ROLES = ("regisseur", "administrateur")
MAX_FEEDBACK_BYTES = 50 * 1024 * 1024
regisseur_required = staff_required(roles=ROLES)


class PrepareForm(forms.Form):
    label = forms.CharField(label="Objet du bordereau", max_length=150, required=False,
                            help_text="Par exemple « Périscolaire septembre 2026 ». Par défaut : la régie et le mois.")


class FeedbackForm(forms.Form):
    file = forms.FileField(label="Fichier reçu du Trésor public (acquittement ou PES Retour, XML)")


def _regie_or_404(regie_id):
    return get_object_or_404(services.recovery_regies(), pk=regie_id)


@regisseur_required
def batches(request):
    regies = list(services.recovery_regies())
    rows = (RecoveryBatch.objects.filter(regie__in=regies).select_related("regie", "created_by")
            .order_by("-created_at", "-pk"))
    page = Paginator(rows, 30).get_page(request.GET.get("page"))
    for batch in page:
        batch.total_display = format_euros(batch.total_cents)
    files = FeedbackFile.objects.filter(regie__in=regies).select_related("regie", "imported_by")[:10]
    return render(request, "recovery/batches.html", {"regies": regies, "page": page, "files": files})


@regisseur_required
@require_http_methods(["GET", "POST"])
def prepare(request, regie_id):
    regie = _regie_or_404(regie_id)
    form = PrepareForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            batch = services.batch_prepare(staff=request.user, regie=regie, label=form.cleaned_data["label"])
        except services.RecoveryError as error:
            form.add_error(None, error.message)
            status = 400
        else:
            messages.success(request, f"Brouillon de bordereau créé : {batch.invoice_count} facture"
                                      f"{'s' if batch.invoice_count > 1 else ''} à vérifier avant de générer le "
                                      "fichier.")
            return redirect("recovery_staff:batch", batch_id=batch.pk)
    elif request.method == "POST":
        status = 400
    try:
        preview = services.batch_preview(regie)
    except services.RecoveryError as error:
        return render(request, "recovery/prepare.html", {"regie": regie, "form": form, "error": error.message},
                      status=400)
    for invoice in preview.included:
        invoice.total_display = format_euros(invoice.total_cents)
    return render(request, "recovery/prepare.html", {
        "regie": regie, "form": form, "preview": preview, "total_display": format_euros(preview.total_cents),
    }, status=status)


def _batch_or_404(batch_id) -> RecoveryBatch:
    return get_object_or_404(RecoveryBatch.objects.select_related("regie", "created_by", "exported_by"), pk=batch_id)


def _render_batch(request, batch, *, errors=(), status=200):
    items = (RecoveryItem.objects.filter(batch=batch).select_related("invoice")
             .annotate(**_guardian_on_invoice())
             .order_by("piece_number", "invoice__number", "pk"))
    page = Paginator(items, 100).get_page(request.GET.get("page"))
    for item in page:
        item.family_label = _family_label(item)
        item.amount_display = format_euros(item.amount_cents)
        item.recovered_display = format_euros(item.recovered_cents) if item.recovered_cents else ""
    return render(request, "recovery/batch.html", {
        "batch": batch, "page": page, "errors": list(errors), "total_display": format_euros(batch.total_cents),
    }, status=status)


def _guardian_on_invoice():
    """The first guardian's names through the item's invoice (for the family column)."""
    first = Guardian.objects.filter(family=OuterRef("invoice__family_id"), position=1)
    return {"guardian_last_name": Subquery(first.values("last_name")[:1]),
            "guardian_first_name": Subquery(first.values("first_name")[:1])}


def _family_label(item) -> str:
    last, first = item.guardian_last_name or "", item.guardian_first_name or ""
    name = f"{last.upper()} {first}".strip()
    return f"{name} (F{item.invoice.family_id:06d})" if name else f"F{item.invoice.family_id:06d}"


@regisseur_required
def batch_detail(request, batch_id):
    return _render_batch(request, _batch_or_404(batch_id))


@regisseur_required
@require_POST
def export(request, batch_id):
    batch = _batch_or_404(batch_id)
    try:
        batch = services.batch_export(staff=request.user, batch_id=batch.pk)
    except services.RecoveryError as error:
        return _render_batch(request, batch, errors=[error.message, *error.messages], status=400)
    messages.success(request, f"Fichier PES généré : bordereau {batch.sequence} de l'exercice {batch.exercice}, "
                              f"{batch.invoice_count} facture{'s' if batch.invoice_count > 1 else ''} transmise"
                              f"{'s' if batch.invoice_count > 1 else ''} au Trésor public. Téléchargez-le et "
                              "remettez-le à votre tiers de transmission.")
    return redirect("recovery_staff:batch", batch_id=batch.pk)


@regisseur_required
@require_POST
def abandon(request, batch_id):
    batch = _batch_or_404(batch_id)
    try:
        services.batch_abandon(staff=request.user, batch_id=batch.pk)
    except services.RecoveryError as error:
        return _render_batch(request, batch, errors=[error.message], status=400)
    messages.success(request, "Brouillon abandonné : ses factures pourront aller dans un autre bordereau.")
    return redirect("recovery_staff:batches")


@regisseur_required
def download(request, batch_id):
    batch = _batch_or_404(batch_id)
    if not batch.sha256:
        return _render_batch(request, batch, errors=["Ce bordereau n'a pas encore de fichier."], status=404)
    try:
        content = services.batch_content(batch)
    except (services.RecoveryError, FileNotFoundError) as error:
        message = error.message if isinstance(error, services.RecoveryError) else "Fichier introuvable."
        return _render_batch(request, batch, errors=[message], status=500)
    response = HttpResponse(content, content_type="application/xml")
    response["Content-Disposition"] = f'attachment; filename="{batch.filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@regisseur_required
@require_http_methods(["GET", "POST"])
def feedback(request, regie_id):
    regie = _regie_or_404(regie_id)
    form = FeedbackForm(request.POST or None, request.FILES or None)
    summary, status = None, 200
    if request.method == "POST":
        if form.is_valid():
            upload = form.cleaned_data["file"]
            if upload.size > MAX_FEEDBACK_BYTES:
                form.add_error("file", "Fichier trop volumineux (50 Mo au plus).")
            else:
                try:
                    summary = services.feedback_import(staff=request.user, regie=regie, content=upload.read(),
                                                       filename=upload.name)
                except services.RecoveryError as error:
                    form.add_error("file", error.message)
        if not form.is_valid() or form.errors:
            status = 400
    return render(request, "recovery/feedback.html", {"regie": regie, "form": form, "summary": summary},
                  status=status)
