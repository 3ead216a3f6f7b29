"""Reads of the staff side of booking (/gestion/reservations/): the queues, the list of
children expected per establishment, unit and day, and what the simulation needs.

Every page is built from a fixed number of queries, whatever the number of lines: related
rows are joined (``select_related``) or fetched once per page (``Prefetch``), never one
query per line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db.models import Exists, OuterRef, Prefetch, Q, Subquery

from marelle.booking.models import Attendance, Booking, Enrolment
from marelle.catalog.models import Establishment, Service, Unit
from marelle.families.models import Child, ChildContact, Family, Guardian

DECIDABLE_STATES = (Booking.State.REQUESTED, Booking.State.CANCEL_REQUESTED)
# The lines that make a child expected on a day: a place is held (see Booking.SEAT_STATES).
EXPECTED_STATES = (Booking.State.ACCEPTED, Booking.State.REQUESTED, Booking.State.CANCEL_REQUESTED)


def family_reference(family_id: int) -> str:
    """The reference families and staff read (as Family.reference), without loading the family."""
    return f"F{family_id:06d}"


# --- Filters -------------------------------------------------------------------------------


def active_services() -> list[Service]:
    return list(Service.objects.active().order_by("position", "label"))


def active_establishments() -> list[Establishment]:
    """Every open establishment with its service (one query), for the filters."""
    return list(Establishment.objects.active().select_related("service")
                .order_by("service__position", "service__label", "label"))


def units_by_service() -> dict[int, list[Unit]]:
    units: dict[int, list[Unit]] = {}
    for unit in Unit.objects.active().order_by("service_id", "position", "code"):
        units.setdefault(unit.service_id, []).append(unit)
    return units


# --- Queue of booking and cancellation requests ---------------------------------------------


def pending_booking_requests(*, service_code: str = "", establishment_id: int | None = None):
    """The lines staff have to decide: booking requests and cancellation requests.

    A cancellation request is the original booking line in state ``cancel_requested``
    (that is what ``services.booking_decide`` decides); ``cancel_number`` carries the number
    of the réservation in which the family asked to cancel.
    """
    cancel_line = Booking.objects.filter(child_id=OuterRef("child_id"), unit_id=OuterRef("unit_id"),
                                         day=OuterRef("day"), action=Booking.Action.CANCEL,
                                         state=Booking.State.CANCEL_REQUESTED).order_by("-pk")
    lines = (Booking.objects.filter(action=Booking.Action.BOOK, state__in=DECIDABLE_STATES)
             .select_related("child", "unit", "establishment", "enrolment__service", "enrolment__period",
                             "reservation")
             .annotate(cancel_number=Subquery(cancel_line.values("reservation__number")[:1]))
             .order_by("day", "child__last_name", "child__first_name", "child_id", "unit__position", "pk"))
    if service_code:
        lines = lines.filter(enrolment__service__code=service_code)
    if establishment_id:
        lines = lines.filter(establishment_id=establishment_id)
    return lines


def pending_booking_request_count() -> int:
    return Booking.objects.filter(action=Booking.Action.BOOK, state__in=DECIDABLE_STATES).count()


@dataclass
class ChildGroup:
    child: Child
    lines: list[Booking] = field(default_factory=list)

    @property
    def family_reference(self) -> str:
        return family_reference(self.child.family_id)


@dataclass
class DayGroup:
    day: date
    children: list[ChildGroup] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(group.lines) for group in self.children)


def group_by_day_and_child(lines) -> list[DayGroup]:
    """Lines already ordered by day then child (as ``pending_booking_requests``), grouped."""
    days: list[DayGroup] = []
    for line in lines:
        if not days or days[-1].day != line.day:
            days.append(DayGroup(line.day))
        children = days[-1].children
        if not children or children[-1].child.pk != line.child_id:
            children.append(ChildGroup(line.child))
        children[-1].lines.append(line)
    return days


# --- Enrolments waiting for staff -------------------------------------------------------------


def _enrolments():
    return (Enrolment.objects.select_related("child", "service", "establishment", "period")
            .order_by("created_at", "pk"))


def pending_enrolments():
    return _enrolments().filter(status=Enrolment.Status.PENDING)


def enrolments_awaiting_adhesion():
    """Live enrolments whose adhesion must be paid before booking opens."""
    return _enrolments().filter(status__in=[Enrolment.Status.PENDING, Enrolment.Status.ACCEPTED],
                                adhesion=Enrolment.Adhesion.AWAITING_PAYMENT)


# --- Children expected per establishment, unit and day -----------------------------------------


@dataclass
class ExpectedChild:
    child: Child
    booking: Booking | None  # None: present without a booking (recorded attendance only)
    attendance: Attendance | None
    phones: list[str]

    @property
    def family_reference(self) -> str:
        return family_reference(self.child.family_id)

    @property
    def booking_label(self) -> str:
        if self.booking is None:
            return "Sans réservation"
        return {Booking.State.ACCEPTED: "Réservé", Booking.State.REQUESTED: "Demande en attente",
                Booking.State.CANCEL_REQUESTED: "Annulation demandée"}[self.booking.state]

    @property
    def flagged(self) -> bool:
        """Not a settled booking: a request or a cancellation request staff have not decided."""
        return self.booking is not None and self.booking.state != Booking.State.ACCEPTED

    @property
    def diet(self) -> str:
        if not self.child.diet:
            return ""
        label = self.child.get_diet_display()
        return f"{label} ({self.child.diet_details})" if self.child.diet_details else str(label)

    @property
    def pai(self) -> bool:
        health = getattr(self.child, "health", None)
        return bool(health and health.pai)

    @property
    def attendance_status(self) -> str:
        return self.attendance.status if self.attendance else ""

    @property
    def attendance_reason(self) -> str:
        return self.attendance.reason if self.attendance else ""


def emergency_phones(child: Child) -> list[str]:
    """Who to call, in order: the guardians (prefetched), then the emergency contacts."""
    phones = []
    for guardian in child.family.guardians.all():
        number = guardian.phone_mobile or guardian.phone_home or guardian.phone_work
        if number:
            phones.append(f"{guardian.first_name} {guardian.last_name} (responsable légal) : {number}")
    for contact in child.emergency_contacts:
        number = " / ".join(p for p in (contact.phone_1, contact.phone_2) if p)
        phones.append(f"{contact.first_name} {contact.last_name} ({contact.relationship}) : {number}")
    return phones


def expected_children(establishment: Establishment, unit: Unit, day: date) -> list[ExpectedChild]:
    """The children expected at ``establishment`` for ``unit`` on ``day`` (accepted bookings,
    requests and cancellation requests, the latter two flagged), plus the children recorded
    present without a booking. Five queries, whatever the number of children."""
    lines = Booking.objects.filter(establishment=establishment, unit=unit, day=day, action=Booking.Action.BOOK,
                                   state__in=EXPECTED_STATES)
    attendances = Attendance.objects.filter(establishment=establishment, unit=unit, day=day)
    children = (Child.objects
                .filter(Q(Exists(lines.filter(child_id=OuterRef("pk"))))
                        | Q(Exists(attendances.filter(child_id=OuterRef("pk")))))
                .select_related("family", "health")
                .prefetch_related(
                    Prefetch("bookings", queryset=lines.select_related("reservation"), to_attr="day_bookings"),
                    Prefetch("attendances", queryset=attendances, to_attr="day_attendances"),
                    Prefetch("family__guardians", queryset=Guardian.objects.order_by("position")),
                    Prefetch("contacts", queryset=ChildContact.objects.filter(is_emergency_contact=True),
                             to_attr="emergency_contacts"))
                .order_by("last_name", "first_name", "pk"))
    rows = []
    for child in children:
        # An attendance recorded at another establishment for the same unit and day is not
        # this list's business: the Exists above already kept only this one's.
        rows.append(ExpectedChild(child=child, booking=child.day_bookings[0] if child.day_bookings else None,
                                  attendance=child.day_attendances[0] if child.day_attendances else None,
                                  phones=emergency_phones(child)))
    return rows


def unbooked_candidates(establishment: Establishment, day: date, *, exclude: set[int]) -> list[Child]:
    """Children enrolled (accepted) at ``establishment`` for a period covering ``day``, who
    are not on the list: the ones staff may record "présent sans réservation" (one query)."""
    enrolments = Enrolment.objects.filter(
        child_id=OuterRef("pk"), establishment=establishment, status=Enrolment.Status.ACCEPTED,
        period__start__lte=day, period__end__gte=day)
    return list(Child.objects.filter(Exists(enrolments)).exclude(pk__in=exclude)
                .exclude(status=Child.Status.ARCHIVED).order_by("last_name", "first_name", "pk"))


# --- Simulation -------------------------------------------------------------------------------


def family_with_enrolments(family_id: int) -> Family:
    """The family, its children and their live enrolments (3 queries). Raises DoesNotExist."""
    enrolments = (Enrolment.objects.filter(status__in=[Enrolment.Status.PENDING, Enrolment.Status.ACCEPTED])
                  .select_related("service", "establishment", "period").order_by("period__start", "pk"))
    children = (Child.objects.exclude(status=Child.Status.ARCHIVED)
                .prefetch_related(Prefetch("enrolments", queryset=enrolments, to_attr="live_enrolments")))
    return (Family.objects.prefetch_related(Prefetch("children", queryset=children),
                                            Prefetch("guardians", queryset=Guardian.objects.order_by("position")))
            .get(pk=family_id))


def enrolment_for_simulation(enrolment_id: int) -> Enrolment:
    return (Enrolment.objects.select_related("child__family", "service", "establishment", "period")
            .get(pk=enrolment_id))
