"""Invoices (numbered per régie and year, immutable once issued), credit notes, invoicing
runs, payment attempts with their state machine, allocations and family credit."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from marelle.catalog.models import Regie, Service, Unit
from marelle.families.models import Child, Family


class InvoicingRun(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Brouillon")
        ISSUED = "issued", _("Émise")
        CANCELLED = "cancelled", _("Abandonnée")

    regie = models.ForeignKey(Regie, on_delete=models.PROTECT, related_name="invoicing_runs")
    period_start = models.DateField()
    period_end = models.DateField()
    label = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    issued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Two runs racing for the same régie and period: the second one fails here.
            models.UniqueConstraint(fields=["regie", "period_start", "period_end"], condition=~Q(status="cancelled"),
                                    name="one_live_run_per_regie_period"),
        ]


class InvoiceCounter(models.Model):
    """Gapless numbering per régie and year, advanced under a row lock at issue time."""

    regie = models.ForeignKey(Regie, on_delete=models.PROTECT, related_name="+")
    year = models.PositiveSmallIntegerField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["regie", "year"], name="one_counter_per_regie_year")]


class Invoice(models.Model):
    class Kind(models.TextChoices):
        INVOICE = "invoice", _("Facture")
        CREDIT_NOTE = "credit_note", _("Avoir")

    class Status(models.TextChoices):
        DRAFT = "draft", _("Brouillon")
        TO_PAY = "to_pay", _("À payer")
        PARTIALLY_PAID = "partially_paid", _("Partiellement payée")
        PAID = "paid", _("Payée")
        TRANSMITTED = "transmitted", _("Transmise au Trésor public")
        CANCELLED = "cancelled", _("Annulée")

    regie = models.ForeignKey(Regie, on_delete=models.PROTECT, related_name="invoices")
    family = models.ForeignKey(Family, on_delete=models.PROTECT, related_name="invoices")
    run = models.ForeignKey(InvoicingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVOICE)
    credited_invoice = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                         related_name="credit_notes")
    # Empty while draft; "CG-2026-000042" once issued, never reused.
    number = models.CharField(max_length=30, blank=True)
    label = models.CharField(max_length=150)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    total_cents = models.IntegerField(default=0)
    paid_cents = models.IntegerField(default=0)
    # Who and where at issue time: the invoice says what it said, whatever changes later.
    debtor = models.JSONField(default=dict)
    issued_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    pdf = models.FileField(upload_to="factures/", blank=True)

    class Meta:
        ordering = ["-issued_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["regie", "number"], condition=~Q(number=""), name="invoice_number_per_regie"),
            models.CheckConstraint(condition=Q(status="draft") | ~Q(number=""), name="issued_invoice_has_number"),
        ]

    def __str__(self):
        return self.number or f"Brouillon n°{self.pk}"

    @property
    def balance_cents(self) -> int:
        return self.total_cents - self.paid_cents


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    child = models.ForeignKey(Child, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    child_name = models.CharField(max_length=200, blank=True)
    service = models.ForeignKey(Service, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    unit = models.ForeignKey(Unit, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    label = models.CharField(max_length=200)
    dates = models.JSONField(default=list)  # ["2026-09-14", ...]
    quantity = models.PositiveIntegerField(default=1)
    unit_price_cents = models.IntegerField()
    amount_cents = models.IntegerField()
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]


class PaymentAttempt(models.Model):
    """One attempt to collect money for one or more invoices of one régie.

    created → pending → paid | refused | cancelled | expired, then possibly
    refunded / partially_refunded. Changed only by the settlement core, under a row lock.
    """

    class State(models.TextChoices):
        CREATED = "created", _("Créé")
        PENDING = "pending", _("En attente de validation par la banque")
        PAID = "paid", _("Validé")
        REFUSED = "refused", _("Refusé")
        CANCELLED = "cancelled", _("Annulé")
        EXPIRED = "expired", _("Expiré")
        REFUNDED = "refunded", _("Remboursé")
        PARTIALLY_REFUNDED = "partially_refunded", _("Partiellement remboursé")

    class Means(models.TextChoices):
        ONLINE = "online", _("Paiement en ligne")
        CHEQUE = "cheque", _("Chèque")
        CASH = "especes", _("Espèces")
        CESU = "cesu", _("CESU")
        ANCV = "ancv", _("Chèques vacances (ANCV)")
        TRANSFER = "virement", _("Virement")
        TRESOR_PUBLIC = "tresor_public", _("Transmis au Trésor public")

    regie = models.ForeignKey(Regie, on_delete=models.PROTECT, related_name="payments")
    family = models.ForeignKey(Family, on_delete=models.PROTECT, related_name="payments")
    invoices = models.ManyToManyField(Invoice, through="Allocation", related_name="payments")
    means = models.CharField(max_length=16, choices=Means.choices, default=Means.ONLINE)
    state = models.CharField(max_length=20, choices=State.choices, default=State.CREATED, db_index=True)
    amount_cents = models.PositiveIntegerField()
    refunded_cents = models.PositiveIntegerField(default=0)
    provider = models.CharField(max_length=60, blank=True)
    provider_reference = models.CharField(max_length=120, blank=True)
    # The plugin settings in force when the attempt started (a later YAML change never
    # changes how an in-flight payment is reconciled).
    settings_snapshot = models.JSONField(default=dict)
    # The amount the provider reported when it differs: flagged for the régisseur.
    anomaly = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    reference = models.CharField(max_length=40, blank=True)  # chèque number, transfer reference…

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_reference"], condition=~Q(provider_reference=""),
                                    name="provider_reference_unique_per_provider"),
            models.CheckConstraint(condition=Q(means="especes", amount_cents__lte=30000) | ~Q(means="especes"),
                                   name="cash_at_most_300_euros"),
        ]


class Allocation(models.Model):
    payment = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    amount_cents = models.PositiveIntegerField()


class ProviderNotification(models.Model):
    """Every raw notification received, kept for audit (hints, never truth)."""

    received_at = models.DateTimeField(auto_now_add=True)
    provider = models.CharField(max_length=60)
    payment = models.ForeignKey(PaymentAttempt, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="notifications")
    event_id = models.CharField(max_length=120, blank=True)
    payload = models.JSONField(default=dict)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], condition=~Q(event_id=""),
                                    name="provider_event_once"),
        ]


class FamilyCredit(models.Model):
    """Money received beyond what was owed, per régie, usable on the next invoice."""

    family = models.ForeignKey(Family, on_delete=models.PROTECT, related_name="credits")
    regie = models.ForeignKey(Regie, on_delete=models.PROTECT, related_name="+")
    balance_cents = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["family", "regie"], name="one_credit_per_family_regie"),
            models.CheckConstraint(condition=Q(balance_cents__gte=0), name="credit_never_negative"),
        ]


class Basket(models.Model):
    """Immediate-payment items (an adhesion, prepaid bookings) waiting to be paid online.

    Its draft invoice holds the lines; paid, the invoice is numbered, issued and settled at
    once; not paid by ``expires_at``, its bookings are released and the draft stays a draft
    (never numbered: numbering stays gapless).
    """

    class State(models.TextChoices):
        OPEN = "open", _("À payer")
        PAID = "paid", _("Payé")
        EXPIRED = "expired", _("Expiré")

    family = models.ForeignKey(Family, on_delete=models.PROTECT, related_name="baskets")
    regie = models.ForeignKey(Regie, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN, db_index=True)
    invoice = models.OneToOneField(Invoice, on_delete=models.PROTECT, related_name="basket")
    label = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["state", "expires_at"], name="basket_open_by_expiry")]

    def __str__(self):
        return self.label


class BasketItem(models.Model):
    class Kind(models.TextChoices):
        ADHESION = "adhesion", _("Adhésion")
        BOOKING = "booking", _("Réservation payée d'avance")

    basket = models.ForeignKey(Basket, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    enrolment = models.ForeignKey("booking.Enrolment", on_delete=models.PROTECT, related_name="basket_items")
    # Prepaid bookings: the monthly invoicing run leaves them out (they are paid here).
    booking = models.OneToOneField("booking.Booking", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="basket_item")
    amount_cents = models.PositiveIntegerField()
