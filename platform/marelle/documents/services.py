"""Writes on pièces justificatives: upload, staff decisions, deletion with the account.

Views, the API and the back-office all come through here; every rule about what may be
sent and decided lives in this module.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import os
import unicodedata
from datetime import date
from pathlib import PurePath

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _

from marelle.audit.services import audit_record
from marelle.catalog.models import DocumentType
from marelle.core import clock
from marelle.core.emails import send_templated_email
from marelle.documents.formats import SNIFF_BYTES, accepted_codes, format_size, formats_label, sniff
from marelle.documents.models import Document
from marelle.families.models import Child, Family
from marelle.families.permissions import family_of, is_staff_member

logger = logging.getLogger(__name__)

ORIGINAL_NAME_MAX = 200


class DocumentAlreadyDecided(Exception):
    """A staff decision on a document that is no longer pending."""


# --- Upload -----------------------------------------------------------------------------


def clean_original_name(name: str) -> str:
    """The family's file name, safe to show and to put in a Content-Disposition header:
    no directory part, no control characters, at most 200 characters (extension kept)."""
    name = PurePath((name or "").replace("\\", "/")).name
    name = "".join(ch for ch in unicodedata.normalize("NFC", name)
                   if unicodedata.category(ch)[0] != "C" and ch not in '"/\\').strip(" .")
    if len(name) > ORIGINAL_NAME_MAX:
        stem, suffix = os.path.splitext(name)
        suffix = suffix[:16]
        name = stem[: ORIGINAL_NAME_MAX - len(suffix)] + suffix
    return name or "document"


def too_large_message(*, name: str, document_type: DocumentType, size_bytes: int | None = None) -> str:
    if size_bytes is None:
        return _("Le fichier « %(name)s » est trop volumineux : %(max)s Mo au maximum pour cette pièce.") % {
            "name": name, "max": document_type.max_size_mb}
    return _("Le fichier « %(name)s » pèse %(size)s : %(max)s Mo au maximum pour cette pièce.") % {
        "name": name, "size": format_size(size_bytes), "max": document_type.max_size_mb}


def _check_scope(*, family: Family, document_type: DocumentType, child: Child | None) -> None:
    if document_type.is_archived:
        raise ValidationError({"document_type": _("Cette pièce n'est plus demandée par la commune.")})
    if document_type.scope == "family" and child is not None:
        raise ValidationError({"child": _("« %(type)s » concerne le foyer, pas un enfant en particulier.")
                               % {"type": document_type.label}})
    if document_type.scope == "child":
        if child is None:
            raise ValidationError({"child": _("Indiquez l'enfant concerné par « %(type)s ».")
                                   % {"type": document_type.label}})
        if child.family_id != family.pk or child.status == Child.Status.ARCHIVED:
            raise ValidationError({"child": _("Cet enfant ne fait pas partie de votre foyer.")})


def _read_head_and_digest(uploaded_file) -> tuple[bytes, str, int]:
    """First bytes (for sniffing), SHA-256 and real size, reading the file once."""
    uploaded_file.seek(0)
    digest = hashlib.sha256()
    head = b""
    size = 0
    for chunk in uploaded_file.chunks() if hasattr(uploaded_file, "chunks") else iter(
            lambda: uploaded_file.read(64 * 1024), b""):
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        digest.update(chunk)
        size += len(chunk)
    uploaded_file.seek(0)
    return head, digest.hexdigest(), size


def document_upload(*, actor, family: Family, document_type: DocumentType, child: Child | None,
                    uploaded_file: UploadedFile | None) -> Document:
    """Check and store one file sent for ``document_type`` (and ``child`` for a child-scope
    type). Raises ValidationError keyed by the form field at fault ("document_type",
    "child", "file"), with a French message naming the file."""
    if not is_staff_member(actor) and getattr(family_of(actor), "pk", None) != family.pk:
        raise PermissionDenied(_("Vous ne pouvez pas envoyer de pièce pour ce foyer."))
    _check_scope(family=family, document_type=document_type, child=child)
    if uploaded_file is None:
        raise ValidationError({"file": _("Choisissez le fichier à envoyer.")})

    name = clean_original_name(getattr(uploaded_file, "name", "") or "")
    declared = getattr(uploaded_file, "size", None)
    max_bytes = document_type.max_size_mb * 1024 * 1024
    if declared is not None and declared > max_bytes:
        raise ValidationError({"file": too_large_message(name=name, document_type=document_type,
                                                         size_bytes=declared)})
    head, sha256, size = _read_head_and_digest(uploaded_file)
    if size == 0:
        raise ValidationError({"file": _("Le fichier « %(name)s » est vide.") % {"name": name}})
    if size > max_bytes:
        raise ValidationError({"file": too_large_message(name=name, document_type=document_type,
                                                         size_bytes=size)})

    found, found_label = sniff(head)
    accepted_formats = accepted_codes(document_type)
    accepted = formats_label(accepted_formats)
    if found is None:
        raise ValidationError({"file": _(
            "Le fichier « %(name)s » n'est pas un fichier %(accepted)s valide : c'est son contenu qui est "
            "vérifié, quelle que soit son extension. Enregistrez ou numérisez la pièce au format %(accepted)s, "
            "puis envoyez-la à nouveau.") % {"name": name, "accepted": accepted}})
    if found.code not in accepted_formats:
        raise ValidationError({"file": _(
            "Le fichier « %(name)s » est au format %(found)s ; pour « %(type)s », seuls les fichiers "
            "%(accepted)s sont acceptés.") % {"name": name, "found": found_label, "type": document_type.label,
                                               "accepted": accepted}})
    if (Document.objects.filter(family=family, document_type=document_type, child=child, sha256=sha256,
                                status=Document.Status.PENDING).exists()):
        raise ValidationError({"file": _(
            "Le fichier « %(name)s » a déjà été envoyé pour cette pièce et attend d'être vérifié.")
            % {"name": name}})

    uploaded_by = actor if getattr(actor, "is_authenticated", False) else None
    document = Document(family=family, child=child, document_type=document_type, original_name=name,
                        content_type=found.mime, size_bytes=size, sha256=sha256, uploaded_by=uploaded_by,
                        uploaded_at=clock.now())
    # The file is written before the row: if the row cannot be saved, remove the file.
    document.file.save(name, uploaded_file, save=False)
    try:
        with transaction.atomic():
            document.save()
            audit_record(actor=actor, action="document.uploaded", target=f"document:{document.pk}",
                         family_id=family.pk, document_type=document_type.code, child=document.child_id,
                         format=found.code, size_bytes=size)
    except BaseException:
        document.file.storage.delete(document.file.name)
        raise
    return document


# --- Staff decisions --------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's end (31 Jan + 1 = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def _lock_pending(*, staff, document_id: int) -> Document:
    if not is_staff_member(staff):
        raise PermissionDenied(_("Réservé aux agents de la commune."))
    document = (Document.objects.select_for_update(of=("self",))
                .select_related("document_type", "child", "family").get(pk=document_id))
    if document.status != Document.Status.PENDING:
        raise DocumentAlreadyDecided(_("Ce document a déjà été traité : %(state)s le %(date)s.") % {
            "state": document.get_status_display().lower(),
            "date": timezone.localtime(document.reviewed_at, clock.PARIS).strftime("%d/%m/%Y à %H:%M")})
    return document


@transaction.atomic
def document_accept(*, staff, document_id: int) -> Document:
    """Accept a pending document; it is valid for the type's validity_months from today
    (Paris), or forever when the type has none."""
    document = _lock_pending(staff=staff, document_id=document_id)
    months = document.document_type.validity_months
    document.status = Document.Status.ACCEPTED
    document.reviewed_by, document.reviewed_at = staff, clock.now()
    document.valid_until = add_months(clock.today(), months) if months else None
    document.refusal_reason = ""
    document.save(update_fields=["status", "reviewed_by", "reviewed_at", "valid_until", "refusal_reason"])
    audit_record(actor=staff, action="document.accepted", target=f"document:{document.pk}",
                 family_id=document.family_id, document_type=document.document_type.code,
                 valid_until=document.valid_until.isoformat() if document.valid_until else None)
    _notify_decision(document)
    return document


@transaction.atomic
def document_refuse(*, staff, document_id: int, reason: str) -> Document:
    """Refuse a pending document; the reason is shown to the family and sent to them."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Indiquez le motif du refus : il sera communiqué à la famille.")})
    document = _lock_pending(staff=staff, document_id=document_id)
    document.status, document.refusal_reason = Document.Status.REFUSED, reason
    document.reviewed_by, document.reviewed_at = staff, clock.now()
    document.save(update_fields=["status", "refusal_reason", "reviewed_by", "reviewed_at"])
    audit_record(actor=staff, action="document.refused", target=f"document:{document.pk}",
                 family_id=document.family_id, document_type=document.document_type.code)
    _notify_decision(document)
    return document


def _notify_decision(document: Document) -> None:
    """E-mail the family's account holders (sent by Celery after commit)."""
    recipients = sorted({g.user.email for g in document.family.guardians.select_related("user")
                         if g.user_id and g.user.email and g.user.is_active})
    if recipients:
        send_templated_email(to=recipients, template="document_decided", context={"document": document})


# --- Deletion ---------------------------------------------------------------------------


@transaction.atomic
def documents_delete_for_family(family: Family, *, actor=None) -> int:
    """Delete every document of ``family``, rows and files (closing of the account).

    Files go once the transaction commits (see ``_delete_file``), so a rollback loses
    nothing. Returns the number of documents deleted."""
    documents = list(Document.objects.filter(family=family))
    for document in documents:
        document.delete()
    audit_record(actor=actor, action="documents.deleted_for_family", target=f"family:{family.pk}",
                 family_id=family.pk, count=len(documents))
    return len(documents)


@receiver(post_delete, sender=Document, dispatch_uid="marelle.documents.delete_file")
def _delete_file(sender, instance: Document, **kwargs) -> None:
    """A deleted row takes its file along, after commit (also when a family or child row
    is deleted and the documents go by cascade)."""
    if not instance.file.name:
        return
    # Resolve the path now: the storage's location depends on the schema active now.
    path = instance.file.path

    def remove():
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError:
            logger.exception("could not delete document file %s", path)

    transaction.on_commit(remove)
