"""The families' side of enrolment and booking (mounted at /reservations/).

- ``index``: per child, its enrolments and the links to their plannings;
- ``enrol``: the enrolment wizard (child → service → establishment, period, habitual days →
  confirmation), plain GET steps and one POST, no JavaScript needed;
- ``enrolment`` / ``adhesion_payment``: what became of an enrolment, and the "payment
  required" step that the billing module will plug into (``booking:adhesion_payment``);
- ``planning``: days × units of one enrolment; what the family ticks is kept in the
  session (one key per enrolment) until the réservation is validated or the selection
  cleared, so it survives moving between months, periods and children;
- ``recap``: each change with its price, what cannot be done and why, the total, and
  "Valider" (with an idempotency key made when the recap is shown);
- ``reservation`` / ``history``: numbered réservations and their lines.

Nothing here writes a booking itself: ``marelle.booking.services`` decides everything, and
what it refuses is shown next to the day it concerns.

Lines that would fail on the recap are *excluded*: they are listed apart with their reason,
left out of the total and of what "Valider" sends, and the rest can be validated. A
réservation is all-or-nothing, so a line that fails only at validation time (the last place
taken meanwhile) rejects the whole submission: the recap comes back with that line named
and moved to the excluded ones, the selection intact.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods

from marelle.billing.pricing import format_euros
from marelle.booking import forms
from marelle.booking.calendar import WEEKDAYS_FR
from marelle.booking.models import Booking, Enrolment, Reservation
from marelle.booking.rules import MONTHS_FR, evaluate, format_date, format_datetime
from marelle.booking.selectors import STATE_LABELS, planning, reservation_history, view_range
from marelle.booking.services import (
    Change,
    EnrolmentRefused,
    ReservationRejected,
    _calendar_for,
    commune_tz,
    enrolment_create,
    enrolment_obstacles,
    plan_changes,
    reservation_submit,
    service_config,
)
from marelle.catalog.models import Establishment, Period, Service
from marelle.core import clock
from marelle.families.models import Child
from marelle.families.permissions import child_of_family, require_family

LIVE = (Enrolment.Status.PENDING, Enrolment.Status.ACCEPTED)
VIEWS = {"mois": "Mois", "quinzaine": "Quinzaine", "semaine": "Semaine"}
SELECTION_KEY = "booking:selection:{}"
# Cell states in the order of the legend.
LEGEND = ["libre", "reserve", "demande", "attente", "annulation_demandee", "refuse", "complet", "verrouille", "ferme"]


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count <= 1 else (plural or singular + 's')}"


def _period_span(period) -> str:
    return f"du {format_date(period.start, weekday=False)} au {format_date(period.end, weekday=False)}"


def _enrolment_of(family, enrolment_id) -> Enrolment:
    """The enrolment, only if it is one of this family's children's: otherwise a 404."""
    try:
        return (Enrolment.objects.select_related("child__family", "service__regie", "establishment", "period")
                .get(pk=enrolment_id, child__family=family))
    except Enrolment.DoesNotExist:
        raise Http404("Inscription introuvable") from None


# --- Inscriptions et réservations ----------------------------------------------------------


def _decorate(enrolment: Enrolment) -> Enrolment:
    enrolment.span = _period_span(enrolment.period)
    enrolment.adhesion_euros = format_euros(enrolment.adhesion_amount_cents)
    enrolment.is_live = enrolment.status in LIVE
    enrolment.awaits_adhesion = enrolment.adhesion == Enrolment.Adhesion.AWAITING_PAYMENT and enrolment.is_live
    return enrolment


@login_required
@require_GET
def index(request):
    family = require_family(request.user)
    children = list(family.children.exclude(status=Child.Status.ARCHIVED))
    enrolments = (Enrolment.objects.filter(child__family=family)
                  .select_related("service", "establishment", "period")
                  .order_by("-period__end", "service__position", "service__label", "pk"))
    by_child: dict[int, list[Enrolment]] = {c.pk: [] for c in children}
    for enrolment in enrolments:
        if enrolment.child_id in by_child:
            by_child[enrolment.child_id].append(_decorate(enrolment))
    return render(request, "booking/family/index.html", {
        "entries": [(child, by_child[child.pk]) for child in children]})


# --- The enrolment wizard ------------------------------------------------------------------


@dataclass
class PeriodOption:
    period: Period
    obstacles: list[str]
    already: bool

    @property
    def available(self) -> bool:
        return not self.obstacles and not self.already


@dataclass
class ServiceOption:
    service: Service
    periods: list[PeriodOption]
    closed_reason: str = ""

    @property
    def available(self) -> bool:
        return any(p.available for p in self.periods)

    @property
    def reasons(self) -> list[str]:
        """Why this child cannot be enrolled in this service now (empty when it can)."""
        if self.available:
            return []
        if not self.periods:
            return [self.closed_reason]
        reasons: list[str] = []
        for option in self.periods:
            found = ([f"Déjà inscrit·e pour « {option.period.label} »"] if option.already else []) + option.obstacles
            if len(self.periods) > 1 and not option.already:
                found = [f"{option.period.label} : {r}" for r in found]
            reasons.extend(r for r in found if r not in reasons)
        return reasons


@dataclass
class ChildOption:
    child: Child
    services: list[ServiceOption]

    @property
    def available(self) -> bool:
        return any(s.available for s in self.services)


def _enrolment_closed(period: Period, now: datetime, today: date) -> str | None:
    """Why enrolment in ``period`` is not open now (None: it is)."""
    if period.end < today:
        return f"Période « {period.label} » terminée"
    if period.enrolment_opens and now < period.enrolment_opens:
        return f"Inscriptions à partir du {format_datetime(period.enrolment_opens, tz=commune_tz())}"
    if period.enrolment_closes and now >= period.enrolment_closes:
        return (f"Inscriptions closes depuis le "
                f"{format_datetime(period.enrolment_closes, tz=commune_tz())}")
    return None


def _enrolment_options(family) -> list[ChildOption]:
    now, today = timezone.now(), clock.today()
    children = list(family.children.exclude(status=Child.Status.ARCHIVED))
    for child in children:
        child.family = family  # enrolment_obstacles reads it: no query per child
    services = list(Service.objects.active().select_related("regie").prefetch_related(
        Prefetch("periods", queryset=Period.objects.active()),
        Prefetch("establishments", queryset=Establishment.objects.active())))
    live = set(Enrolment.objects.filter(child__family=family, status__in=LIVE)
               .values_list("child_id", "service_id", "period_id"))
    options = []
    for child in children:
        child_services = []
        for service in services:
            open_periods, closed = [], []
            for period in service.periods.all():
                reason = _enrolment_closed(period, now, today)
                (closed if reason else open_periods).append(reason or period)
            if not service.establishments.all():
                child_services.append(ServiceOption(service, [], "Aucun établissement ouvert"))
                continue
            child_services.append(ServiceOption(
                service,
                [PeriodOption(p, enrolment_obstacles(child, service, p), (child.pk, service.pk, p.pk) in live)
                 for p in open_periods],
                closed[0] if closed else "Aucune période ouverte à l'inscription"))
        options.append(ChildOption(child, child_services))
    return options


def _habitual_grid(service: Service) -> tuple[list[tuple[str, str]], list[str], list]:
    """Choices ``("lundi|repas", label)``, unit labels and rows of the weekday × unit grid."""
    conf = service_config(service)
    units = conf.units
    choices, rows = [], []
    for weekday in conf.opening.weekdays:
        cells = []
        for unit in units:
            if unit.weekdays is not None and weekday not in unit.weekdays:
                cells.append(None)
                continue
            value = f"{weekday}|{unit.code}"
            label = weekday.capitalize() if len(units) == 1 else f"{weekday.capitalize()} – {unit.label}"
            choices.append((value, label))
            cells.append({"value": value, "label": label, "id": f"id_jours_{weekday}_{unit.code}"})
        rows.append((weekday.capitalize(), cells))
    return choices, [u.label for u in units], rows


def _wizard_initial(data) -> dict:
    initial = {name: data.get(name) for name in ("enfant", "service", "etablissement", "periode") if data.get(name)}
    if hasattr(data, "getlist"):
        initial["jours"] = data.getlist("jours")
    return initial


def _step(request, step: int, context: dict):
    context.update(step=step, steps=["Enfant", "Service", "Établissement et période", "Confirmation"])
    return render(request, "booking/family/enrol.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def enrol(request):
    """Steps 1–3 are GET forms (bookmarkable, back button safe); the confirmation POSTs."""
    family = require_family(request.user)
    options = _enrolment_options(family)
    data = request.POST if request.method == "POST" else request.GET
    try:
        submitted = 4 if request.method == "POST" else int(data.get("etape", 0))
    except ValueError:
        submitted = 0
    initial = _wizard_initial(data)

    eligible = [o.child for o in options if o.available]
    child_form = forms.ChildStepForm(data if submitted >= 1 else None, children=eligible, initial=initial)
    if submitted < 1 or not child_form.is_valid():
        return _step(request, 1, {"form": child_form, "options": options, "any_available": bool(eligible)})
    option = next(o for o in options if str(o.child.pk) == child_form.cleaned_data["enfant"])
    child = option.child

    open_services = [s.service for s in option.services if s.available]
    service_form = forms.ServiceStepForm(data if submitted >= 2 else None, children=eligible,
                                         services=open_services, initial=initial)
    if submitted < 2 or not service_form.is_valid():
        return _step(request, 2, {"form": service_form, "child": child, "option": option})
    service_option = next(s for s in option.services if str(s.service.pk) == service_form.cleaned_data["service"])
    service = service_option.service
    conf = service_config(service)

    periods = [p.period for p in service_option.periods if p.available]
    establishments = list(service.establishments.all())
    habitual = _habitual_grid(service) if conf.enrolment.habitual_days else None
    if submitted < 3:
        initial.setdefault("etablissement", str(establishments[0].pk) if len(establishments) == 1 else None)
        initial.setdefault("periode", str(periods[0].pk) if len(periods) == 1 else None)
    details = forms.DetailsStepForm(data if submitted >= 3 else None, children=eligible, services=open_services,
                                    establishments=establishments, periods=periods,
                                    habitual_choices=habitual[0] if habitual else None, initial=initial)
    for period in periods:
        period.span = _period_span(period)
    context = {"form": details, "child": child, "service": service, "periods": periods,
               "habitual_units": habitual[1] if habitual else [], "habitual_rows": habitual[2] if habitual else [],
               "chosen_days": set(initial.get("jours") or [])}
    if submitted < 3 or not details.is_valid():
        return _step(request, 3, context)

    establishment = next(e for e in establishments if str(e.pk) == details.cleaned_data["etablissement"])
    period = next(p for p in periods if str(p.pk) == details.cleaned_data["periode"])
    habitual_days = details.habitual_days()
    if request.method == "GET" or "confirmer" not in request.POST:
        adhesion = conf.enrolment.adhesion
        return _step(request, 4, {
            "form": details, "child": child, "service": service, "establishment": establishment, "period": period,
            "span": _period_span(period),
            "habitual_text": _habitual_lines(conf, habitual_days),
            "automatic": conf.enrolment.mode == "automatic",
            "adhesion": adhesion, "adhesion_euros": format_euros(adhesion.amount_cents) if adhesion else "",
            "back": "?" + urlencode({**{k: v for k, v in initial.items() if k != "jours"}, "etape": 2,
                                     "jours": initial.get("jours") or []}, doseq=True)})
    try:
        enrolment = enrolment_create(actor=request.user, child=child, service=service, establishment=establishment,
                                     period=period, habitual_days=habitual_days)
    except EnrolmentRefused as refused:
        details.add_error(None, str(refused))
        return _step(request, 3, context)
    if enrolment.status == Enrolment.Status.ACCEPTED:
        messages.success(request, f"{child.first_name} est inscrit·e : {service.label}, {period.label}.")
    else:
        messages.success(request, f"Demande d'inscription de {child.first_name} à « {service.label} » envoyée : "
                                  "elle sera examinée par les services de la commune.")
    return redirect("booking:enrolment", enrolment_id=enrolment.pk)


def _unit_labels(conf, codes) -> list[str]:
    labels = {u.code: u.label for u in conf.units}
    return [labels.get(code, code) for code in codes]


def _habitual_lines(conf, habitual_days: dict | None) -> list[str]:
    """``["Lundi : Repas", "Jeudi : Repas"]`` in weekday order (jsonb keeps its own key order)."""
    habitual_days = habitual_days or {}
    return [f"{w.capitalize()} : {', '.join(_unit_labels(conf, habitual_days[w]))}"
            for w in WEEKDAYS_FR if habitual_days.get(w)]


@login_required
@require_GET
def enrolment(request, enrolment_id: int):
    family = require_family(request.user)
    enrolment = _decorate(_enrolment_of(family, enrolment_id))
    conf = service_config(enrolment.service)
    habitual = _habitual_lines(conf, enrolment.habitual_days)
    return render(request, "booking/family/enrolment.html", {
        "enrolment": enrolment, "child": enrolment.child, "habitual": habitual})


@login_required
@require_http_methods(["GET", "POST"])
def adhesion_payment(request, enrolment_id: int):
    """The "payment required" step: the adhesion goes into an immediate-payment basket
    (billing) and "Payer en ligne" takes the family to the régie's payment provider."""
    from marelle.billing.baskets import (
        BasketError,
        basket_checkout,
        basket_for_adhesion,
        online_refusal,
    )
    from marelle.billing.views_family import provider_redirect

    family = require_family(request.user)
    enrolment = _decorate(_enrolment_of(family, enrolment_id))
    adhesion = service_config(enrolment.service).enrolment.adhesion
    if request.method == "POST":
        try:
            basket = basket_for_adhesion(actor=request.user, family=family, enrolment_id=enrolment.pk)
            attempt = basket_checkout(actor=request.user, family=family, basket_ids=[basket.pk])
        except BasketError as error:
            messages.error(request, error.message)
            return redirect("booking:adhesion_payment", enrolment_id=enrolment.pk)
        return provider_redirect(request, attempt) or redirect("billing:payment", payment_id=attempt.pk)
    return render(request, "booking/family/adhesion_payment.html", {
        "enrolment": enrolment, "child": enrolment.child, "regie": enrolment.service.regie,
        "adhesion_label": adhesion.label if adhesion else "Adhésion",
        "online_refusal": online_refusal(enrolment.service.regie)})


# --- The planning --------------------------------------------------------------------------


def _selection(request, enrolment) -> dict[str, dict]:
    return dict(request.session.get(SELECTION_KEY.format(enrolment.pk), {}))


def _store_selection(request, enrolment, selection: dict) -> None:
    key = SELECTION_KEY.format(enrolment.pk)
    if selection:
        request.session[key] = selection
    else:
        request.session.pop(key, None)


def _parse_key(key: str) -> tuple[date, str] | None:
    day, _, unit = (key or "").partition("|")
    try:
        return date.fromisoformat(day), unit
    except ValueError:
        return None


def _parse_time(text: str | None) -> time | None:
    try:
        return time.fromisoformat(text) if text else None
    except ValueError:
        return None


def _changes(selection: dict) -> list[Change]:
    changes = []
    for key, entry in selection.items():
        parsed = _parse_key(key)
        if parsed is None:
            continue
        changes.append(Change(parsed[0], parsed[1], entry.get("a", "book"),
                              _parse_time(entry.get("s")), _parse_time(entry.get("e"))))
    return sorted(changes, key=lambda c: (c.day, c.unit))


def _first_bookable_day(enrolment: Enrolment, today: date) -> date | None:
    """The first day from today on that the rules let the family book in time (no database:
    the rules module only), looked for over three months at most."""
    conf = service_config(enrolment.service)
    period_conf = next((p for p in conf.periods if p.code == enrolment.period.code), None)
    if period_conf is None:
        return None
    calendar, tz, now = _calendar_for(conf), commune_tz(), timezone.now()
    day = max(today, enrolment.period.start)
    last = min(enrolment.period.end, day + timedelta(days=92))
    while day <= last:
        for unit in conf.units:
            decision = evaluate("book", now=now, day=day, unit=unit, service=conf, period=period_conf,
                                calendar=calendar, tz=tz)
            if decision.allowed and not decision.late:
                return day
        day += timedelta(days=1)
    return None


def _anchor(raw: str | None, enrolment: Enrolment, today: date) -> date:
    try:
        anchor = date.fromisoformat(raw) if raw else None
    except ValueError:
        anchor = None
    if anchor is None:
        anchor = _first_bookable_day(enrolment, today) or today
    return min(max(anchor, enrolment.period.start), enrolment.period.end)


def _view(raw: str | None) -> str:
    return raw if raw in VIEWS else "mois"


def _planning_url(enrolment_id: int, vue: str, day: date) -> str:
    return reverse("booking:planning", args=[enrolment_id]) + "?" + urlencode({"vue": vue, "date": day.isoformat()})


def _range_title(vue: str, start: date, end: date) -> str:
    if vue == "mois":
        return f"{MONTHS_FR[start.month - 1].capitalize()} {start.year}"
    if vue == "semaine":
        return f"Semaine du {format_date(start)}"
    return f"Du {format_date(start, year=start.year != end.year)} au {format_date(end)}"


def _neighbours(vue: str, start: date, end: date) -> tuple[date, date]:
    if vue == "mois":
        return (start - timedelta(days=1)).replace(day=1), end + timedelta(days=1)
    step = timedelta(days=7 if vue == "semaine" else 14)
    return start - step, start + step


@dataclass
class CellView:
    key: str
    html_id: str
    state: str
    label: str
    hint: str
    day_text: str
    unit_label: str
    can_book: bool
    can_cancel: bool
    selected: bool
    price: str = ""
    time_range: bool = False
    start: str = ""
    end: str = ""
    min: str = ""
    max: str = ""
    step: int = 900
    booked_times: str = ""


@dataclass
class RowView:
    day: date
    label: str
    short: str
    cells: list[CellView] = field(default_factory=list)
    time_range: bool = False


def _row_views(rows, selection: dict, open_weekdays: set[int]) -> list[RowView]:
    views = []
    for row in rows:
        # Weekdays the service never opens (week-ends…) are left out unless something is booked.
        if row.day.weekday() not in open_weekdays and not any(c.booking for c in row.cells):
            continue
        view = RowView(row.day, format_date(row.day), f"{WEEKDAYS_FR[row.day.weekday()][:3]}. {row.day:%d/%m}")
        for cell in row.cells:
            unit = cell.unit
            chosen = selection.get(cell.key, {})
            time_range = unit.kind == "time_range"
            item = CellView(
                key=cell.key, html_id=f"{cell.day.isoformat()}-{unit.code}", state=cell.state, label=cell.label,
                hint=cell.hint, day_text=view.label, unit_label=unit.label, can_book=cell.can_book,
                can_cancel=cell.can_cancel,
                selected=bool(chosen) and chosen.get("a") == ("cancel" if cell.can_cancel else "book"),
                price=format_euros(cell.price_cents) if cell.price_cents and not time_range else "",
                time_range=time_range)
            if time_range:
                item.min = f"{unit.start_time:%H:%M}" if unit.start_time else ""
                item.max = f"{unit.end_time:%H:%M}" if unit.end_time else ""
                item.step = unit.step_minutes * 60
                item.start = chosen.get("s") or item.min
                item.end = chosen.get("e") or item.max
                if cell.start and cell.end:
                    item.booked_times = f"{cell.start:%H:%M}–{cell.end:%H:%M}"
                view.time_range = view.time_range or cell.can_book
            view.cells.append(item)
        views.append(view)
    return views


def _save_shown(post, rows, selection: dict, enrolment: Enrolment) -> list[str]:
    """Apply the ticks of the days shown to the selection; return French errors for what
    could not be selected (a forged or stale form), naming the day and the rule."""
    cells = {cell.key: cell for row in rows for cell in row.cells}
    book, cancel = set(post.getlist("book")), set(post.getlist("cancel"))
    refused: list[Change] = []
    for key, cell in cells.items():
        if key in book and cell.can_book:
            entry = {"a": "book"}
            if cell.unit.kind == "time_range":
                entry["s"] = (post.get(f"debut_{key}") or "").strip()[:8]
                entry["e"] = (post.get(f"fin_{key}") or "").strip()[:8]
            selection[key] = entry
        elif key in cancel and cell.can_cancel:
            selection[key] = {"a": "cancel"}
        else:
            selection.pop(key, None)
            if key in book or key in cancel:
                refused.append(Change(cell.day, cell.unit.code, "book" if key in book else "cancel"))
    errors = []
    for key in sorted((book | cancel) - cells.keys()):
        parsed = _parse_key(key)
        if parsed is None:
            errors.append(f"Sélection « {key[:40]} » non reconnue : ignorée.")
        else:
            refused.append(Change(parsed[0], parsed[1][:40], "book" if key in book else "cancel"))
    if refused:
        # Ask the booking engine why: its refusal names the day and the rule.
        _, problems = plan_changes(enrolment=enrolment, changes=refused)
        reasons = {(p.change.day, p.change.unit, p.change.action): p.reason for p in problems}
        for change in refused:
            reason = reasons.get((change.day, change.unit, change.action))
            if reason is None:
                cell = cells.get(f"{change.day.isoformat()}|{change.unit}")
                state = f"{cell.label.lower()} — {cell.hint}" if cell else "non affiché"
                verb = "réservé" if change.action == "book" else "annulé"
                reason = f"Le {format_date(change.day)} ({change.unit}) ne peut pas être {verb} : {state}."
            errors.append(f"Non sélectionné — {reason}")
    return errors


def _apply_bulk(form, enrolment: Enrolment, shown_rows, selection: dict, today: date, single_unit: bool) -> str:
    data = form.cleaned_data
    action, scope, weekday, unit_code = data["action"], data["portee"], data.get("jour"), data.get("unite")
    if scope == "affiches":
        rows = shown_rows
    else:
        start = max(today, enrolment.period.start)
        rows = planning(enrolment, start, enrolment.period.end) if start <= enrolment.period.end else []
    cells = [c for row in rows for c in row.cells]
    if scope == "jour":
        cells = [c for c in cells if WEEKDAYS_FR[c.day.weekday()] == weekday]
    elif scope == "habituels":
        habitual = enrolment.habitual_days or {}
        cells = [c for c in cells if c.unit.code in habitual.get(WEEKDAYS_FR[c.day.weekday()], [])]
    if unit_code:
        cells = [c for c in cells if c.unit.code == unit_code]
    noun = "jour" if single_unit else "créneau"
    nouns = "jours" if single_unit else "créneaux"
    count = 0
    if action == "reserver":
        for cell in cells:
            # Only free days: full (waiting list) and refused ones are chosen one by one.
            if cell.can_book and cell.state == "libre" and selection.get(cell.key, {}).get("a") != "book":
                entry = {"a": "book"}
                if cell.unit.kind == "time_range":
                    entry["s"] = f"{cell.unit.start_time:%H:%M}" if cell.unit.start_time else ""
                    entry["e"] = f"{cell.unit.end_time:%H:%M}" if cell.unit.end_time else ""
                selection[cell.key] = entry
                count += 1
        if not count:
            return "Aucun jour libre à ajouter parmi les jours choisis."
        return f"{_plural(count, noun, nouns)} ajouté{'s' if count > 1 else ''} à votre sélection."
    if action == "annuler":
        for cell in cells:
            if cell.can_cancel and selection.get(cell.key, {}).get("a") != "cancel":
                selection[cell.key] = {"a": "cancel"}
                count += 1
        if not count:
            return "Aucune réservation annulable parmi les jours choisis."
        return f"{_plural(count, 'réservation')} sélectionnée{'s' if count > 1 else ''} pour annulation."
    for cell in cells:
        if selection.pop(cell.key, None) is not None:
            count += 1
    if not count:
        return "Aucun des jours choisis n'était dans votre sélection."
    return f"{_plural(count, noun, nouns)} retiré{'s' if count > 1 else ''} de votre sélection."


def _family_enrolments(family) -> list[Enrolment]:
    return list(Enrolment.objects.filter(child__family=family, status__in=LIVE)
                .select_related("child", "service", "period")
                .order_by("child__birth_date", "child__first_name", "period__start", "service__position", "pk"))


def _switch_target(target: Enrolment, vue: str, anchor: date) -> str:
    day = anchor if target.period.start <= anchor <= target.period.end else None
    url = reverse("booking:planning", args=[target.pk]) + "?" + urlencode({"vue": vue})
    return url + (f"&date={day.isoformat()}" if day else "")


@login_required
@require_http_methods(["GET", "POST"])
def planning_view(request, enrolment_id: int):
    family = require_family(request.user)
    enrolment = _enrolment_of(family, enrolment_id)
    if enrolment.status not in LIVE:
        messages.error(request, f"Cette inscription est {enrolment.get_status_display().lower()} : "
                                "pas de planning à afficher.")
        return redirect("booking:index")
    data = request.POST if request.method == "POST" else request.GET
    today = clock.today()
    vue = _view(data.get("vue"))
    anchor = _anchor(data.get("date"), enrolment, today)
    start, end = view_range(anchor, vue)
    conf = service_config(enrolment.service)
    rows = planning(enrolment, start, end)
    units = [cell.unit for cell in rows[0].cells] if rows else []
    weekdays = [w for w in WEEKDAYS_FR if w in conf.opening.weekdays]
    selection = _selection(request, enrolment)
    bulk_form = forms.BulkForm(data if data.get("aller") == "groupe" else None, weekdays=weekdays, units=units,
                               has_habitual_days=bool(enrolment.habitual_days))

    if request.method == "POST":
        for error in _save_shown(request.POST, rows, selection, enrolment):
            messages.error(request, error)
        goal = request.POST.get("aller", "rester")
        target = _planning_url(enrolment.pk, vue, anchor)
        if goal == "groupe":
            if bulk_form.is_valid():
                messages.info(request, _apply_bulk(bulk_form, enrolment, rows, selection, today, len(units) == 1))
                target += "#selection-groupee"
            else:
                _store_selection(request, enrolment, selection)
                return _render_planning(request, enrolment, family, vue, anchor, start, end, rows, units, conf,
                                        selection, bulk_form, status=200)
        elif goal == "effacer":
            selection = {}
            messages.info(request, "Votre sélection est effacée.")
        elif goal == "recapitulatif":
            target = reverse("booking:recap", args=[enrolment.pk])
        elif goal.startswith("date:"):
            parsed = _parse_key(goal[5:] + "|")
            target = _planning_url(enrolment.pk, vue, parsed[0] if parsed else anchor)
        elif goal.startswith("vue:"):
            target = _planning_url(enrolment.pk, _view(goal[4:]), anchor)
        elif goal.startswith("inscription:"):
            other = _enrolment_of(family, goal[12:] if goal[12:].isdigit() else 0)
            target = _switch_target(other, vue, anchor)
        _store_selection(request, enrolment, selection)
        return redirect(target)
    return _render_planning(request, enrolment, family, vue, anchor, start, end, rows, units, conf, selection,
                            bulk_form)


def _render_planning(request, enrolment, family, vue, anchor, start, end, rows, units, conf, selection, bulk_form,
                     status=200):
    open_weekdays = {WEEKDAYS_FR.index(w) for w in conf.opening.weekdays}
    row_views = _row_views(rows, selection, open_weekdays)
    previous, following = _neighbours(vue, start, end)
    shown_keys = {c.key for row in rows for c in row.cells}
    books = sum(1 for e in selection.values() if e.get("a") == "book")
    others = _family_enrolments(family)
    child = enrolment.child
    siblings: list[tuple[Child, Enrolment]] = []
    seen = set()
    for other in others:
        if other.child_id != child.pk and other.child_id not in seen:
            same = next((o for o in others if o.child_id == other.child_id and o.service_id == enrolment.service_id),
                        other)
            siblings.append((other.child, same))
            seen.add(other.child_id)
    return render(request, "booking/family/planning.html", {
        "enrolment": enrolment, "child": child, "span": _period_span(enrolment.period),
        "vue": vue, "views": VIEWS, "anchor": anchor, "title": _range_title(vue, start, end),
        "previous": previous if start > enrolment.period.start else None,
        "following": following if end < enrolment.period.end else None,
        "previous_label": {"mois": "Mois précédent", "semaine": "Semaine précédente"}.get(vue, "Quinzaine précédente"),
        "following_label": {"mois": "Mois suivant", "semaine": "Semaine suivante"}.get(vue, "Quinzaine suivante"),
        "units": units, "rows": row_views, "any_time_range": any(r.time_range for r in row_views),
        "legend": [(state, STATE_LABELS[state]) for state in LEGEND],
        "selection_count": len(selection), "selection_books": books, "selection_cancels": len(selection) - books,
        "selection_outside": sum(1 for key in selection if key not in shown_keys),
        "bulk_form": bulk_form, "weekdays_text": ", ".join(w for w in WEEKDAYS_FR if w in conf.opening.weekdays),
        "periods": [o for o in others if o.child_id == child.pk and o.pk != enrolment.pk],
        "siblings": siblings,
        "habitual": _habitual_lines(conf, enrolment.habitual_days),
        "awaits_adhesion": enrolment.adhesion == Enrolment.Adhesion.AWAITING_PAYMENT,
        "adhesion_euros": format_euros(enrolment.adhesion_amount_cents),
    }, status=status)


# --- The recap -----------------------------------------------------------------------------


@dataclass
class RecapLine:
    change: Change
    day_text: str
    unit_label: str
    action_label: str
    times: str = ""
    price: str = ""
    surcharge: str = ""
    amount_cents: int = 0
    outcome: str = ""
    problem: str = ""

    @property
    def amount(self) -> str:
        return format_euros(self.amount_cents)

    @property
    def value(self) -> str:
        """The line as "Valider" posts it back."""
        c = self.change
        return "|".join([c.day.isoformat(), c.unit, c.action, f"{c.start:%H:%M}" if c.start else "",
                         f"{c.end:%H:%M}" if c.end else ""])


def _parse_line(value: str) -> Change | None:
    parts = (value or "").split("|")
    if len(parts) != 5 or parts[2] not in ("book", "cancel"):
        return None
    parsed = _parse_key(f"{parts[0]}|{parts[1]}")
    if parsed is None or not parsed[1]:
        return None
    return Change(parsed[0], parsed[1][:40], parts[2], _parse_time(parts[3]), _parse_time(parts[4]))


def _recap_lines(enrolment: Enrolment, changes: list[Change], rejected: dict | None = None):
    """(lines that can be validated, lines that cannot with their reason, total in cents)."""
    rejected = rejected or {}
    planned, problems = plan_changes(enrolment=enrolment, changes=changes)
    conf = service_config(enrolment.service)
    labels = {u.code: u.label for u in conf.units}
    live = {(b.unit.code, b.day): b for b in Booking.objects.filter(
        child_id=enrolment.child_id, action="book", state__in=Booking.LIVE_STATES,
        day__in={c.day for c in changes}).select_related("unit")} if changes else {}

    def line(change: Change) -> RecapLine:
        times = f"{change.start:%H:%M}–{change.end:%H:%M}" if change.start and change.end else ""
        return RecapLine(change, format_date(change.day), labels.get(change.unit, change.unit),
                         "Réservation" if change.action == "book" else "Annulation", times)

    good, bad = [], []
    for item in planned:
        change, decision = item.change, item.decision
        current = live.get((change.unit, change.day))
        entry = line(change)
        if (change.day, change.unit, change.action) in rejected:
            entry.problem = rejected[(change.day, change.unit, change.action)]
        elif change.action == "book":
            if current is not None:
                entry.problem = f"{entry.unit_label} le {change.day:%d/%m/%Y} : déjà réservé ou demandé."
            else:
                entry.price = format_euros(item.price_cents)
                entry.surcharge = format_euros(decision.surcharge_cents) if decision.surcharge_cents else ""
                entry.amount_cents = item.price_cents + decision.surcharge_cents
                if decision.late:
                    entry.outcome = "Réservation tardive : demande à valider par le service"
                elif decision.outcome == "request":
                    entry.outcome = "Demande à valider par le service"
                else:
                    entry.outcome = "Réservée dès la validation"
        else:
            if current is None or current.state == Booking.State.CANCEL_REQUESTED:
                entry.problem = f"{entry.unit_label} le {change.day:%d/%m/%Y} : aucune réservation à annuler."
            elif current.state in (Booking.State.WAITING, Booking.State.REQUESTED) or decision.outcome == "accepted":
                refund = current.unit_price_cents + current.surcharge_cents
                entry.amount_cents = -refund if current.state != Booking.State.WAITING else 0
                entry.price = format_euros(-current.unit_price_cents)
                entry.outcome = "Annulée dès la validation"
            else:
                entry.outcome = "Demande d'annulation à valider par le service (remboursée si acceptée)"
        (bad if entry.problem else good).append(entry)
    for problem in problems:
        entry = line(problem.change)
        entry.problem = rejected.get((problem.change.day, problem.change.unit, problem.change.action),
                                     problem.reason)
        bad.append(entry)
    key = lambda entry: (entry.change.day, entry.change.unit)  # noqa: E731
    good.sort(key=key)
    bad.sort(key=key)
    return good, bad, sum(entry.amount_cents for entry in good)


def _render_recap(request, enrolment: Enrolment, *, rejected: list | None = None, status: int = 200):
    selection = _selection(request, enrolment)
    rejected_map = {(p.change.day, p.change.unit, p.change.action): p.reason for p in rejected or []}
    good, bad, total = _recap_lines(enrolment, _changes(selection), rejected_map)
    labels = {u.code: u.label for u in service_config(enrolment.service).units}
    rejected_lines = [f"{format_date(p.change.day).capitalize()}, {labels.get(p.change.unit, p.change.unit)} : "
                      f"{p.reason}" for p in rejected or []]
    return render(request, "booking/family/recap.html", {
        "enrolment": enrolment, "child": enrolment.child, "span": _period_span(enrolment.period),
        "lines": good, "problems": bad, "total": format_euros(total), "total_cents": total,
        "idempotency_key": uuid.uuid4().hex, "rejected": rejected_lines,
        "back": reverse("booking:planning", args=[enrolment.pk]) + (
            "?" + urlencode({"date": (good or bad)[0].change.day.isoformat()}) if (good or bad) else ""),
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def recap(request, enrolment_id: int):
    family = require_family(request.user)
    enrolment = _enrolment_of(family, enrolment_id)
    if request.method == "GET":
        return _render_recap(request, enrolment)

    key = request.POST.get("cle", "")
    try:
        uuid.UUID(key)
    except ValueError:
        messages.error(request, "Ce récapitulatif a expiré : vérifiez-le puis validez à nouveau.")
        return redirect("booking:recap", enrolment_id=enrolment.pk)
    values = request.POST.getlist("ligne")
    changes = [c for c in map(_parse_line, values) if c is not None]
    if len(changes) != len(values):
        messages.error(request, "Certaines lignes du récapitulatif n'ont pas été comprises : vérifiez-le puis "
                                "validez à nouveau.")
        return redirect("booking:recap", enrolment_id=enrolment.pk)
    try:
        reservation = reservation_submit(actor=request.user, enrolment=enrolment, changes=changes,
                                         idempotency_key=key)
    except ReservationRejected as rejected:
        if not rejected.problems:
            messages.error(request, "Aucun changement à valider : choisissez des jours sur le planning.")
            return redirect("booking:planning", enrolment_id=enrolment.pk)
        return _render_recap(request, enrolment, rejected=rejected.problems, status=422)
    _store_selection(request, enrolment, {})
    basket = _payment_due(enrolment, reservation)
    if basket is not None:
        deadline = timezone.localtime(basket.expires_at)
        messages.warning(request, f"Réservation n° {reservation.number} enregistrée : elle se paie d'avance. Réglez "
                                  f"{format_euros(basket.invoice.total_cents)} avant {deadline:%H}h{deadline:%M}, sinon les places "
                                  "seront libérées.")
        return redirect("billing:baskets")
    messages.success(request, f"Réservation n° {reservation.number} enregistrée.")
    return redirect("booking:reservation", number=reservation.number)


def _payment_due(enrolment, reservation):
    from marelle.billing.baskets import is_prepaid, open_basket_for

    return open_basket_for(reservation) if is_prepaid(enrolment.service) else None


# --- Réservations and history --------------------------------------------------------------


def _line_view(line: Booking) -> dict:
    times = f"{line.start_time:%H:%M}–{line.end_time:%H:%M}" if line.start_time and line.end_time else ""
    amount = line.unit_price_cents + (line.surcharge_cents if line.action == "book" else 0)
    return {"day": format_date(line.day), "unit": line.unit.label, "action": line.get_action_display(),
            "state": line.get_state_display(), "state_code": line.state, "times": times,
            "amount": format_euros(amount), "surcharge": format_euros(line.surcharge_cents) if line.surcharge_cents
            else "", "reason": line.reason, "late": line.late}


def _reservation_summary(reservation: Reservation) -> dict:
    lines = list(reservation.lines.all())
    books = sum(1 for line in lines if line.action == "book")
    parts = []
    if books:
        parts.append(_plural(books, "réservation"))
    if len(lines) - books:
        parts.append(_plural(len(lines) - books, "annulation"))
    return {"reservation": reservation, "created": format_datetime(reservation.created_at, tz=commune_tz()),
            "operations": ", ".join(parts), "total": format_euros(reservation.total_cents),
            "days": sorted({line.day for line in lines})}


@login_required
@require_GET
def reservation(request, number: str):
    family = require_family(request.user)
    try:
        reservation = (Reservation.objects
                       .select_related("child", "enrolment__service", "enrolment__period", "enrolment__establishment")
                       .prefetch_related("lines__unit").get(number=number, child__family=family))
    except Reservation.DoesNotExist:
        raise Http404("Réservation introuvable") from None
    summary = _reservation_summary(reservation)
    return render(request, "booking/family/reservation.html", {
        **summary, "child": reservation.child, "enrolment": reservation.enrolment,
        "span": _period_span(reservation.enrolment.period),
        "lines": [_line_view(line) for line in reservation.lines.all()],
        "planning_date": summary["days"][0].isoformat() if summary["days"] else ""})


@login_required
@require_GET
def history(request, child_id: int):
    family = require_family(request.user)
    child = child_of_family(family, child_id)
    reservations = [_reservation_summary(r) for r in reservation_history(child)]
    for summary in reservations:
        days = summary["days"]
        summary["days_text"] = ("" if not days else format_date(days[0], weekday=False) if len(days) == 1 else
                                f"du {format_date(days[0], weekday=False)} au {format_date(days[-1], weekday=False)}")
    others = list(family.children.exclude(status=Child.Status.ARCHIVED).exclude(pk=child.pk))
    return render(request, "booking/family/history.html", {
        "child": child, "reservations": reservations, "others": others})
