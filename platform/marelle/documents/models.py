"""Pièces justificatives sent by families and reviewed by the commune's staff.

Files live on the default storage (django-tenants' TenantFileSystemStorage: under
``MEDIA_ROOT/<schema>/``), which no URL serves: the only way out is a view that checks who
asks (``marelle.documents.views``). Stored names are random; the family's file name is
kept in ``original_name`` for display and download only.

"Expiré" is not stored: it is an accepted document whose ``valid_until`` is before today
(Europe/Paris), so nothing has to run at midnight for a document to expire.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import PurePath

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from marelle.catalog.models import DocumentType
from marelle.core import clock
from marelle.documents.formats import BY_MIME, MIME_CHOICES, format_size
from marelle.families.models import Child, Family


def document_upload_to(instance: Document, filename: str) -> str:
    """documents/<family id>/<random>.<canonical extension of the sniffed format>.

    Nothing the family chose (name, extension) reaches the file system."""
    return f"documents/{instance.family_id}/{uuid.uuid4().hex}.{BY_MIME[instance.content_type].extension}"


class DocumentState(models.TextChoices):
    """What families and staff see: the stored status, plus "expiré" derived from the date."""

    PENDING = "pending", _("En attente")
    ACCEPTED = "accepted", _("Accepté")
    REFUSED = "refused", _("Refusé")
    EXPIRED = "expired", _("Expiré")


class DocumentQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status=Document.Status.PENDING)

    def for_review(self):
        """The staff queue: pending documents, oldest first, with what the list shows."""
        return (self.pending()
                .select_related("document_type", "child", "family", "uploaded_by")
                .prefetch_related("family__guardians")
                .order_by("uploaded_at", "pk"))


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("En attente")
        ACCEPTED = "accepted", _("Accepté")
        REFUSED = "refused", _("Refusé")

    family = models.ForeignKey(Family, on_delete=models.CASCADE, related_name="documents")
    # Set exactly when the type's scope is "child" (checked by services.document_upload: the
    # scope lives on another table, out of reach of a CHECK constraint).
    child = models.ForeignKey(Child, null=True, blank=True, on_delete=models.CASCADE, related_name="documents")
    document_type = models.ForeignKey(DocumentType, on_delete=models.PROTECT, related_name="documents",
                                      verbose_name=_("type de pièce"))
    file = models.FileField(_("fichier"), upload_to=document_upload_to, max_length=200)
    original_name = models.CharField(_("nom du fichier"), max_length=200)
    content_type = models.CharField(_("format"), max_length=40, choices=MIME_CHOICES)
    size_bytes = models.PositiveIntegerField(_("taille (octets)"))
    sha256 = models.CharField(max_length=64)
    status = models.CharField(_("état"), max_length=10, choices=Status.choices, default=Status.PENDING)
    refusal_reason = models.TextField(_("motif du refus"), blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    uploaded_at = models.DateTimeField(_("envoyé le"), default=clock.now)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    reviewed_at = models.DateTimeField(_("vérifié le"), null=True, blank=True)
    # Last day the document is valid (inclusive); null: does not expire.
    valid_until = models.DateField(_("valable jusqu'au"), null=True, blank=True)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        verbose_name = _("pièce justificative")
        verbose_name_plural = _("pièces justificatives")
        ordering = ["-uploaded_at", "-pk"]
        indexes = [
            # The staff queue (pending, oldest first).
            models.Index(fields=["status", "uploaded_at"], name="document_status_uploaded"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(size_bytes__gt=0), name="document_not_empty"),
            models.CheckConstraint(
                condition=~models.Q(status="refused") | ~models.Q(refusal_reason=""),
                name="document_refusal_has_reason"),
            models.CheckConstraint(
                condition=models.Q(status="pending", reviewed_at__isnull=True)
                | (~models.Q(status="pending") & models.Q(reviewed_at__isnull=False)),
                name="document_reviewed_iff_decided"),
            models.CheckConstraint(
                condition=models.Q(valid_until__isnull=True) | models.Q(status="accepted"),
                name="document_validity_only_when_accepted"),
        ]

    def __str__(self):
        return f"{self.document_type} – {self.original_name}"

    def state_on(self, day: date) -> str:
        """The state as shown on ``day``: one of DocumentState's values."""
        if self.status == self.Status.ACCEPTED and self.valid_until is not None and self.valid_until < day:
            return DocumentState.EXPIRED
        return DocumentState(self.status)

    @property
    def state(self) -> str:
        return self.state_on(clock.today())

    @property
    def state_label(self) -> str:
        return DocumentState(self.state).label

    @property
    def is_valid(self) -> bool:
        return self.state == DocumentState.ACCEPTED

    @property
    def format_label(self) -> str:
        found = BY_MIME.get(self.content_type)
        return found.label if found else self.content_type

    @property
    def size_label(self) -> str:
        return format_size(self.size_bytes)

    @property
    def download_name(self) -> str:
        """The family's file name, with an extension matching the real content (a PNG sent
        as "scan.pdf" downloads as "scan.pdf.png", so it opens in the right program)."""
        found = BY_MIME[self.content_type]
        suffix = PurePath(self.original_name).suffix.lower().lstrip(".")
        if suffix in found.extensions:
            return self.original_name
        return f"{self.original_name or 'document'}.{found.extension}"
