"""Attendance taking (pointage): who came, who did not, who came without a booking.

Billing reads ``Attendance`` (one row per child, unit and day): present, absent, absent
excusé (with its reason), présent sans réservation. Staff record it from the list of
children expected (``/gestion/reservations/presences/``) through :func:`attendance_record`,
which validates every entry first and writes all or nothing, one ``update_or_create`` per
child on (child, unit, day): submitting the same sheet twice changes nothing and records
nothing twice. Every change is in the audit journal (who, when, before → after).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from django.db import transaction

from marelle.audit.services import audit_record
from marelle.booking.models import Attendance, Booking, Enrolment
from marelle.booking.services import commune_tz
from marelle.catalog.models import Establishment, Unit
from marelle.core import clock
from marelle.families.models import Child

#: Statuses of a child with a booking that day, and of a child without one.
BOOKED_STATUSES = (Attendance.Status.PRESENT, Attendance.Status.ABSENT, Attendance.Status.EXCUSED)
UNBOOKED_STATUSES = (Attendance.Status.UNBOOKED,)
CLEAR = ""  # no status: nothing recorded for the child (an existing row is removed)
REASON_MAX = Attendance._meta.get_field("reason").max_length
# Lines that make a child expected that day (a place is held).
EXPECTED_STATES = (Booking.State.ACCEPTED, Booking.State.REQUESTED, Booking.State.CANCEL_REQUESTED)


@dataclass(frozen=True)
class AttendanceEntry:
    child_id: int
    status: str  # an Attendance.Status value, or "" to clear
    reason: str = ""


@dataclass
class AttendanceRejected(Exception):
    """Nothing was saved. ``errors``: child id -> French message (0: the sheet as a whole)."""

    errors: dict[int, str] = field(default_factory=dict)

    def __str__(self):
        return " ; ".join(self.errors.values())


@dataclass
class AttendanceResult:
    created: int = 0
    updated: int = 0
    cleared: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.cleared


def _entry(raw) -> AttendanceEntry:
    if isinstance(raw, AttendanceEntry):
        return raw
    if isinstance(raw, Mapping):
        child = raw.get("child_id", raw.get("child"))
        child_id = child.pk if isinstance(child, Child) else int(child)
        return AttendanceEntry(child_id, raw.get("status") or CLEAR, raw.get("reason") or "")
    raise TypeError(f"entrée de pointage illisible : {raw!r}")


def _name(child: Child | None, child_id: int) -> str:
    return f"{child.first_name} {child.last_name}" if child else f"L'enfant n°{child_id}"


def attendance_record(*, staff, establishment: Establishment, unit: Unit, day: date,
                      entries: Iterable[AttendanceEntry | Mapping]) -> AttendanceResult:
    """Record the attendance of ``entries`` at ``establishment`` for ``unit`` on ``day``.

    A child with a booking that day (accepted, requested or cancellation requested) is
    ``present``, ``absent`` or ``excused`` (a reason is required); a child without one, but
    enrolled at the establishment for a period covering the day, is ``unbooked`` (présent
    sans réservation). ``""`` removes what was recorded. Raises :class:`AttendanceRejected`
    (nothing saved) naming each child whose entry is wrong.
    """
    entries = [_entry(e) for e in entries]
    errors: dict[int, str] = {}
    if unit.service_id != establishment.service_id:
        raise AttendanceRejected({0: f"L'unité « {unit.label} » n'est pas une unité de « {establishment.label} »."})
    if day > clock.today(commune_tz()):
        raise AttendanceRejected({0: "Les présences d'un jour à venir ne peuvent pas encore être saisies."})
    seen: set[int] = set()
    for entry in entries:
        if entry.child_id in seen:
            errors[entry.child_id] = "Enfant saisi deux fois."
        seen.add(entry.child_id)
    ids = [e.child_id for e in entries]
    children = {c.pk: c for c in Child.objects.filter(pk__in=ids)}
    booked = set(Booking.objects.filter(child_id__in=ids, establishment=establishment, unit=unit, day=day,
                                        action=Booking.Action.BOOK, state__in=EXPECTED_STATES)
                 .values_list("child_id", flat=True))
    enrolled = set(Enrolment.objects.filter(child_id__in=ids, establishment=establishment,
                                            status=Enrolment.Status.ACCEPTED, period__start__lte=day,
                                            period__end__gte=day).values_list("child_id", flat=True))
    for entry in entries:
        if entry.child_id in errors:
            continue
        child = children.get(entry.child_id)
        name = _name(child, entry.child_id)
        reason = entry.reason.strip()
        if child is None:
            errors[entry.child_id] = f"{name} est introuvable."
        elif entry.status not in (*BOOKED_STATUSES, *UNBOOKED_STATUSES, CLEAR):
            errors[entry.child_id] = f"{name} : statut de présence inconnu."
        elif entry.status == Attendance.Status.EXCUSED and not reason:
            errors[entry.child_id] = f"{name} : indiquez le motif de l'absence excusée."
        elif len(reason) > REASON_MAX:
            errors[entry.child_id] = f"{name} : le motif ne doit pas dépasser {REASON_MAX} caractères."
        elif entry.status in BOOKED_STATUSES and entry.child_id not in booked:
            errors[entry.child_id] = (f"{name} n'a pas de réservation ce jour-là : choisissez "
                                      "« présent sans réservation ».")
        elif entry.status in UNBOOKED_STATUSES and entry.child_id in booked:
            errors[entry.child_id] = f"{name} a une réservation ce jour-là : choisissez « présent »."
        elif entry.status in UNBOOKED_STATUSES and entry.child_id not in enrolled:
            errors[entry.child_id] = (f"{name} n'est pas inscrit·e à « {establishment.label} » pour une période "
                                      f"comprenant le {day:%d/%m/%Y}.")
    if errors:
        raise AttendanceRejected(errors)
    with transaction.atomic():
        return _write(staff, establishment, unit, day, entries, children)


def _write(staff, establishment, unit, day, entries, children) -> AttendanceResult:
    result = AttendanceResult()
    existing = {a.child_id: a for a in Attendance.objects.select_for_update()
                .filter(unit=unit, day=day, child_id__in=[e.child_id for e in entries])}
    for entry in entries:
        child = children[entry.child_id]
        before = existing.get(entry.child_id)
        # A reason belongs to an absence; a presence keeps none.
        reason = entry.reason.strip() if entry.status in (Attendance.Status.ABSENT, Attendance.Status.EXCUSED) else ""
        details = {"day": day.isoformat(), "unit": unit.code, "establishment": establishment.code,
                   "previous": before.status if before else None,
                   "previous_reason": before.reason if before else None}
        if entry.status == CLEAR:
            if before is None:
                result.unchanged += 1
                continue
            before.delete()
            result.cleared += 1
            audit_record(actor=staff, action="attendance.cleared", target=f"child:{child.pk}",
                         family_id=child.family_id, **details)
            continue
        if before is not None and (before.status, before.reason, before.establishment_id) == \
                (entry.status, reason, establishment.pk):
            result.unchanged += 1
            continue
        attendance, created = Attendance.objects.update_or_create(
            child=child, unit=unit, day=day,
            defaults={"establishment": establishment, "status": entry.status, "reason": reason,
                      "recorded_by": staff if getattr(staff, "is_authenticated", False) else None})
        if created:
            result.created += 1
        else:
            result.updated += 1
        audit_record(actor=staff, action="attendance.recorded", target=f"attendance:{attendance.pk}",
                     family_id=child.family_id, status=entry.status, reason=reason, **details)
    return result
