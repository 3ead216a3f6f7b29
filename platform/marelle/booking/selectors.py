"""Reads for the planning: every cell's state and, in plain French, why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.utils import timezone

from marelle.billing.pricing import unit_price_cents
from marelle.booking.models import Booking, Enrolment, Occupancy, Reservation
from marelle.booking.rules import evaluate
from marelle.booking.services import _calendar_for, commune_tz, family_bracket, service_config
from marelle.catalog.models import Unit

STATE_LABELS = {
    "reserve": "Réservé",
    "demande": "Demandé",
    "attente": "Liste d'attente",
    "refuse": "Refusé",
    "annulation_demandee": "Annulation demandée",
    "ferme": "Fermé",
    "complet": "Complet",
    "verrouille": "Verrouillé",
    "libre": "Libre",
}
BOOKING_STATE_TO_CELL = {
    Booking.State.ACCEPTED: "reserve",
    Booking.State.REQUESTED: "demande",
    Booking.State.WAITING: "attente",
    Booking.State.CANCEL_REQUESTED: "annulation_demandee",
}


@dataclass
class Cell:
    day: date
    unit: Unit
    state: str
    hint: str
    can_book: bool = False
    can_cancel: bool = False
    price_cents: int = 0
    booking: Booking | None = None
    start: time | None = None
    end: time | None = None

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}|{self.unit.code}"


@dataclass
class DayRow:
    day: date
    cells: list[Cell] = field(default_factory=list)


def planning(enrolment: Enrolment, start: date, end: date, *, now: datetime | None = None) -> list[DayRow]:
    """The child's planning from ``start`` to ``end`` for one enrolment (fixed query count)."""
    now = now or timezone.now()
    service_conf = service_config(enrolment.service)
    period_conf = next(p for p in service_conf.periods if p.code == enrolment.period.code)
    calendar = _calendar_for(service_conf)
    tz = commune_tz()
    bracket = family_bracket(enrolment.child.family)
    units = list(Unit.objects.filter(service=enrolment.service, archived_at__isnull=True).order_by("position"))
    unit_confs = {u.code: u for u in service_conf.units}
    live = {(b.unit_id, b.day): b for b in Booking.objects.filter(
        child=enrolment.child, day__range=(start, end), state__in=Booking.LIVE_STATES, action="book")}
    refused = {(b.unit_id, b.day): b for b in Booking.objects.filter(
        child=enrolment.child, day__range=(start, end), state=Booking.State.REFUSED, action="book")}
    establishment = enrolment.establishment
    capacity = {u.pk: establishment.unit_capacities.get(u.code, establishment.capacity) for u in units}
    full = {(o.unit_id, o.day) for o in Occupancy.objects.filter(establishment=establishment, day__range=(start, end))
            if o.unit_id in capacity and o.taken >= capacity[o.unit_id]}
    waiting_list = service_conf.booking.when_full == "waiting_list"
    booking_open = enrolment.booking_open

    rows = []
    day = start
    while day <= end:
        row = DayRow(day)
        for unit in units:
            unit_conf = unit_confs.get(unit.code)
            if unit_conf is None:
                continue
            key = (unit.pk, day)
            current = live.get(key)
            if current is not None:
                decision = evaluate("cancel", now=now, day=day, unit=unit_conf, service=service_conf,
                                    period=period_conf, calendar=calendar, tz=tz)
                cell = Cell(day, unit, BOOKING_STATE_TO_CELL[current.state], decision.explain(),
                            can_cancel=decision.allowed and current.state != Booking.State.CANCEL_REQUESTED
                            and booking_open, booking=current, price_cents=current.unit_price_cents,
                            start=current.start_time, end=current.end_time)
                if current.state == Booking.State.CANCEL_REQUESTED:
                    cell.hint = "Annulation demandée : en attente de la réponse du service"
                row.cells.append(cell)
                continue
            decision = evaluate("book", now=now, day=day, unit=unit_conf, service=service_conf,
                                period=period_conf, calendar=calendar, tz=tz)
            if not decision.allowed:
                state = "ferme" if decision.refusal in ("closed", "out_of_period") else "verrouille"
                row.cells.append(Cell(day, unit, state, decision.explain()))
                continue
            price = unit_price_cents(service_conf, unit.code, bracket=bracket)
            if not booking_open:
                hint = ("Réservations ouvertes après le paiement de l'adhésion"
                        if enrolment.adhesion == Enrolment.Adhesion.AWAITING_PAYMENT
                        else "Réservations ouvertes quand l'inscription sera acceptée")
                row.cells.append(Cell(day, unit, "verrouille", hint, price_cents=price))
                continue
            if key in full:
                hint = "Complet : " + ("inscription possible sur la liste d'attente" if waiting_list
                                       else "plus aucune place")
                row.cells.append(Cell(day, unit, "complet", hint, can_book=waiting_list, price_cents=price))
                continue
            state = "refuse" if key in refused else "libre"
            hint = decision.explain()
            if state == "refuse":
                hint = f"Demande refusée{(' : ' + refused[key].reason) if refused[key].reason else ''}. {hint}"
            row.cells.append(Cell(day, unit, state, hint, can_book=True, price_cents=price))
        rows.append(row)
        day += timedelta(days=1)
    return rows


def reservation_history(child, *, limit: int = 50):
    return (Reservation.objects.filter(child=child).select_related("enrolment__service", "enrolment__period")
            .prefetch_related("lines__unit").order_by("-created_at")[:limit])


def view_range(anchor: date, view: str) -> tuple[date, date]:
    """The days shown by a month / fortnight / week view containing ``anchor``."""
    if view == "semaine":
        start = anchor - timedelta(days=anchor.weekday())
        return start, start + timedelta(days=6)
    if view == "quinzaine":
        start = anchor - timedelta(days=anchor.weekday())
        return start, start + timedelta(days=13)
    start = anchor.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following - timedelta(days=1)
