"""Enrolment and booking: every write goes through here (web, API, back-office, tasks).

Capacity is taken with one conditional UPDATE per (establishment, unit, day) row of
``Occupancy`` — never read-then-write in Python — and a réservation is all-or-nothing:
if any line is refused, nothing of it is saved and the family is told which lines failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from marelle.audit.models import AuditEvent
from marelle.audit.services import audit_record
from marelle.billing.pricing import bracket_code, unit_price_cents
from marelle.booking import statements
from marelle.booking.models import Booking, Enrolment, Occupancy, Reservation
from marelle.catalog.models import Establishment, Period, Service, Unit
from marelle.core import clock
from marelle.core.commune import current_config
from marelle.families.models import Child, Family
from marelle.ops.metrics import count_booking_rejection, count_booking_write_retry

# --- Configuration lookups ---------------------------------------------------------------


def service_config(service: Service):
    """The typed YAML of a service (rules, units, periods, pricing)."""
    config = current_config()
    return next(s for s in config.services if s.code == service.code)


def commune_tz() -> ZoneInfo:
    return ZoneInfo(current_config().identity.timezone)


def family_bracket(family: Family) -> str | None:
    config = current_config()
    verified = bool(family.quotient_verified_until and family.quotient_verified_until >= clock.today())
    return bracket_code(quotient=family.quotient, verified=verified, brackets=config.quotient_brackets)


# --- Enrolment ----------------------------------------------------------------------------


def age_in_months(birth: date, on: date) -> int:
    months = (on.year - birth.year) * 12 + on.month - birth.month
    return months - (1 if on.day < birth.day else 0)


def enrolment_obstacles(child: Child, service: Service, period: Period) -> list[str]:
    """Why ``child`` cannot be enrolled (empty list: it can), in French."""
    reasons = []
    age = age_in_months(child.birth_date, period.start)
    if not service.min_age_months <= age <= service.max_age_months:
        from marelle.portal.selectors import age_range_label

        reasons.append(f"Âge hors de la tranche du service ({age_range_label(service.min_age_months, service.max_age_months)}"
                       f" au {period.start:%d/%m/%Y})")
    if child.status != Child.Status.ACTIVE:
        reasons.append("Fiche enfant en attente de validation")
    elif child.consent_at is None:
        reasons.append("Fiche enfant incomplète (à valider avec « J'accepte »)")
    reasons.extend(_missing_documents(child, service))
    return reasons


def _missing_documents(child: Child, service: Service) -> list[str]:
    try:
        from marelle.documents.selectors import missing_documents_for_service
    except ImportError:
        return []
    return [f"Pièce manquante ou expirée : {label}" for label in missing_documents_for_service(child, service)]


class EnrolmentRefused(Exception):
    pass


@transaction.atomic
def enrolment_create(*, actor, child: Child, service: Service, establishment: Establishment, period: Period,
                     habitual_days: dict | None = None) -> Enrolment:
    if establishment.service_id != service.pk or period.service_id != service.pk:
        raise EnrolmentRefused("Établissement ou période d'un autre service.")
    obstacles = enrolment_obstacles(child, service, period)
    if obstacles:
        raise EnrolmentRefused(" ; ".join(obstacles))
    now = timezone.now()
    if period.enrolment_opens and now < period.enrolment_opens:
        raise EnrolmentRefused(f"Les inscriptions ouvrent le {timezone.localtime(period.enrolment_opens):%d/%m/%Y à %H:%M}.")
    if period.enrolment_closes and now >= period.enrolment_closes:
        raise EnrolmentRefused("Les inscriptions à cette période sont closes.")
    rules = service_config(service)
    adhesion = rules.enrolment.adhesion
    status = Enrolment.Status.ACCEPTED if rules.enrolment.mode == "automatic" else Enrolment.Status.PENDING
    try:
        with transaction.atomic():
            enrolment = Enrolment.objects.create(
                child=child, service=service, establishment=establishment, period=period, status=status,
                habitual_days=habitual_days or {}, created_by=actor,
                adhesion=(Enrolment.Adhesion.AWAITING_PAYMENT if adhesion and adhesion.payment == "immediate"
                          else Enrolment.Adhesion.NOT_REQUIRED),
                adhesion_amount_cents=adhesion.amount_cents if adhesion else 0)
    except IntegrityError:
        raise EnrolmentRefused(f"{child.first_name} est déjà inscrit·e à ce service pour cette période.") from None
    audit_record(actor=actor, action="enrolment.created", target=f"enrolment:{enrolment.pk}",
                 family_id=child.family_id, status=status)
    return enrolment


@transaction.atomic
def enrolment_decide(*, staff, enrolment_id: int, accept: bool, reason: str = "") -> Enrolment:
    enrolment = Enrolment.objects.select_for_update().get(pk=enrolment_id)
    if enrolment.status != Enrolment.Status.PENDING:
        raise EnrolmentRefused("Inscription déjà traitée.")
    if not accept and not reason.strip():
        raise EnrolmentRefused("Le motif du refus est obligatoire.")
    enrolment.status = Enrolment.Status.ACCEPTED if accept else Enrolment.Status.REFUSED
    enrolment.reason, enrolment.decided_by, enrolment.decided_at = reason.strip(), staff, timezone.now()
    enrolment.save(update_fields=["status", "reason", "decided_by", "decided_at"])
    audit_record(actor=staff, action="enrolment.accepted" if accept else "enrolment.refused",
                 target=f"enrolment:{enrolment.pk}", family_id=enrolment.child.family_id)
    _notify_family(enrolment.child, "enrolment_decided", {"enrolment": enrolment, "accepted": accept})
    return enrolment


@transaction.atomic
def enrolment_adhesion_paid(*, actor, enrolment_id: int, source: str = "guichet") -> Enrolment:
    """The "payment required" step's exit: called by the settlement core when the adhesion's
    payment is confirmed, or by staff at the desk until then. Idempotent."""
    enrolment = Enrolment.objects.select_for_update().get(pk=enrolment_id)
    if enrolment.adhesion == Enrolment.Adhesion.AWAITING_PAYMENT:
        enrolment.adhesion, enrolment.adhesion_paid_at = Enrolment.Adhesion.PAID, timezone.now()
        enrolment.save(update_fields=["adhesion", "adhesion_paid_at"])
        audit_record(actor=actor, action="enrolment.adhesion_paid", target=f"enrolment:{enrolment.pk}",
                     family_id=enrolment.child.family_id, source=source)
    return enrolment


# --- Réservations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    day: date
    unit: str  # unit code
    action: str = "book"  # "book" | "cancel"
    start: time | None = None
    end: time | None = None


@dataclass
class LineProblem:
    change: Change
    reason: str
    rule: str = "other"  # for the metrics: deadline, closed, full, week_limit…


@dataclass
class ReservationRejected(Exception):
    problems: list[LineProblem] = field(default_factory=list)

    def __str__(self):
        return "; ".join(p.reason for p in self.problems)


@dataclass
class PlannedLine:
    change: Change
    unit: Unit
    decision: object  # rules.Decision
    price_cents: int


def _calendar_for(service_conf):
    from marelle.booking.calendar import ServiceCalendar

    return ServiceCalendar(service_conf, current_config())


def active_units(service: Service) -> list[Unit]:
    """The service's bookable units, in display order: those loaded with it
    (``service.active_units``, as statements.enrolment_of_family and the enrolments API
    load them), or read now."""
    units = getattr(service, "active_units", None)
    if units is None:
        units = list(Unit.objects.filter(service=service, archived_at__isnull=True).order_by("position", "code"))
    return units


def plan_changes(*, enrolment: Enrolment, changes: list[Change], now: datetime | None = None) -> tuple[list[PlannedLine], list[LineProblem]]:
    """Evaluate every change against the rules, without writing anything (the recap)."""
    from marelle.booking.rules import evaluate

    now = now or timezone.now()
    service_conf = service_config(enrolment.service)
    period_conf = next(p for p in service_conf.periods if p.code == enrolment.period.code)
    units = {u.code: u for u in active_units(enrolment.service)}
    unit_confs = {u.code: u for u in service_conf.units}
    calendar = _calendar_for(service_conf)
    tz = commune_tz()
    bracket = family_bracket(enrolment.child.family)
    planned, problems = [], []
    seen = set()
    if not enrolment.booking_open:
        reason = ("Réservations fermées : l'adhésion doit d'abord être payée." if
                  enrolment.adhesion == Enrolment.Adhesion.AWAITING_PAYMENT else
                  "Réservations fermées : l'inscription n'est pas encore acceptée.")
        return [], [LineProblem(c, reason) for c in changes]
    for change in changes:
        key = (change.day, change.unit)
        if key in seen:
            problems.append(LineProblem(change, f"{change.unit} le {change.day:%d/%m/%Y} demandé deux fois."))
            continue
        seen.add(key)
        unit_conf = unit_confs.get(change.unit)
        if unit_conf is None or change.unit not in units:
            problems.append(LineProblem(change, f"Unité « {change.unit} » inconnue pour ce service."))
            continue
        if unit_conf.kind == "time_range" and change.action == "book":
            problem = _check_time_range(change, unit_conf)
            if problem:
                problems.append(LineProblem(change, problem))
                continue
        decision = evaluate(change.action, now=now, day=change.day, unit=unit_conf, service=service_conf,
                            period=period_conf, calendar=calendar, tz=tz)
        if not decision.allowed:
            problems.append(LineProblem(change, decision.reason, decision.refusal or "other"))
            continue
        price = unit_price_cents(service_conf, change.unit, bracket=bracket, start=change.start, end=change.end)
        planned.append(PlannedLine(change, units[change.unit], decision, price))
    problems.extend(_limit_problems(enrolment, service_conf, calendar, planned))
    return planned, problems


def _limit_problems(enrolment: Enrolment, service_conf, calendar, planned: list[PlannedLine]) -> list[LineProblem]:
    """min/max days per week and max per period, on the planning as it would be afterwards.

    A week's problem is attached to the first change of that week, a period's to the first
    change of the réservation."""
    from marelle.booking.rules import check_week_limits, group_by_week, week_start

    rules = service_conf.booking
    if not planned or not _has_limits(service_conf):
        return []
    period = enrolment.period
    days = set(Booking.objects.filter(child=enrolment.child, enrolment=enrolment, action="book",
                                      state__in=Booking.LIVE_STATES, day__range=(period.start, period.end))
               .values_list("day", flat=True))
    first_change_of_week: dict = {}
    for line in planned:
        (days.add if line.change.action == "book" else days.discard)(line.change.day)
        first_change_of_week.setdefault(week_start(line.change.day), line.change)
    weeks = group_by_week(days)
    problems = []
    for monday, change in first_change_of_week.items():
        problems += [LineProblem(change, text, "week_limit")
                     for text in check_week_limits({monday: weeks.get(monday, set())}, rules, calendar=calendar)
                     if text.startswith("Semaine")]
    if rules.max_days_per_period and len(days) > rules.max_days_per_period:
        problems += [LineProblem(planned[0].change, text, "period_limit")
                     for text in check_week_limits(weeks, rules) if "sur la période" in text]
    return problems


def _check_time_range(change: Change, unit_conf) -> str | None:
    if not change.start or not change.end:
        return f"Indiquez l'heure d'arrivée et de départ pour le {change.day:%d/%m/%Y}."
    if change.end <= change.start:
        return f"Le {change.day:%d/%m/%Y} : l'heure de départ doit suivre l'heure d'arrivée."
    if change.start < unit_conf.start or change.end > unit_conf.end:
        return (f"Le {change.day:%d/%m/%Y} : horaires en dehors de l'ouverture "
                f"({unit_conf.start:%H:%M}–{unit_conf.end:%H:%M}).")
    step = unit_conf.step_minutes
    if (change.start.hour * 60 + change.start.minute) % step or (change.end.hour * 60 + change.end.minute) % step:
        return f"Le {change.day:%d/%m/%Y} : horaires par pas de {step} minutes."
    return None


# --- Lock order ------------------------------------------------------------------------------
#
# Whatever changes a child's bookings takes, in this order: the child's row (FOR NO KEY
# UPDATE: the foreign-key checks of the lines being written for that child still pass),
# the places concerned in (day, unit) order, then the booking rows. Two changes for one
# child then queue instead of deadlocking (a cancellation holding the booking row while
# waiting for the place, a new booking of the same day holding the place while waiting on
# the booking row's unique index), and places are always taken in the same order.


def _lock_children(child_ids) -> None:
    list(Child.objects.select_for_update(no_key=True).filter(pk__in=sorted(set(child_ids))).order_by("pk")
         .values_list("pk", flat=True))


def _lock_places(establishment_id: int, keys) -> None:
    """The existing Occupancy rows of these (unit id, day), locked in (day, unit) order."""
    keys = set(keys)
    if len(keys) < 2:
        return  # one row: its own UPDATE or upsert locks it, nothing to order
    list(Occupancy.objects.select_for_update(no_key=True)
         .filter(establishment_id=establishment_id, unit_id__in={u for u, _ in keys}, day__in={d for _, d in keys})
         .order_by("day", "unit_id").values_list("pk", flat=True))


def _release_seats(establishment_id: int, freed: list[Booking], *, changed: list[Booking] = ()) -> None:
    """Give back the places of ``freed`` (and write the new state of ``changed``: one
    statement), then offer each place someone waits for to the first family in line, in
    the lock order (day, unit)."""
    waited_for = statements.give_back_places(establishment_id, freed, changed=changed, now=timezone.now())
    for unit_id, day in sorted(waited_for, key=lambda key: (key[1], key[0])):
        _promote_waiting(establishment_id, unit_id, day)


def _promote_waiting(establishment_id: int, unit_id: int, day: date) -> None:
    """Offer a freed place to the first family on the waiting list, in order."""
    waiting = (Booking.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
               .filter(establishment_id=establishment_id, unit_id=unit_id, day=day, state=Booking.State.WAITING)
               .order_by("waiting_since", "pk").select_related("establishment", "unit", "reservation").first())
    if waiting is None or not statements.take_seats(waiting.establishment_id, [(waiting.unit, day)]):
        return
    rules = service_config(waiting.unit.service)
    waiting.state = Booking.State.ACCEPTED if rules.booking.mode == "immediate" else Booking.State.REQUESTED
    waiting.save(update_fields=["state", "updated_at"])
    _refresh_reservation_state(waiting.reservation)
    audit_record(actor=None, action="booking.promoted_from_waiting_list", target=f"booking:{waiting.pk}",
                 family_id=waiting.child.family_id)
    _notify_promotion(waiting)


def _notify_promotion(booking: Booking) -> None:
    _notify_family(booking.child, "booking_promoted", {"booking": booking})


def _notify_family(child: Child, template: str, context: dict) -> None:
    from marelle.core.emails import send_templated_email

    guardian = child.family.primary_guardian
    if guardian and guardian.user and guardian.user.email:
        send_templated_email(to=guardian.user.email, template=template,
                             context={**context, "guardian": guardian, "child": child})


def _reservation_state(states) -> str:
    states = set(states)
    if states <= {"refused"}:
        return Reservation.State.REFUSED
    if states & {"requested", "cancel_requested", "waiting"}:
        return Reservation.State.REQUESTED if not states & {"refused"} else Reservation.State.PARTIAL
    if "refused" in states:
        return Reservation.State.PARTIAL
    return Reservation.State.ACCEPTED


def _refresh_reservation_state(reservation: Reservation) -> None:
    state = _reservation_state(reservation.lines.values_list("state", flat=True))
    if state != reservation.state:
        reservation.state = state
        reservation.save(update_fields=["state"])


def reservation_submit(*, actor, enrolment: Enrolment, changes: list[Change], idempotency_key: str = "",
                       now: datetime | None = None) -> Reservation:
    """Book and/or cancel days for one child in one numbered réservation, all or nothing.

    ``enrolment`` comes with its child (and the child's family), service, period and
    establishment, as :func:`marelle.booking.statements.enrolment_of_family` loads them.

    The rules are evaluated first (pure, marelle.booking.rules); then the réservation is
    written without looking first, and the database refuses what cannot be: a full day,
    a day the child already holds, an Idempotency-Key already used. Only then does one
    read tell which (statements.obstacles). A submission that cannot be made because it
    was made already (a retry, even one racing its first attempt) returns the first
    réservation, with ``replayed`` set to True.
    """
    if not changes:
        raise ReservationRejected([])
    # A stable order for the row locks taken below: no deadlock between two submissions.
    changes = sorted(changes, key=lambda c: (c.day, c.unit, c.action))
    planned, problems = plan_changes(enrolment=enrolment, changes=changes, now=now)
    waiting_list = service_config(enrolment.service).booking.when_full == "waiting_list"
    wanted = [(line.unit, line.change.day) for line in planned if line.change.action == "book"]
    if problems:
        # Refused by the rules. The answer names every line that fails, so among the
        # others too the days already held or full, and the cancellations of nothing (one
        # read), unless this is a retry of a réservation made before (after, say, the
        # deadline passed).
        cancels = [(line.unit, line.change.day) for line in planned if line.change.action == "cancel"]
        if planned:
            found = statements.obstacles(enrolment, wanted, actor_id=getattr(actor, "pk", None),
                                         idempotency_key=idempotency_key, cancels=cancels)
            first = _replayed(found.first_id)
            problems += _obstacle_problems(planned, found, waiting_list)
        else:
            first = _first_attempt(actor, idempotency_key)
        if first is not None:
            return first
        problems.sort(key=lambda p: (p.change.day, p.change.unit))
        _count_rejections(problems)
        raise ReservationRejected(problems)
    full: set = set()
    for _attempt in range(WRITE_ATTEMPTS):
        try:
            reservation = _write_reservation(actor, enrolment, planned, idempotency_key, full=full)
        except IntegrityError as error:
            if _violated(error) not in (CAPACITY_CONSTRAINT, LIVE_BOOKING_CONSTRAINT, IDEMPOTENCY_CONSTRAINT):
                raise
            problems = []
        except ReservationRejected as rejected:  # cancellations and limits, decided under locks
            problems = rejected.problems
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != DEADLOCK:
                raise
            count_booking_write_retry("deadlock")  # PostgreSQL broke a lock cycle with this one
            continue
        else:
            reservation.replayed = False
            return reservation
        found = statements.obstacles(enrolment, wanted, actor_id=getattr(actor, "pk", None),
                                     idempotency_key=idempotency_key)
        first = _replayed(found.first_id)
        if first is not None:
            return first
        full = found.full
        problems += _obstacle_problems(planned, found, waiting_list)
        if problems:
            problems.sort(key=lambda p: (p.change.day, p.change.unit))
            _count_rejections(problems)
            raise ReservationRejected(problems)
        # Nothing stands in the way any more (a place was freed meanwhile), or, with a
        # waiting list, these days are full now: write again, those on the waiting list.
        count_booking_write_retry("days_changed")
    raise ReservationRejected([LineProblem(planned[0].change, "Trop de demandes au même moment pour ces jours : "
                                                             "envoyez de nouveau la réservation.", "busy")])


#: Writes tried before giving up when other families keep filling the same days meanwhile.
WRITE_ATTEMPTS = 4
DEADLOCK = "40P01"
CAPACITY_CONSTRAINT = statements.CAPACITY_CONSTRAINT
LIVE_BOOKING_CONSTRAINT = "one_live_booking_per_child_unit_day"
IDEMPOTENCY_CONSTRAINT = "reservation_idempotency_per_user"


def _violated(error: IntegrityError) -> str:
    """The name of the constraint an IntegrityError reports ("" when unknown)."""
    diag = getattr(error.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) or ""


_NOTHING_TO_CANCEL = "{line.unit.label} le {line.change.day:%d/%m/%Y} : aucune réservation à annuler."


def _obstacle_problems(planned: list[PlannedLine], found: statements.Obstacles,
                       waiting_list: bool) -> list[LineProblem]:
    """The lines the database refuses (statements.obstacles): a day the child holds already,
    a full day when the service keeps no waiting list, and, when the read was asked about
    them, cancellations of a day with nothing to cancel."""
    by_key = {(line.unit.pk, line.change.day): line for line in planned if line.change.action == "book"}
    problems = [LineProblem(line.change, f"{line.unit.label} le {line.change.day:%d/%m/%Y} : déjà réservé ou "
                                         f"demandé.") for key, line in by_key.items() if key in found.held]
    if not waiting_list:
        problems += [LineProblem(line.change, f"{line.unit.label} le {line.change.day:%d/%m/%Y} : complet, plus "
                                              f"de place.", "full") for key, line in by_key.items()
                     if key in found.full and key not in found.held]
    if found.cancellable is not None:
        problems += [LineProblem(line.change, _NOTHING_TO_CANCEL.format(line=line)) for line in planned
                     if line.change.action == "cancel" and (line.unit.pk, line.change.day) not in found.cancellable]
    return problems


def _replayed(reservation_id: int | None) -> Reservation | None:
    if reservation_id is None:
        return None
    first = Reservation.objects.get(pk=reservation_id)
    first.replayed = True
    return first


def _first_attempt(actor, idempotency_key: str) -> Reservation | None:
    """The réservation this account already made with this key, if any."""
    if not idempotency_key:
        return None
    first = Reservation.objects.filter(created_by=actor if getattr(actor, "is_authenticated", False) else None,
                                       idempotency_key=idempotency_key).first()
    if first is not None:
        first.replayed = True
    return first


def _count_rejections(problems: list[LineProblem]) -> None:
    for problem in problems:
        count_booking_rejection(problem.rule)


def _write_reservation(actor, enrolment: Enrolment, planned: list[PlannedLine], idempotency_key: str, *,
                       full: set) -> Reservation:
    """Write the réservation: its lines decided (on the waiting list for the ``full``
    (unit id, day), cancellations applied), its total and state, its audit event.

    A réservation of bookings only is one statement, on its own outside a transaction
    (statements.insert_reservation). Cancellations, min/max days per week or period and
    prepaid services need reads and writes under locks first: those run in a transaction.
    So does every write made inside a caller's transaction, in a savepoint of its own (a
    refused statement would otherwise abort the caller's transaction)."""
    rules = service_config(enrolment.service)
    locked_work = (_has_limits(rules) or rules.booking.prepayment is not None
                   or any(line.change.action == "cancel" for line in planned))
    if locked_work or connection.in_atomic_block:
        with transaction.atomic():
            return _write_lines(actor, enrolment, planned, idempotency_key, full=full, rules=rules,
                                locked_work=locked_work)
    return _write_lines(actor, enrolment, planned, idempotency_key, full=full, rules=rules, locked_work=False)


def _write_lines(actor, enrolment: Enrolment, planned: list[PlannedLine], idempotency_key: str, *, full: set,
                 rules, locked_work: bool) -> Reservation:
    child = enrolment.child
    if locked_work:  # in the lock order (insert_reservation's statement keeps it too)
        _lock_children([child.pk])
        _lock_places(enrolment.establishment_id, [(line.unit.pk, line.change.day) for line in planned])
    if _has_limits(rules):
        # Min/max days: checked again under the child's lock, on the planning as it is now.
        problems = _limit_problems(enrolment, rules, _calendar_for(rules), planned)
        if problems:
            raise ReservationRejected(problems)
    cancels = [line for line in planned if line.change.action == "cancel"]
    live = {}
    if cancels:
        live = {(b.unit_id, b.day): b for b in Booking.objects.select_for_update(no_key=True).filter(
            child_id=child.pk, action=Booking.Action.BOOK, day__in=[line.change.day for line in cancels],
            state__in=Booking.LIVE_STATES)}
    problems, lines, seated, total, cancelled, changed, freed = [], [], [], 0, [], [], []
    now = timezone.now()
    common = {"enrolment": enrolment, "child": child, "establishment_id": enrolment.establishment_id}
    for line in planned:
        change, unit, decision = line.change, line.unit, line.decision
        if change.action == "book":
            if (unit.pk, change.day) in full:  # and the service keeps a waiting list
                state = Booking.State.WAITING
            else:
                state = Booking.State.ACCEPTED if decision.outcome == "accepted" else Booking.State.REQUESTED
            booking = Booking(
                **common, unit=unit, day=change.day, start_time=change.start, end_time=change.end, action="book",
                state=state, unit_price_cents=line.price_cents, surcharge_cents=decision.surcharge_cents,
                late=decision.late, waiting_since=now if state == Booking.State.WAITING else None)
            lines.append(booking)
            if state != Booking.State.WAITING:
                seated.append(booking)
            total += line.price_cents + decision.surcharge_cents
            continue
        current = live.get((unit.pk, change.day))
        if current is None or current.state == Booking.State.CANCEL_REQUESTED:
            problems.append(LineProblem(change, _NOTHING_TO_CANCEL.format(line=line)))
            continue
        if current.state in (Booking.State.WAITING, Booking.State.REQUESTED) or decision.outcome == "accepted":
            # Leaving a waiting list or withdrawing a pending request needs nobody's approval.
            if current.state != Booking.State.WAITING:
                freed.append(current)
            current.state = Booking.State.CANCELLED
        else:
            current.state = Booking.State.CANCEL_REQUESTED
        state = current.state
        changed.append(current)
        lines.append(Booking(
            **common, unit=unit, day=change.day, action="cancel", state=_cancel_line_state(state),
            unit_price_cents=-current.unit_price_cents if state == Booking.State.CANCELLED else 0))
        if state == Booking.State.CANCELLED:
            total -= current.unit_price_cents + current.surcharge_cents
            cancelled.append(current)
    if problems:
        raise ReservationRejected(problems)  # rolls the whole transaction back
    if changed:
        _release_seats(enrolment.establishment_id, freed, changed=changed)
    reservation = Reservation(child=child, enrolment=enrolment, state=_reservation_state(b.state for b in lines),
                              total_cents=total, created_by=actor, idempotency_key=idempotency_key)
    audit = AuditEvent(actor=actor if getattr(actor, "is_authenticated", False) else None,
                       action="reservation.submitted", target="reservation:", family_id=child.family_id,
                       details={"lines": len(planned)})
    statements.insert_reservation(reservation, lines, seated=seated, year=clock.today().year, audit=audit)
    # The lines as the API and pages show them (day, then the unit's order), without reading them back.
    reservation.written_lines = sorted(lines, key=lambda b: (b.day, b.unit.position, b.pk))
    if rules.booking.prepayment is not None:
        from marelle.billing.baskets import basket_for_reservation

        # Kept on the réservation for the page or API answer that follows (no second look-up).
        reservation.basket = basket_for_reservation(actor=actor, reservation=reservation)
    if cancelled:
        from marelle.billing.baskets import credit_cancelled_prepaid_days

        credit_cancelled_prepaid_days(actor=actor, bookings=cancelled, reservation=reservation)
    return reservation


def _has_limits(service_conf) -> bool:
    rules = service_conf.booking
    return bool(rules.min_days_per_week or rules.max_days_per_week or rules.max_days_per_period)


def release_unpaid_bookings(*, booking_ids: list[int]) -> int:
    """Cancel prepaid bookings whose basket expired unpaid and give their places back (the
    first family on the waiting list gets one). Runs inside the basket's transaction."""
    _lock_children(Booking.objects.filter(pk__in=booking_ids).values_list("child_id", flat=True))
    bookings = list(Booking.objects.select_for_update(of=("self",), no_key=True)
                    .select_related("reservation", "child__family")
                    .filter(pk__in=booking_ids, state=Booking.State.ACCEPTED).order_by("day", "unit_id", "pk"))
    for booking in bookings:
        booking.state, booking.reason = Booking.State.CANCELLED, "Non payée dans le délai : place libérée."
        booking.save(update_fields=["state", "reason", "updated_at"])
        _release_seats(booking.establishment_id, [booking])
    for reservation in {b.reservation_id: b.reservation for b in bookings}.values():
        _refresh_reservation_state(reservation)
    if bookings:
        child = bookings[0].child
        audit_record(actor=None, action="booking.released_unpaid", target=f"reservation:{bookings[0].reservation.number}",
                     family_id=child.family_id, bookings=[b.pk for b in bookings])
        _notify_family(child, "bookings_released_unpaid", {"bookings": bookings})
    return len(bookings)


def _cancel_line_state(state: str) -> str:
    # A cancellation line records the request itself: done, or waiting for staff.
    return Booking.State.CANCELLED if state == Booking.State.CANCELLED else Booking.State.CANCEL_REQUESTED


# --- Staff decisions ------------------------------------------------------------------------


class DecisionRefused(Exception):
    pass


@transaction.atomic
def booking_decide(*, staff, booking_ids: list[int], accept: bool, reason: str = "") -> list[Booking]:
    """Accept or refuse booking requests and cancellation requests, in bulk."""
    if not accept and not reason.strip():
        raise DecisionRefused("Le motif du refus est obligatoire.")
    decided = []
    _lock_children(Booking.objects.filter(pk__in=booking_ids).values_list("child_id", flat=True))
    bookings = (Booking.objects.select_for_update(of=("self",), no_key=True).filter(pk__in=booking_ids, action="book")
                .select_related("reservation", "child").order_by("day", "unit_id", "pk"))
    for booking in bookings:
        now = timezone.now()
        if booking.state == Booking.State.REQUESTED:
            booking.state = Booking.State.ACCEPTED if accept else Booking.State.REFUSED
            if not accept:
                _release_seats(booking.establishment_id, [booking])
        elif booking.state == Booking.State.CANCEL_REQUESTED:
            booking.state = Booking.State.CANCELLED if accept else Booking.State.ACCEPTED
            if accept:
                _release_seats(booking.establishment_id, [booking])
            Booking.objects.filter(reservation__child=booking.child, unit=booking.unit, day=booking.day,
                                   action="cancel", state=Booking.State.CANCEL_REQUESTED).update(
                state=Booking.State.CANCELLED if accept else Booking.State.REFUSED, decided_by=staff, decided_at=now)
        else:
            continue
        booking.reason, booking.decided_by, booking.decided_at = reason.strip(), staff, now
        booking.save(update_fields=["state", "reason", "decided_by", "decided_at", "updated_at"])
        _refresh_reservation_state(booking.reservation)
        audit_record(actor=staff, action="booking.accepted" if accept else "booking.refused",
                     target=f"booking:{booking.pk}", family_id=booking.child.family_id)
        decided.append(booking)
    baskets = _prepaid_follow_up(staff, decided) if accept else {}
    by_child: dict[int, list[Booking]] = {}
    for booking in decided:
        by_child.setdefault(booking.child_id, []).append(booking)
    for child_id, lines in by_child.items():
        _notify_family(lines[0].child, "booking_decided", {"lines": lines, "accepted": accept, "reason": reason.strip(),
                                                           "baskets": baskets.get(child_id, [])})
    return decided


def _prepaid_follow_up(staff, decided: list[Booking]) -> dict[int, list]:
    """Services paid in advance: requests just accepted go into a basket to pay (child id ->
    baskets, for the e-mail); accepted cancellations of days already paid become an avoir."""
    from marelle.billing.baskets import basket_for_reservation, credit_cancelled_prepaid_days
    from marelle.billing.pricing import format_euros

    cancelled = [b for b in decided if b.state == Booking.State.CANCELLED]
    if cancelled:
        credit_cancelled_prepaid_days(actor=staff, bookings=cancelled)
    baskets: dict[int, list] = {}
    reservations = {b.reservation_id: b.reservation for b in decided if b.state == Booking.State.ACCEPTED}
    for reservation in reservations.values():
        basket = basket_for_reservation(actor=staff, reservation=reservation, accepted_by_staff=True)
        if basket is not None:
            basket.amount_text = format_euros(basket.invoice.total_cents)
            baskets.setdefault(reservation.child_id, []).append(basket)
    return baskets
