"""Back-office pages for the commune's staff (/gestion/)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from marelle.accounts.models import User
from marelle.backoffice import selectors, services
from marelle.backoffice.access import forbidden, role_labels, staff_required
from marelle.backoffice.forms import DeskFamilyForm, RefuseForm, StaffAccountForm
from marelle.core import clock
from marelle.core.commune import current_config
from marelle.families.models import ChangeRequest, Child, Family
from marelle.families.services import (
    ChangeRequestClosed,
    change_request_accept,
    change_request_refuse,
)

PAGE_SIZE = 25
ADMIN_ROLES = (User.StaffRole.ADMINISTRATEUR,)


def _next_url(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


def _health_refusal_text() -> str:
    return ("Les renseignements médicaux sont réservés aux rôles suivants : "
            + ", ".join(role_labels(current_config().families.health_data_roles)) + ".")


# --- Dashboard ---------------------------------------------------------------------------


@staff_required
def dashboard(request):
    return render(request, "backoffice/dashboard.html", {
        "pending_requests": selectors.pending_change_request_count(),
        "pending_documents": selectors.pending_documents_count(),
        "documents_url": selectors.documents_queue_url(),
        "families_count": Family.objects.filter(status=Family.Status.ACTIVE).count(),
        "invitation_mode": current_config().families.signup == "invitation",
        "is_admin": request.user.staff_role in ADMIN_ROLES,
    })


# --- Families ----------------------------------------------------------------------------


@staff_required
def family_list(request):
    query = " ".join(request.GET.get("q", "").split())[:100]
    page = Paginator(selectors.family_search(query), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "backoffice/family_list.html", {
        "query": query,
        "page": page,
        "families": list(page.object_list),
        "invitation_mode": current_config().families.signup == "invitation",
    })


@dataclass
class RequestItem:
    """A change request as one staff member may see it."""

    request: ChangeRequest
    rows: list = field(default_factory=list)
    health: bool = False
    visible: bool = True  # False: health content this role may not read
    decidable: bool = True
    refuse_form: RefuseForm | None = None


def request_items(staff, change_requests, *, forms: dict | None = None,
                  health_children: dict[int, int] | None = None,
                  revealed_child_ids: frozenset[int] = frozenset()) -> list[RequestItem]:
    """Build the display of ``change_requests``. Health ones are shown only to the roles the
    config allows, and each such display is recorded as a read of that child's health data,
    except for ``revealed_child_ids`` (the page already recorded them).

    ``health_children`` (ChildHealth id -> child id) spares a query when the caller knows it.
    """
    change_requests = list(change_requests)
    health_allowed = services.health_data_allowed(staff)
    health_requests = [cr for cr in change_requests if selectors.is_health_request(cr)]
    if health_allowed and health_requests:
        if health_children is None:
            health_children = selectors.health_request_children(health_requests)
        to_record = [health_children[cr.object_id] for cr in health_requests
                     if cr.object_id in health_children and health_children[cr.object_id] not in revealed_child_ids]
        if to_record:
            services.reveal_health_data(staff=staff, children=to_record, context=services.CHANGE_REQUEST)
    items = []
    for cr in change_requests:
        health = selectors.is_health_request(cr)
        visible = health_allowed or not health
        pending = cr.status == ChangeRequest.Status.PENDING
        items.append(RequestItem(
            request=cr, health=health, visible=visible, decidable=visible and pending,
            rows=selectors.change_rows(cr) if visible else [],
            refuse_form=(forms or {}).get(cr.pk) or RefuseForm(change_request_id=cr.pk)))
    return items


@dataclass
class ChildView:
    child: Child
    age: str
    authorisations: list
    health: list | None  # None: not shown to this role


@staff_required
def family_detail(request, family_id):
    try:
        family = selectors.family_for_staff(family_id)
    except Family.DoesNotExist:
        raise Http404("Famille introuvable") from None
    children = list(family.children.all())
    current = [c for c in children if c.status != Child.Status.ARCHIVED]
    archived = [c for c in children if c.status == Child.Status.ARCHIVED]
    # The one place a staff read of health data happens on this page: recorded per child.
    show_health = services.reveal_health_data(staff=request.user, children=current, context=services.FAMILY_PAGE)
    types = selectors.active_authorisation_types()
    today = clock.today()
    config = current_config()
    return render(request, "backoffice/family_detail.html", {
        "family": family,
        "guardians": list(family.guardians.all()),
        "children": [ChildView(child=c, age=selectors.age_label(c.birth_date, today),
                               authorisations=selectors.authorisation_rows(c, types),
                               health=selectors.health_rows(getattr(c, "health", None)) if show_health else None)
                     for c in current],
        "archived_children": archived,
        "show_health": show_health,
        "health_refusal": "" if show_health else _health_refusal_text(),
        "bracket": selectors.quotient_bracket(config, family.quotient),
        "documents": selectors.family_documents(family),
        "requests": request_items(
            request.user, family.pending_requests,
            health_children={c.health.pk: c.pk for c in children if getattr(c, "health", None)},
            revealed_child_ids=frozenset(c.pk for c in current) if show_health else frozenset()),
        "here": request.get_full_path(),
    })


@staff_required
def family_create(request):
    if current_config().families.signup != "invitation":
        messages.info(request, "Dans cette commune, les familles créent elles-mêmes leur compte en ligne.")
        return redirect("backoffice:families")
    form = DeskFamilyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        email = data.pop("email")
        try:
            family = services.family_create_at_desk(actor=request.user, email=email, guardian=data, base=request)
        except services.EmailAlreadyUsed:
            form.add_error("email", "Un compte existe déjà avec cette adresse e-mail dans la commune.")
        else:
            if family.invitation_sent:
                messages.success(request, f"Famille créée. Une invitation a été envoyée à {email}.")
            else:
                messages.warning(request, "Famille créée. L'envoi de l'invitation n'est pas encore disponible : "
                                          "transmettez ses accès à la famille.")
            return redirect("backoffice:family", family_id=family.pk)
    return render(request, "backoffice/family_create.html", {"form": form})


# --- Change requests ---------------------------------------------------------------------


@staff_required
def change_request_list(request):
    page = Paginator(selectors.pending_change_requests(), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "backoffice/change_request_list.html", {
        "page": page,
        "items": request_items(request.user, page.object_list),
        "health_refusal": _health_refusal_text(),
        "here": request.get_full_path(),
    })


def _load_request(change_request_id) -> ChangeRequest:
    return get_object_or_404(ChangeRequest.objects.select_related("family", "requested_by", "decided_by"),
                             pk=change_request_id)


def _render_request(request, change_request: ChangeRequest, form: RefuseForm | None = None):
    [item] = request_items(request.user, [change_request], forms={change_request.pk: form} if form else None)
    return render(request, "backoffice/change_request_detail.html", {
        "item": item,
        "health_refusal": _health_refusal_text(),
        "here": _next_url(request, reverse("backoffice:change_requests")),
    })


@staff_required
def change_request_detail(request, change_request_id):
    return _render_request(request, _load_request(change_request_id))


def _closed(request, change_request: ChangeRequest):
    messages.warning(request, f"Cette demande a déjà été traitée ({change_request.get_status_display().lower()}) : "
                              "aucune nouvelle décision n'a été enregistrée.")
    return redirect(_next_url(request, reverse("backoffice:change_requests")))


@staff_required
@require_POST
def change_request_accept_view(request, change_request_id):
    change_request = _load_request(change_request_id)
    if selectors.is_health_request(change_request) and not services.health_data_allowed(request.user):
        return forbidden(request, _health_refusal_text())
    if change_request.status != ChangeRequest.Status.PENDING:
        return _closed(request, change_request)
    try:
        change_request_accept(staff=request.user, change_request_id=change_request.pk)
    except ChangeRequestClosed:
        change_request.refresh_from_db(fields=["status"])
        return _closed(request, change_request)
    except (KeyError, ObjectDoesNotExist, ValidationError, ValueError):
        messages.error(request, "Cette demande ne peut pas être appliquée automatiquement (fiche supprimée ou "
                                "type de demande non pris en charge). Elle reste en attente.")
    else:
        messages.success(request, f"Demande acceptée : « {change_request.summary} ». La fiche est à jour et "
                                  "la famille est prévenue.")
    return redirect(_next_url(request, reverse("backoffice:change_requests")))


@staff_required
@require_POST
def change_request_refuse_view(request, change_request_id):
    change_request = _load_request(change_request_id)
    if selectors.is_health_request(change_request) and not services.health_data_allowed(request.user):
        return forbidden(request, _health_refusal_text())
    if change_request.status != ChangeRequest.Status.PENDING:
        return _closed(request, change_request)
    form = RefuseForm(request.POST, change_request_id=change_request.pk)
    if not form.is_valid():
        return _render_request(request, change_request, form)
    try:
        change_request_refuse(staff=request.user, change_request_id=change_request.pk,
                              reason=form.cleaned_data["reason"])
    except ChangeRequestClosed:
        change_request.refresh_from_db(fields=["status"])
        return _closed(request, change_request)
    messages.success(request, f"Demande refusée : « {change_request.summary} ». La famille est prévenue avec "
                              "le motif.")
    return redirect(_next_url(request, reverse("backoffice:change_requests")))


# --- Staff accounts ----------------------------------------------------------------------


@staff_required(roles=ADMIN_ROLES)
def staff_accounts(request):
    form = StaffAccountForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = services.staff_account_create(actor=request.user, email=data["email"],
                                                 first_name=data["first_name"], last_name=data["last_name"],
                                                 role=data["role"], base=request)
        except services.EmailAlreadyUsed:
            form.add_error("email", "Un compte existe déjà avec cette adresse e-mail dans la commune.")
        else:
            if user.invitation_sent:
                messages.success(request, f"Compte créé pour {user.email} ({user.get_staff_role_display()}). "
                                          "Une invitation à choisir un mot de passe lui a été envoyée.")
            else:
                messages.warning(request, f"Compte créé pour {user.email}. L'envoi de l'invitation n'est pas "
                                          "encore disponible : le compte reste inactif.")
            return redirect("backoffice:staff_accounts")
    return render(request, "backoffice/staff_accounts.html", {
        "form": form,
        "accounts": list(services.staff_accounts()),
    })
