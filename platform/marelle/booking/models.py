"""Enrolments, numbered réservations and their lines, capacity, attendance."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from marelle.catalog.models import Establishment, Period, Service, Unit
from marelle.families.models import Child


class Enrolment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("En attente de validation")
        ACCEPTED = "accepted", _("Acceptée")
        REFUSED = "refused", _("Refusée")
        CANCELLED = "cancelled", _("Annulée")

    class Adhesion(models.TextChoices):
        NOT_REQUIRED = "not_required", _("Sans adhésion")
        AWAITING_PAYMENT = "awaiting_payment", _("Adhésion à payer")
        PAID = "paid", _("Adhésion payée")

    child = models.ForeignKey(Child, on_delete=models.PROTECT, related_name="enrolments")
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="enrolments")
    establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="enrolments")
    period = models.ForeignKey(Period, on_delete=models.PROTECT, related_name="enrolments")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    # {"lundi": ["repas"], "jeudi": ["repas"]}: the "jours de fréquentation habituels".
    habitual_days = models.JSONField(default=dict, blank=True)
    adhesion = models.CharField(max_length=20, choices=Adhesion.choices, default=Adhesion.NOT_REQUIRED)
    adhesion_amount_cents = models.PositiveIntegerField(default=0)
    adhesion_paid_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("inscription")
        constraints = [
            models.UniqueConstraint(fields=["child", "service", "period"],
                                    condition=Q(status__in=["pending", "accepted"]),
                                    name="one_live_enrolment_per_child_service_period"),
        ]

    def __str__(self):
        return f"{self.child} – {self.service} ({self.period})"

    @property
    def booking_open(self) -> bool:
        return self.status == self.Status.ACCEPTED and self.adhesion != self.Adhesion.AWAITING_PAYMENT


class Reservation(models.Model):
    """One numbered submission of changes to a child's planning (bookings or cancellations)."""

    class State(models.TextChoices):
        ACCEPTED = "accepted", _("Acceptée")
        REQUESTED = "requested", _("En attente de validation")
        PARTIAL = "partial", _("Partiellement acceptée")
        REFUSED = "refused", _("Refusée")

    number = models.CharField(_("numéro"), max_length=20, unique=True)
    child = models.ForeignKey(Child, on_delete=models.PROTECT, related_name="reservations")
    enrolment = models.ForeignKey(Enrolment, on_delete=models.PROTECT, related_name="reservations")
    state = models.CharField(max_length=12, choices=State.choices)
    total_cents = models.IntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # A retried submission with the same key returns the first réservation instead of booking twice.
    idempotency_key = models.CharField(max_length=80, blank=True)

    class Meta:
        verbose_name = _("réservation")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["created_by", "idempotency_key"], condition=~Q(idempotency_key=""),
                                    nulls_distinct=False, name="reservation_idempotency_per_user"),
        ]

    def __str__(self):
        return self.number


class Booking(models.Model):
    """One line of a réservation: a child, a unit, a day, and what became of it."""

    class Action(models.TextChoices):
        BOOK = "book", _("Réservation")
        CANCEL = "cancel", _("Annulation")

    class State(models.TextChoices):
        ACCEPTED = "accepted", _("Réservé")
        REQUESTED = "requested", _("Demandé")
        WAITING = "waiting", _("Liste d'attente")
        REFUSED = "refused", _("Refusé")
        CANCEL_REQUESTED = "cancel_requested", _("Annulation demandée")
        CANCELLED = "cancelled", _("Annulé")

    # States in which the line holds (or claims) the child's place for that day and unit.
    LIVE_STATES = ("accepted", "requested", "waiting", "cancel_requested")
    # States that consume a place in the establishment's capacity.
    SEAT_STATES = ("accepted", "requested", "cancel_requested")

    reservation = models.ForeignKey(Reservation, on_delete=models.PROTECT, related_name="lines")
    enrolment = models.ForeignKey(Enrolment, on_delete=models.PROTECT, related_name="bookings")
    child = models.ForeignKey(Child, on_delete=models.PROTECT, related_name="bookings")
    establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="bookings")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="bookings")
    day = models.DateField(db_index=True)
    start_time = models.TimeField(null=True, blank=True)  # crèche time ranges
    end_time = models.TimeField(null=True, blank=True)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.BOOK)
    state = models.CharField(max_length=20, choices=State.choices)
    unit_price_cents = models.IntegerField(default=0)
    surcharge_cents = models.IntegerField(default=0)
    late = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    waiting_since = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["day", "unit__position"]
        constraints = [
            # A child holds at most one live line per unit and day: a retried or concurrent
            # submission can never book the same day twice.
            models.UniqueConstraint(fields=["child", "unit", "day"],
                                    condition=Q(action="book", state__in=["accepted", "requested", "waiting",
                                                                          "cancel_requested"]),
                                    name="one_live_booking_per_child_unit_day"),
        ]
        indexes = [models.Index(fields=["establishment", "unit", "day", "state"])]


class Occupancy(models.Model):
    """Places taken per establishment, unit and day. Taking a place is one conditional
    UPDATE (taken < capacity) on this row, so two parents racing for the last place can
    never both get it; the CHECK constraint is the last line of defence."""

    establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="+")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    capacity = models.PositiveIntegerField()
    taken = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["establishment", "unit", "day"], name="one_occupancy_row"),
            models.CheckConstraint(condition=Q(taken__lte=models.F("capacity")), name="never_over_capacity"),
        ]


class Attendance(models.Model):
    class Status(models.TextChoices):
        PRESENT = "present", _("Présent")
        ABSENT = "absent", _("Absent")
        EXCUSED = "excused", _("Absent excusé")
        UNBOOKED = "unbooked", _("Présent sans réservation")

    child = models.ForeignKey(Child, on_delete=models.PROTECT, related_name="attendances")
    establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="+")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    status = models.CharField(max_length=10, choices=Status.choices)
    reason = models.CharField(max_length=200, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["child", "unit", "day"], name="one_attendance_per_child_unit_day")]


class ReservationCounter(models.Model):
    """Gapless per-year numbering of réservations (R2026-000001), taken under a row lock."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)
