"""Invoices handed to another organisation to collect (titres de recette for the Trésor
public): batches (bordereaux), one row per invoice in a batch (the pièce), the numbering
counters, the files read back and the facts already applied from them.

The rows are changed only by :mod:`marelle.recovery.services`, under row locks.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from marelle.billing.models import Invoice, PaymentAttempt
from marelle.catalog.models import Regie


class RecoveryCounter(models.Model):
    """Batch and pièce numbers per numbering scope (for the Trésor public: the budget) and
    exercice. Advanced under a row lock at export; a number, once given, is never given again
    (a rejected batch keeps its numbers: Hélios refuses duplicates)."""

    budget_key = models.CharField(max_length=80)
    exercice = models.PositiveSmallIntegerField()
    last_batch = models.PositiveIntegerField(default=0)
    last_piece = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["budget_key", "exercice"], name="one_recovery_counter")]


class RecoveryBatch(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", _("Brouillon")
        EXPORTED = "exported", _("Généré, à transmettre")
        ACCEPTED = "accepted", _("Accepté par le guichet")
        PARTIALLY_REJECTED = "partially_rejected", _("Accepté, sauf certaines pièces")
        REJECTED = "rejected", _("Refusé : factures à réémettre")
        ABANDONED = "abandoned", _("Abandonné")

    regie = models.ForeignKey(Regie, on_delete=models.PROTECT, related_name="recovery_batches")
    channel = models.CharField(max_length=60)  # the plugin's identifier
    budget_key = models.CharField(max_length=80)
    label = models.CharField(max_length=150)
    state = models.CharField(max_length=20, choices=State.choices, default=State.DRAFT)
    # Numbers: given at export, never before (an abandoned draft burns none).
    exercice = models.PositiveSmallIntegerField(null=True, blank=True)
    sequence = models.PositiveIntegerField(null=True, blank=True)
    invoice_count = models.PositiveIntegerField(default=0)
    total_cents = models.BigIntegerField(default=0)
    # Invoices of the régie left out of the draft, with why: [{"invoice_id", "number", "messages"}].
    left_out = models.JSONField(default=list, blank=True)
    # What the receiving side said about the whole batch (acquittement errors…).
    messages = models.JSONField(default=list, blank=True)
    settings_snapshot = models.JSONField(default=dict)  # the régie's settings used for the file
    file = models.FileField(upload_to="recouvrement/", blank=True)
    filename = models.CharField(max_length=120, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    exported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    exported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["budget_key", "exercice", "sequence"], condition=Q(sequence__isnull=False),
                                    name="recovery_batch_number_once"),
        ]

    def __str__(self):
        if self.sequence:
            return f"Bordereau {self.sequence} ({self.exercice})"
        return f"Brouillon de bordereau n°{self.pk}"


class RecoveryItem(models.Model):
    """One invoice in one batch: the pièce (article de rôle) on the receiving side."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Dans un brouillon")
        EXPORTED = "exported", _("Titre généré, à transmettre")
        ACCEPTED = "accepted", _("Accepté par le guichet")
        PENDING = "pending", _("Mis en instance par le comptable")
        TAKEN = "taken", _("Pris en charge par le comptable")
        PARTIALLY_COLLECTED = "partially_collected", _("Partiellement recouvré")
        COLLECTED = "collected", _("Soldé auprès du Trésor public")
        WRITTEN_OFF = "written_off", _("Admis en non-valeur")
        REJECTED = "rejected", _("Refusé : à réémettre")
        CANCELLED = "cancelled", _("Annulé par le comptable")
        ABANDONED = "abandoned", _("Retiré (brouillon abandonné)")

    #: An invoice is in at most one batch in these states.
    LIVE = (Status.DRAFT, Status.EXPORTED, Status.ACCEPTED, Status.PENDING, Status.TAKEN,
            Status.PARTIALLY_COLLECTED, Status.COLLECTED, Status.WRITTEN_OFF)

    batch = models.ForeignKey(RecoveryBatch, on_delete=models.PROTECT, related_name="items")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="recovery_items")
    amount_cents = models.IntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    # Denormalised from the batch at export so the database itself refuses a reused number.
    budget_key = models.CharField(max_length=80, blank=True)
    exercice = models.PositiveSmallIntegerField(null=True, blank=True)
    piece_number = models.PositiveIntegerField(null=True, blank=True)
    reference = models.CharField(max_length=40, blank=True)  # "2026/3/42": exercice/bordereau/pièce
    treasury_reference = models.CharField(max_length=60, blank=True)  # what the comptable returned (NumDette…)
    recovered_cents = models.IntegerField(default=0)
    paid_online = models.BooleanField(default=False)
    as_of = models.DateField(null=True, blank=True)  # date of the latest file applied
    messages = models.JSONField(default=list, blank=True)
    # The règlement "transmis au Trésor public" that closed the invoice at the régie.
    payment = models.ForeignKey(PaymentAttempt, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["piece_number", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["invoice"], condition=Q(status__in=[
                "draft", "exported", "accepted", "pending", "taken", "partially_collected", "collected",
                "written_off"]), name="invoice_in_one_live_batch"),
            models.UniqueConstraint(fields=["budget_key", "exercice", "piece_number"],
                                    condition=Q(piece_number__isnull=False), name="recovery_piece_number_once"),
        ]


class FeedbackFile(models.Model):
    """A file read back (acquittement, PES Retour), kept as received."""

    regie = models.ForeignKey(Regie, on_delete=models.PROTECT, related_name="+")
    filename = models.CharField(max_length=200)
    file = models.FileField(upload_to="recouvrement/retours/")
    sha256 = models.CharField(max_length=64)
    summary = models.JSONField(default=dict)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-imported_at", "-pk"]


class AppliedFeedback(models.Model):
    """A fact already applied: its key (the channel's, stable) is recorded once per numbering
    scope, so importing the same file again changes nothing."""

    budget_key = models.CharField(max_length=80)
    key = models.CharField(max_length=200)
    state = models.CharField(max_length=20)
    batch = models.ForeignKey(RecoveryBatch, null=True, on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(RecoveryItem, null=True, on_delete=models.PROTECT, related_name="+")
    source = models.ForeignKey(FeedbackFile, null=True, on_delete=models.PROTECT, related_name="facts")
    applied_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["budget_key", "key"], name="feedback_applied_once")]
