import json

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from marelle.catalog.models import AuthorisationType, Service
from marelle.families import forms, services
from marelle.families.models import ChangeRequest, Child, ChildContact, Guardian
from marelle.families.permissions import child_of_family, require_family
from marelle.families.postcodes import communes_for
from marelle.families.selectors import family_home_summary

PENDING_MESSAGE = ("Votre modification a été transmise aux services de la commune : elle sera appliquée après "
                   "validation.")


def _outcome_message(request, result, saved="Modifications enregistrées."):
    if result.outcome == "pending":
        messages.warning(request, PENDING_MESSAGE)
    elif result.outcome == "applied":
        messages.success(request, saved)


@login_required
def home(request):
    family = require_family(request.user)
    summary = family_home_summary(family)
    from marelle.billing.selectors import family_billing_summary

    return render(request, "families/home.html", {
        "family": family, "summary": summary, "services": Service.objects.active().select_related("regie"),
        "billing": family_billing_summary(family)})


@login_required
@require_http_methods(["GET", "POST"])
def family_edit(request):
    family = require_family(request.user)
    guardians = {g.position: g for g in family.guardians.all()}
    first = guardians[1]
    second = guardians.get(2)
    data = request.POST or None
    family_form = forms.FamilyForm(data, instance=family, prefix="foyer")
    first_form = forms.GuardianForm(data, instance=first, prefix="r1")
    wants_second = bool(request.POST.get("has_second")) if request.method == "POST" else second is not None
    second_form = forms.GuardianForm(data if wants_second else None, instance=second or Guardian(family=family, position=2),
                                     prefix="r2")
    if request.method == "POST":
        valid = family_form.is_valid() & first_form.is_valid() & (not wants_second or second_form.is_valid())
        if valid:
            with transaction.atomic():
                results = [
                    services.record_change(actor=request.user, family=family, target="family", instance=family,
                                           data={f: family_form.cleaned_data[f] for f in family_form.Meta.fields}),
                    services.record_change(actor=request.user, family=family, target="guardian", instance=first,
                                           data={f: first_form.cleaned_data[f] for f in first_form.Meta.fields}),
                ]
                if wants_second:
                    if second is None:
                        services.guardian_add(actor=request.user, family=family,
                                              data={f: second_form.cleaned_data[f] for f in second_form.Meta.fields})
                    else:
                        results.append(services.record_change(
                            actor=request.user, family=family, target="guardian", instance=second,
                            data={f: second_form.cleaned_data[f] for f in second_form.Meta.fields}))
            outcomes = {r.outcome for r in results}
            if "pending" in outcomes:
                messages.warning(request, PENDING_MESSAGE)
            else:
                messages.success(request, "Vos informations sont enregistrées.")
            return redirect("families:home")
        messages.error(request, "Certains champs sont à corriger : voir les messages en rouge.")
    return render(request, "families/family_form.html", {
        "family_form": family_form, "first_form": first_form, "second_form": second_form,
        "wants_second": wants_second, "pending": family.change_requests.filter(status="pending")})


def _authorisation_types():
    return list(AuthorisationType.objects.active())


@login_required
@require_http_methods(["GET", "POST"])
def child_new(request):
    family = require_family(request.user)
    types = _authorisation_types()
    data = request.POST or None
    child_form = forms.ChildForm(data, prefix="enfant", initial={"last_name": family.primary_guardian.last_name})
    health_form = forms.HealthForm(data, prefix="sante")
    auth_form = forms.AuthorisationsForm(data, types=types, prefix="autorisations")
    consent_form = forms.ConsentForm(data, prefix="accord")
    if request.method == "POST":
        if child_form.is_valid() & health_form.is_valid() & auth_form.is_valid() & consent_form.is_valid():
            with transaction.atomic():
                child, result = services.child_create(
                    actor=request.user, family=family,
                    data={f: child_form.cleaned_data[f] for f in child_form.Meta.fields},
                    health=health_form.health_values())
                services.authorisations_save(actor=request.user, child=child, answers=auth_form.answers())
            if result.outcome == "pending":
                messages.warning(request, f"La fiche de {child.first_name} a été transmise aux services de la "
                                          "commune pour validation.")
            else:
                messages.success(request, f"La fiche de {child.first_name} est enregistrée. Ajoutez maintenant les "
                                          "personnes à contacter en cas d'urgence.")
            return redirect("families:child", child_id=child.pk)
        messages.error(request, "Certains champs sont à corriger : voir les messages en rouge.")
    return render(request, "families/child_form.html", {
        "child_form": child_form, "health_form": health_form, "auth_form": auth_form,
        "consent_form": consent_form, "creating": True})


@login_required
def child_detail(request, child_id):
    family = require_family(request.user)
    child = child_of_family(family, child_id)
    child = (Child.objects.select_related("health")
             .prefetch_related("contacts", Prefetch("authorisations", queryset=_answers_queryset()))
             .get(pk=child.pk))
    return render(request, "families/child_detail.html", {
        "child": child,
        "pending": family.change_requests.filter(status="pending", target__in=("child", "health"), object_id__in=[
            child.pk, getattr(getattr(child, "health", None), "pk", 0)]),
    })


def _answers_queryset():
    from marelle.families.models import ChildAuthorisation

    return ChildAuthorisation.objects.select_related("authorisation_type")


@login_required
@require_http_methods(["GET", "POST"])
def child_edit(request, child_id):
    family = require_family(request.user)
    child = child_of_family(family, child_id)
    health = getattr(child, "health", None)
    types = _authorisation_types()
    answers = {a.authorisation_type_id: a.answer for a in child.authorisations.all()}
    data = request.POST or None
    child_form = forms.ChildForm(data, instance=child, prefix="enfant")
    health_form = forms.HealthForm(data, health=health, prefix="sante")
    auth_form = forms.AuthorisationsForm(data, types=types, answers=answers, prefix="autorisations")
    consent_form = forms.ConsentForm(data, prefix="accord")
    if request.method == "POST":
        if child_form.is_valid() & health_form.is_valid() & auth_form.is_valid() & consent_form.is_valid():
            with transaction.atomic():
                child_result = services.record_change(
                    actor=request.user, family=family, target="child", instance=Child.objects.get(pk=child.pk),
                    data={f: child_form.cleaned_data[f] for f in child_form.Meta.fields})
                health = health or services.ChildHealth.objects.create(child=child)
                health_result = services.record_change(actor=request.user, family=family, target="health",
                                                       instance=health, data=health_form.health_values())
                services.authorisations_save(actor=request.user, child=child, answers=auth_form.answers())
                services.child_touch_consent(child=child)
            if "pending" in (child_result.outcome, health_result.outcome):
                messages.warning(request, PENDING_MESSAGE)
            else:
                messages.success(request, f"La fiche de {child.first_name} est enregistrée.")
            return redirect("families:child", child_id=child.pk)
        messages.error(request, "Certains champs sont à corriger : voir les messages en rouge.")
    return render(request, "families/child_form.html", {
        "child": child, "child_form": child_form, "health_form": health_form, "auth_form": auth_form,
        "consent_form": consent_form, "creating": False})


@login_required
@require_http_methods(["GET", "POST"])
def contact_edit(request, child_id, contact_id=None):
    family = require_family(request.user)
    child = child_of_family(family, child_id)
    contact = get_object_or_404(ChildContact, child=child, pk=contact_id) if contact_id is not None else None
    form = forms.ContactForm(request.POST or None, instance=contact)
    if request.method == "POST" and form.is_valid():
        services.contact_save(actor=request.user, child=child, contact=contact,
                              data={f: form.cleaned_data[f] for f in form.Meta.fields})
        messages.success(request, "La personne est enregistrée.")
        return redirect("families:child", child_id=child.pk)
    return render(request, "families/contact_form.html", {
        "child": child, "form": form, "contact": contact, "relationships": forms.RELATIONSHIPS})


@login_required
@require_POST
def contact_delete(request, child_id, contact_id):
    family = require_family(request.user)
    child = child_of_family(family, child_id)
    contact = get_object_or_404(ChildContact, child=child, pk=contact_id)
    services.contact_delete(actor=request.user, contact=contact)
    messages.success(request, f"{contact.first_name} {contact.last_name} a été retiré·e de la fiche.")
    return redirect("families:child", child_id=child.pk)


@login_required
def change_requests(request):
    family = require_family(request.user)
    return render(request, "families/change_requests.html", {
        "requests": family.change_requests.exclude(status=ChangeRequest.Status.CANCELLED)})


@login_required
def export(request):
    family = require_family(request.user)
    payload = json.dumps(services.family_export(family), ensure_ascii=False, indent=2, default=str)
    response = HttpResponse(payload, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="mes-donnees-{family.reference}.json"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def close(request):
    family = require_family(request.user)
    form = forms.CloseAccountForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        services.family_close(actor=request.user, family=family)
        logout(request)
        return render(request, "families/closed.html")
    return render(request, "families/close.html", {"form": form})


def postcode_lookup(request):
    """Communes served by a postcode, for the city suggestions (progressive enhancement)."""
    postcode = request.GET.get("cp", "").strip()
    return JsonResponse({"communes": list(communes_for(postcode)) if len(postcode) == 5 else []})
