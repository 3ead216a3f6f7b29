"""Writes on family records. Views, the API and the back-office all come through here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from django.db import models, transaction
from django.utils import timezone

from marelle.audit.services import audit_record
from marelle.core.commune import current_config
from marelle.core.emails import send_templated_email
from marelle.families.models import (
    ChangeRequest,
    Child,
    ChildAuthorisation,
    ChildContact,
    ChildHealth,
    Family,
    Guardian,
)
from marelle.families.permissions import is_staff_member

Outcome = Literal["applied", "pending", "unchanged"]

# What a change request may target, and how to find the row it changes.
TARGETS: dict[str, type[models.Model]] = {
    "family": Family,
    "guardian": Guardian,
    "child": Child,
    "health": ChildHealth,
}
# "Modification de …" / "Modification du …": the French article decides the contraction.
TARGET_LABELS = {"family": "du foyer", "guardian": "d'un responsable", "child": "de la fiche de",
                 "health": "des renseignements médicaux de"}


@dataclass(frozen=True)
class ChangeResult:
    outcome: Outcome
    change_request: ChangeRequest | None = None


def _to_json(value):
    if isinstance(value, date):
        return value.isoformat()
    return value


def _from_json(instance: models.Model, name: str, value):
    return instance._meta.get_field(name).to_python(value)


def needs_validation(actor) -> bool:
    return current_config().families.record_changes_need_validation and not is_staff_member(actor)


def _describe(target: str, instance) -> str:
    if target in ("child", "health"):
        child = instance if target == "child" else instance.child
        return f"{TARGET_LABELS[target]} {child.first_name}"
    if target == "guardian":
        return f"{TARGET_LABELS[target]} ({instance.first_name} {instance.last_name})"
    return TARGET_LABELS[target]


@transaction.atomic
def record_change(*, actor, family: Family, target: str, instance: models.Model, data: dict) -> ChangeResult:
    """Change ``instance`` with ``data`` (field -> new value), or file a change request when
    the commune validates families' changes. Only changed fields are kept.

    The row is re-read under a lock: a ModelForm may already have changed ``instance`` in
    memory, and two saves of the same record must not interleave."""
    instance = type(instance).objects.select_for_update().get(pk=instance.pk)
    diff = {name: value for name, value in data.items() if getattr(instance, name) != value}
    if not diff:
        return ChangeResult("unchanged")
    if needs_validation(actor):
        previous = {name: _to_json(getattr(instance, name)) for name in diff}
        payload = {name: _to_json(value) for name, value in diff.items()}
        existing = (ChangeRequest.objects.select_for_update()
                    .filter(family=family, target=target, object_id=instance.pk, action="update",
                            status=ChangeRequest.Status.PENDING).first())
        if existing:
            # One pending request per record: a second edit amends it instead of piling up.
            existing.data = {**existing.data, **payload}
            existing.previous = {**previous, **existing.previous}
            existing.save(update_fields=["data", "previous"])
            request = existing
        else:
            request = ChangeRequest.objects.create(
                family=family, target=target, object_id=instance.pk, action=ChangeRequest.Action.UPDATE,
                data=payload, previous=previous, summary=f"Modification {_describe(target, instance)}",
                requested_by=actor)
        audit_record(actor=actor, action=f"{target}.change_requested", target=f"{target}:{instance.pk}",
                     family_id=family.pk, fields=sorted(diff))
        return ChangeResult("pending", request)
    for name, value in diff.items():
        setattr(instance, name, value)
    instance.save(update_fields=[*diff, *(["updated_at"] if hasattr(instance, "updated_at") else [])])
    audit_record(actor=actor, action=f"{target}.updated", target=f"{target}:{instance.pk}", family_id=family.pk,
                 fields=sorted(diff))
    return ChangeResult("applied")


@transaction.atomic
def child_create(*, actor, family: Family, data: dict, health: dict | None = None) -> tuple[Child, ChangeResult]:
    pending = needs_validation(actor)
    child = Child.objects.create(family=family, status=Child.Status.PENDING if pending else Child.Status.ACTIVE,
                                 consent_at=timezone.now(), **data)
    ChildHealth.objects.create(child=child, **(health or {}))
    audit_record(actor=actor, action="child.created", target=f"child:{child.pk}", family_id=family.pk)
    if pending:
        request = ChangeRequest.objects.create(
            family=family, target="child", object_id=child.pk, action=ChangeRequest.Action.CREATE,
            data={k: _to_json(v) for k, v in data.items()},
            summary=f"Ajout de l'enfant {child.first_name} {child.last_name}", requested_by=actor)
        return child, ChangeResult("pending", request)
    return child, ChangeResult("applied")


def child_touch_consent(*, child: Child) -> None:
    Child.objects.filter(pk=child.pk).update(consent_at=timezone.now())


@transaction.atomic
def contact_save(*, actor, child: Child, contact: ChildContact | None, data: dict) -> ChildContact:
    """Emergency and pick-up contacts apply at once: the people who may collect a child
    must never wait for office hours."""
    contact = contact or ChildContact(child=child)
    for name, value in data.items():
        setattr(contact, name, value)
    created = contact.pk is None
    contact.save()
    audit_record(actor=actor, action="contact.created" if created else "contact.updated",
                 target=f"contact:{contact.pk}", family_id=child.family_id, child=child.pk)
    return contact


@transaction.atomic
def contact_delete(*, actor, contact: ChildContact) -> None:
    audit_record(actor=actor, action="contact.deleted", target=f"contact:{contact.pk}",
                 family_id=contact.child.family_id, child=contact.child_id)
    contact.delete()


@transaction.atomic
def authorisations_save(*, actor, child: Child, answers: dict[int, str]) -> None:
    """answers: authorisation type id -> "oui" / "non" / "non_concerne"."""
    existing = {a.authorisation_type_id: a for a in child.authorisations.all()}
    for type_id, answer in answers.items():
        current = existing.get(type_id)
        if current is None:
            ChildAuthorisation.objects.create(child=child, authorisation_type_id=type_id, answer=answer,
                                              answered_by=actor)
        elif current.answer != answer:
            current.answer, current.answered_by = answer, actor
            current.save(update_fields=["answer", "answered_by", "answered_at"])
    audit_record(actor=actor, action="authorisations.updated", target=f"child:{child.pk}",
                 family_id=child.family_id)


# --- Staff decisions -------------------------------------------------------------------


class ChangeRequestClosed(Exception):
    pass


@transaction.atomic
def change_request_accept(*, staff, change_request_id: int) -> ChangeRequest:
    request = ChangeRequest.objects.select_for_update().get(pk=change_request_id)
    if request.status != ChangeRequest.Status.PENDING:
        raise ChangeRequestClosed(f"Demande déjà traitée ({request.get_status_display().lower()}).")
    if request.action == ChangeRequest.Action.CREATE and request.target == "child":
        Child.objects.filter(pk=request.object_id).update(status=Child.Status.ACTIVE)
    elif request.target == "email":
        from django.contrib.auth import get_user_model

        from marelle.accounts.services import apply_email_change

        apply_email_change(get_user_model().objects.get(pk=request.object_id), request.data["email"])
    elif request.action == ChangeRequest.Action.DELETE:
        raise ChangeRequestClosed("Les demandes de suppression ne sont pas prises en charge.")
    elif request.action == ChangeRequest.Action.UPDATE:
        model = TARGETS[request.target]
        instance = model.objects.select_for_update().get(pk=request.object_id)
        for name, value in request.data.items():
            setattr(instance, name, _from_json(instance, name, value))
        instance.save()
    request.status, request.decided_by, request.decided_at = ChangeRequest.Status.ACCEPTED, staff, timezone.now()
    request.save(update_fields=["status", "decided_by", "decided_at"])
    audit_record(actor=staff, action="change_request.accepted", target=f"change_request:{request.pk}",
                 family_id=request.family_id)
    _notify_decision(request)
    return request


@transaction.atomic
def change_request_refuse(*, staff, change_request_id: int, reason: str) -> ChangeRequest:
    if not reason.strip():
        raise ValueError("Le motif du refus est obligatoire.")
    request = ChangeRequest.objects.select_for_update().get(pk=change_request_id)
    if request.status != ChangeRequest.Status.PENDING:
        raise ChangeRequestClosed(f"Demande déjà traitée ({request.get_status_display().lower()}).")
    if request.action == ChangeRequest.Action.CREATE and request.target == "child":
        Child.objects.filter(pk=request.object_id).update(status=Child.Status.ARCHIVED)
    request.status, request.reason = ChangeRequest.Status.REFUSED, reason.strip()
    request.decided_by, request.decided_at = staff, timezone.now()
    request.save(update_fields=["status", "reason", "decided_by", "decided_at"])
    audit_record(actor=staff, action="change_request.refused", target=f"change_request:{request.pk}",
                 family_id=request.family_id)
    _notify_decision(request)
    return request


def _notify_decision(request: ChangeRequest) -> None:
    guardian = request.family.primary_guardian
    if guardian and guardian.user and guardian.user.email:
        send_templated_email(to=guardian.user.email, template="change_request_decided",
                             context={"request": request, "guardian": guardian})


# --- Privacy ---------------------------------------------------------------------------


def family_export(family: Family) -> dict:
    """Everything the portal holds about a family, as JSON-ready data (RGPD access right)."""
    from django.forms.models import model_to_dict

    from marelle.audit.models import AuditEvent

    def plain(instance, exclude=()):
        return {k: _to_json(v) for k, v in model_to_dict(instance).items() if k not in exclude}

    children = []
    for child in family.children.prefetch_related("contacts", "authorisations__authorisation_type").select_related("health"):
        children.append({
            **plain(child, exclude=("family",)),
            "health": plain(child.health, exclude=("child",)) if hasattr(child, "health") else None,
            "contacts": [plain(c, exclude=("child",)) for c in child.contacts.all()],
            "authorisations": {a.authorisation_type.label: a.answer for a in child.authorisations.all()},
        })
    documents = []
    try:
        from marelle.documents.models import Document

        for document in Document.objects.filter(family=family).select_related("document_type"):
            documents.append({"type": document.document_type.label, "file": document.original_name,
                              "status": document.status, "uploaded_at": document.uploaded_at.isoformat()})
    except ImportError:  # documents app not installed
        pass
    return {
        "family": plain(family),
        "guardians": [plain(g, exclude=("family", "user")) for g in family.guardians.all()],
        "children": children,
        "documents": documents,
        "change_requests": [{"summary": r.summary, "status": r.status, "requested_at": r.requested_at.isoformat(),
                             "data": r.data} for r in family.change_requests.all()],
        "history": [{"at": e.at.isoformat(), "action": e.action} for e in AuditEvent.objects.filter(family_id=family.pk)],
    }


@transaction.atomic
def family_close(*, actor, family: Family) -> None:
    """Close the account: anonymise people and delete health data, contacts and documents.

    The family row and its id stay, so invoices and payments (kept 10 years for the
    comptable public) still point somewhere; invoices keep their own copy of the name.
    """
    family = Family.objects.select_for_update().get(pk=family.pk)
    if family.status == Family.Status.CLOSED:
        return
    try:
        from marelle.documents.services import documents_delete_for_family
    except ImportError:
        documents_delete_for_family = None
    if documents_delete_for_family is not None:
        documents_delete_for_family(family)
    for guardian in family.guardians.select_related("user"):
        user = guardian.user
        if user is not None:
            user.email = f"compte-clos-{user.pk}@invalid.marelle"
            user.first_name = user.last_name = ""
            user.is_active = False
            user.set_unusable_password()
            # Inactive, with a new password hash: every open session of the account stops
            # being valid at its next request.
            user.save()
        Guardian.objects.filter(pk=guardian.pk).update(
            last_name="Anonyme", first_name="", email="", phone_mobile="", phone_home="", phone_work="",
            address_line="", address_complement="", profession="", employer="", user=None)
    for child in family.children.all():
        ChildHealth.objects.filter(child=child).delete()
        child.contacts.all().delete()
        child.authorisations.all().delete()
        Child.objects.filter(pk=child.pk).update(
            first_name="Enfant", last_name="Anonyme", school="", diet_details="",
            birth_date=child.birth_date.replace(month=1, day=1), status=Child.Status.ARCHIVED)
    family.change_requests.filter(status=ChangeRequest.Status.PENDING).update(status=ChangeRequest.Status.CANCELLED)
    family.change_requests.update(data={}, previous={})
    family.status, family.closed_at = Family.Status.CLOSED, timezone.now()
    family.allowance_number = ""
    family.save(update_fields=["status", "closed_at", "allowance_number"])
    audit_record(actor=None, action="family.closed", target=f"family:{family.pk}", family_id=family.pk)


@transaction.atomic
def guardian_add(*, actor, family: Family, data: dict) -> Guardian:
    """A second responsable légal (without an account of their own)."""
    guardian = Guardian.objects.create(family=family, position=2, **data)
    audit_record(actor=actor, action="guardian.created", target=f"guardian:{guardian.pk}", family_id=family.pk)
    return guardian
