"""What a commune offers, as synced from its YAML: régies, services and their parts.

These rows live in the commune's schema so that enrolments, bookings and invoices can
reference them with real foreign keys. A config change never deletes one: what disappears
from the YAML gets ``archived_at`` and keeps everything families attached to it.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Archivable(models.Model):
    archived_at = models.DateTimeField(_("archivé le"), null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class ActiveQuerySet(models.QuerySet):
    def active(self):
        return self.filter(archived_at__isnull=True)


class Regie(Archivable):
    code = models.SlugField(max_length=40, unique=True)
    label = models.CharField(_("libellé"), max_length=200)
    invoice_prefix = models.CharField(_("préfixe des factures"), max_length=8)
    payment_plugin = models.CharField(_("moyen de paiement"), max_length=60, blank=True)
    payment_settings = models.JSONField(default=dict)
    online_payment_windows = models.JSONField(default=list)
    invoicing = models.JSONField(default=dict)

    objects = ActiveQuerySet.as_manager()

    class Meta:
        verbose_name = _("régie")
        ordering = ["label"]

    def __str__(self):
        return self.label


class Service(Archivable):
    class Kind(models.TextChoices):
        CRECHE = "creche", _("Crèche / multi-accueil")
        ALSH = "alsh", _("Accueil de loisirs")
        PERISCOLAIRE = "periscolaire", _("Périscolaire")
        CANTINE = "cantine", _("Restauration scolaire")
        JEUNESSE = "jeunesse", _("Jeunesse")

    code = models.SlugField(max_length=40, unique=True)
    kind = models.CharField(_("type"), max_length=20, choices=Kind.choices)
    label = models.CharField(_("libellé"), max_length=200)
    description = models.TextField(blank=True)
    regie = models.ForeignKey(Regie, on_delete=models.PROTECT, related_name="services")
    min_age_months = models.PositiveSmallIntegerField()
    max_age_months = models.PositiveSmallIntegerField()
    position = models.PositiveSmallIntegerField(default=0)
    # The typed rules (enrolment, opening, booking, pricing) as validated from the YAML;
    # the booking and billing engines read them back through the pydantic schema.
    rules = models.JSONField(default=dict)

    objects = ActiveQuerySet.as_manager()

    class Meta:
        verbose_name = _("service")
        ordering = ["position", "label"]

    def __str__(self):
        return self.label


class Establishment(Archivable):
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="establishments")
    code = models.SlugField(max_length=40)
    label = models.CharField(_("libellé"), max_length=200)
    address = models.CharField(_("adresse"), max_length=200, blank=True)
    capacity = models.PositiveIntegerField(_("capacité"))
    unit_capacities = models.JSONField(default=dict)

    objects = ActiveQuerySet.as_manager()

    class Meta:
        verbose_name = _("établissement")
        ordering = ["label"]
        constraints = [
            models.UniqueConstraint(fields=["service", "code"], name="establishment_code_per_service"),
            models.CheckConstraint(condition=models.Q(capacity__gt=0), name="establishment_capacity_positive"),
        ]

    def __str__(self):
        return self.label


class Period(Archivable):
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="periods")
    code = models.SlugField(max_length=40)
    label = models.CharField(_("libellé"), max_length=200)
    kind = models.CharField(max_length=20)
    start = models.DateField(_("début"))
    end = models.DateField(_("fin"))
    enrolment_opens = models.DateTimeField(null=True, blank=True)
    enrolment_closes = models.DateTimeField(null=True, blank=True)
    booking_opens = models.DateTimeField(null=True, blank=True)
    booking_closes = models.DateTimeField(null=True, blank=True)

    objects = ActiveQuerySet.as_manager()

    class Meta:
        verbose_name = _("période")
        ordering = ["start", "code"]
        constraints = [
            models.UniqueConstraint(fields=["service", "code"], name="period_code_per_service"),
            models.CheckConstraint(condition=models.Q(end__gte=models.F("start")), name="period_end_after_start"),
        ]

    def __str__(self):
        return self.label


class Unit(Archivable):
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="units")
    code = models.SlugField(max_length=40)
    label = models.CharField(_("libellé"), max_length=200)
    kind = models.CharField(max_length=20)
    start_time = models.TimeField(null=True, blank=True)
    end_time = models.TimeField(null=True, blank=True)
    step_minutes = models.PositiveSmallIntegerField(default=15)
    weekdays = models.JSONField(default=list, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    objects = ActiveQuerySet.as_manager()

    class Meta:
        verbose_name = _("unité")
        ordering = ["position", "code"]
        constraints = [
            models.UniqueConstraint(fields=["service", "code"], name="unit_code_per_service"),
        ]

    def __str__(self):
        return self.label


class DocumentType(Archivable):
    code = models.SlugField(max_length=40, unique=True)
    label = models.CharField(_("libellé"), max_length=200)
    scope = models.CharField(max_length=10, choices=[("family", _("Famille")), ("child", _("Enfant"))])
    required_for_services = models.JSONField(default=list)
    validity_months = models.PositiveSmallIntegerField(null=True, blank=True)
    accepted_formats = models.JSONField(default=list)
    max_size_mb = models.PositiveSmallIntegerField(default=5)

    objects = ActiveQuerySet.as_manager()

    class Meta:
        verbose_name = _("type de pièce justificative")
        ordering = ["label"]

    def __str__(self):
        return self.label


class AuthorisationType(Archivable):
    code = models.SlugField(max_length=40, unique=True)
    label = models.CharField(_("libellé"), max_length=200)
    description = models.TextField(blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    objects = ActiveQuerySet.as_manager()

    class Meta:
        verbose_name = _("type d'autorisation")
        ordering = ["position", "label"]

    def __str__(self):
        return self.label
