"""Staff side of booking, in the back-office (/gestion/reservations/).

Who may do what (the commune's staff roles, ``User.StaffRole``):

- every staff member may *see* the queues, the list of children expected and the
  simulation (``@staff_required``);
- deciding booking/cancellation requests and enrolments, and taking attendance, is the
  work of the people who run the structures: ``agent``, ``directeur``, ``administrateur``
  (:data:`DECIDE_ROLES`, :data:`ATTENDANCE_ROLES`). The ``regisseur`` (cash office) sees
  the queues but does not admit children: that is not a cash-office decision;
- marking an adhesion paid at the desk is money received: ``regisseur`` and
  ``administrateur`` only (:data:`ADHESION_ROLES`).

Pages hide the buttons a role may not use, and the POST handlers check again.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_date
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from marelle.accounts.models import User
from marelle.backoffice.access import deny, role_labels, staff_required
from marelle.backoffice.services import reveal_health_data
from marelle.booking import staff_selectors as selectors
from marelle.booking.attendance import AttendanceEntry, AttendanceRejected, attendance_record
from marelle.booking.models import Attendance, Booking, Enrolment
from marelle.booking.rules import format_cents, format_date, format_datetime, local_instant
from marelle.booking.selectors import planning, view_range
from marelle.booking.services import (
    DecisionRefused,
    EnrolmentRefused,
    booking_decide,
    commune_tz,
    enrolment_decide,
)
from marelle.booking.services import enrolment_adhesion_paid as adhesion_paid
from marelle.catalog.models import Establishment, Unit
from marelle.core import clock
from marelle.families.models import Family

try:  # the project's accessible rendering (labels, aria-describedby, aria-invalid)
    from marelle.core.forms import Form
except ImportError:  # pragma: no cover
    Form = forms.Form

Role = User.StaffRole
DECIDE_ROLES = (Role.AGENT, Role.DIRECTEUR, Role.ADMINISTRATEUR)
ATTENDANCE_ROLES = DECIDE_ROLES
ADHESION_ROLES = (Role.REGISSEUR, Role.ADMINISTRATEUR)

REQUESTS_PAGE_SIZE = 200
REASON_REQUIRED = "Indiquez le motif du refus : il est communiqué à la famille."
HEALTH_CONTEXT = "liste des enfants attendus"
HEALTH_CONTEXT_CSV = "export CSV des enfants attendus"


def _may(user, roles) -> bool:
    return getattr(user, "staff_role", "") in roles


def _roles_text(roles) -> str:
    return ", ".join(role_labels(roles))


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _date(raw: str) -> date | None:
    try:
        return parse_date((raw or "").strip())
    except ValueError:  # well formed but impossible (2026-02-30)
        return None


def _back(request, default: str) -> str:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


@staff_required
def index(request):
    return redirect("booking_staff:requests")


# --- Queue of booking and cancellation requests ---------------------------------------------


@dataclass
class QueueFilters:
    service: str = ""
    establishment: int | None = None

    @property
    def query(self) -> str:
        params = {k: v for k, v in (("service", self.service), ("etablissement", self.establishment or "")) if v}
        return urlencode(params)


def _queue_filters(request, services, establishments) -> QueueFilters:
    codes = {s.code for s in services}
    service = request.GET.get("service", "")
    establishment = _int(request.GET.get("etablissement"))
    return QueueFilters(service=service if service in codes else "",
                        establishment=establishment if establishment in {e.pk for e in establishments} else None)


def _decision_from_post(post) -> tuple[bool | None, list[int]]:
    """(accept, booking ids) from the queue's form: a line's own button, or the selection's."""
    for name, accept in (("accepter_ligne", True), ("refuser_ligne", False)):
        if name in post:
            line = _int(post.get(name))
            return accept, [line] if line else []
    ids = [i for i in (_int(v) for v in post.getlist("lignes")) if i]
    return {"accepter": True, "refuser": False}.get(post.get("decision")), ids


@staff_required
def requests_queue(request):
    services = selectors.active_services()
    establishments = selectors.active_establishments()
    filters = _queue_filters(request, services, establishments)
    may_decide = _may(request.user, DECIDE_ROLES)
    selected: set[int] = set()
    reason, errors = "", {}
    if request.method == "POST":
        refused = deny(request, DECIDE_ROLES)
        if refused is not None:
            return refused
        accept, ids = _decision_from_post(request.POST)
        reason = request.POST.get("motif", "").strip()
        # Kept on a re-display: what was ticked, and the line whose button was pressed.
        selected = {i for i in (_int(v) for v in request.POST.getlist("lignes")) if i} | set(ids)
        if accept is None:
            errors["selection"] = "Choisissez « Accepter » ou « Refuser »."
        elif not ids:
            errors["selection"] = "Cochez au moins une demande."
        elif not accept and not reason:
            errors["motif"] = REASON_REQUIRED
        else:
            try:
                decided = booking_decide(staff=request.user, booking_ids=ids, accept=accept, reason=reason)
            except DecisionRefused as error:
                errors["motif"] = str(error)
            else:
                _decision_messages(request, decided, len(ids), accept)
                return redirect(request.get_full_path())
    page = Paginator(selectors.pending_booking_requests(service_code=filters.service,
                                                        establishment_id=filters.establishment),
                     REQUESTS_PAGE_SIZE).get_page(request.GET.get("page"))
    lines = list(page.object_list)
    for line in lines:
        line.surcharge_label = format_cents(line.surcharge_cents) if line.surcharge_cents else ""
    return render(request, "booking/staff/requests.html", {
        "days": selectors.group_by_day_and_child(lines),
        "page": page,
        "filters": filters,
        "services": services,
        "establishments": establishments,
        "may_decide": may_decide,
        "decide_roles": _roles_text(DECIDE_ROLES),
        "selected": selected,
        "reason": reason,
        "errors": errors,
    })


def _decision_messages(request, decided: list[Booking], asked: int, accept: bool) -> None:
    count = len(decided)
    if count:
        cancels = sum(1 for b in decided if b.state in (Booking.State.CANCELLED,)
                      or (not accept and b.state == Booking.State.ACCEPTED))
        bookings = count - cancels
        parts = []
        if bookings:
            parts.append(f"{bookings} demande{'s' if bookings > 1 else ''} de réservation "
                         f"{'acceptée' if accept else 'refusée'}{'s' if bookings > 1 else ''}")
        if cancels:
            parts.append(f"{cancels} demande{'s' if cancels > 1 else ''} d'annulation "
                         f"{'acceptée' if accept else 'refusée'}{'s' if cancels > 1 else ''}")
        messages.success(request, " et ".join(parts).capitalize() + ".")
    skipped = asked - count
    if skipped:
        messages.warning(request, f"{skipped} demande{'s' if skipped > 1 else ''} déjà traitée"
                                  f"{'s' if skipped > 1 else ''} entre-temps : aucune nouvelle décision "
                                  "n'a été enregistrée pour elle" + ("s." if skipped > 1 else "."))


# --- Enrolments -----------------------------------------------------------------------------


class EnrolmentRefuseForm(Form):
    reason = forms.CharField(
        label="Motif du refus", widget=forms.Textarea(attrs={"rows": 2}), max_length=2000,
        error_messages={"required": REASON_REQUIRED})

    def __init__(self, *args, enrolment_id: int, **kwargs):
        kwargs.setdefault("auto_id", f"id_refus_inscription_{enrolment_id}_%s")
        super().__init__(*args, **kwargs)


def _render_enrolments(request, *, forms_by_id: dict | None = None, status: int = 200):
    pending = list(selectors.pending_enrolments())
    forms_by_id = forms_by_id or {}
    for enrolment in pending:
        enrolment.refuse_form = forms_by_id.get(enrolment.pk) or EnrolmentRefuseForm(enrolment_id=enrolment.pk)
    awaiting = list(selectors.enrolments_awaiting_adhesion())
    for enrolment in awaiting:
        enrolment.amount = format_cents(enrolment.adhesion_amount_cents)
    return render(request, "booking/staff/enrolments.html", {
        "pending": pending,
        "awaiting": awaiting,
        "may_decide": _may(request.user, DECIDE_ROLES),
        "may_mark_paid": _may(request.user, ADHESION_ROLES),
        "decide_roles": _roles_text(DECIDE_ROLES),
        "adhesion_roles": _roles_text(ADHESION_ROLES),
    }, status=status)


@staff_required
def enrolments(request):
    return _render_enrolments(request)


def _enrolment_label(enrolment: Enrolment) -> str:
    return f"{enrolment.child.first_name} {enrolment.child.last_name} – {enrolment.service.label} ({enrolment.period.label})"


def _load_enrolment(enrolment_id) -> Enrolment:
    return get_object_or_404(Enrolment.objects.select_related("child", "service", "period"), pk=enrolment_id)


@require_POST
@staff_required(roles=DECIDE_ROLES)
def enrolment_accept(request, enrolment_id):
    enrolment = _load_enrolment(enrolment_id)
    try:
        enrolment_decide(staff=request.user, enrolment_id=enrolment.pk, accept=True)
    except EnrolmentRefused as error:
        messages.warning(request, f"{_enrolment_label(enrolment)} : {error}")
    else:
        messages.success(request, f"Inscription acceptée : {_enrolment_label(enrolment)}.")
    return redirect("booking_staff:enrolments")


@require_POST
@staff_required(roles=DECIDE_ROLES)
def enrolment_refuse(request, enrolment_id):
    enrolment = _load_enrolment(enrolment_id)
    form = EnrolmentRefuseForm(request.POST, enrolment_id=enrolment.pk)
    if not form.is_valid():
        return _render_enrolments(request, forms_by_id={enrolment.pk: form})
    try:
        enrolment_decide(staff=request.user, enrolment_id=enrolment.pk, accept=False,
                         reason=form.cleaned_data["reason"])
    except EnrolmentRefused as error:
        messages.warning(request, f"{_enrolment_label(enrolment)} : {error}")
    else:
        messages.success(request, f"Inscription refusée : {_enrolment_label(enrolment)}.")
    return redirect("booking_staff:enrolments")


@require_POST
@staff_required(roles=ADHESION_ROLES)
def enrolment_adhesion_paid(request, enrolment_id):
    enrolment = _load_enrolment(enrolment_id)
    if enrolment.adhesion != Enrolment.Adhesion.AWAITING_PAYMENT:
        messages.warning(request, f"{_enrolment_label(enrolment)} : aucune adhésion à payer "
                                  f"({enrolment.get_adhesion_display().lower()}).")
    else:
        adhesion_paid(actor=request.user, enrolment_id=enrolment.pk, source="guichet")
        messages.success(request, f"Adhésion de {format_cents(enrolment.adhesion_amount_cents)} payée au guichet : "
                                  f"{_enrolment_label(enrolment)}."
                         + (" Les réservations sont ouvertes." if enrolment.status == Enrolment.Status.ACCEPTED
                            else ""))
    return redirect(_back(request, reverse("booking_staff:enrolments")))


# --- Children expected, attendance ------------------------------------------------------------


@dataclass
class ListChoice:
    establishment: Establishment | None
    unit: Unit | None
    day: date
    units: list[Unit]
    errors: dict[str, str]
    notice: str = ""  # the unit asked for is not one of the establishment's: the first one is shown

    @property
    def valid(self) -> bool:
        return not self.errors and self.unit is not None

    @property
    def query(self) -> str:
        return urlencode({"etablissement": self.establishment.pk if self.establishment else "",
                          "unite": self.unit.pk if self.unit else "", "jour": self.day.isoformat()})


def _list_choice(params, establishments) -> ListChoice:
    errors, notice = {}, ""
    by_id = {e.pk: e for e in establishments}
    establishment = None
    raw = params.get("etablissement", "")
    if raw:
        establishment = by_id.get(_int(raw))
        if establishment is None:
            errors["etablissement"] = "Établissement inconnu : choisissez-en un dans la liste."
    elif establishments:
        establishment = establishments[0]
    units = (list(Unit.objects.active().filter(service_id=establishment.service_id).order_by("position", "code"))
             if establishment else [])
    unit = units[0] if units else None
    raw = params.get("unite", "")
    if raw and establishment is not None:
        asked = next((u for u in units if u.pk == _int(raw)), None)
        if asked is not None:
            unit = asked
        elif unit is not None:
            notice = (f"L'unité choisie n'existe pas pour « {establishment.label} » : "
                      f"la liste de l'unité « {unit.label} » est affichée.")
    if establishment is not None and unit is None:
        errors["unite"] = f"« {establishment.label} » n'a aucune unité ouverte."
    day = clock.today(commune_tz())
    raw = params.get("jour", "")
    if raw:
        parsed = _date(raw)
        if parsed is None:
            errors["jour"] = "Date invalide : choisissez un jour (jj/mm/aaaa)."
        else:
            day = parsed
    return ListChoice(establishment, unit, day, units, errors, notice)


def _health(request, rows, context: str) -> bool:
    """Whether PAI flags may be shown; when they are, the read is recorded per child (as on
    the family page). The role-level check of backoffice.services (the same rule as
    families.permissions.can_read_health_data for staff) avoids one query per child."""
    return reveal_health_data(staff=request.user, children=[r.child for r in rows], context=context)


@staff_required
def expected(request):
    establishments = selectors.active_establishments()
    params = request.POST if request.method == "POST" else request.GET
    choice = _list_choice(params, establishments)
    if request.method == "GET" and request.GET.get("format") == "csv" and choice.valid:
        return _expected_csv(request, choice)
    posted, errors, add_error = {}, {}, ""
    if request.method == "POST":
        refused = deny(request, ATTENDANCE_ROLES)
        if refused is not None:
            return refused
        if not choice.valid or choice.notice:
            raise Http404("Établissement, unité ou jour introuvable")
        adding = request.POST.get("action") == "ajouter"
        entries = _posted_entries(request.POST, adding)
        posted = {e.child_id: e for e in entries} if not adding else {}
        if adding and not entries:
            add_error = "Choisissez l'enfant présent sans réservation."
        else:
            try:
                result = attendance_record(staff=request.user, establishment=choice.establishment, unit=choice.unit,
                                           day=choice.day, entries=entries)
            except AttendanceRejected as rejected:
                if adding:
                    add_error = " ".join(rejected.errors.values())
                else:
                    errors = rejected.errors
            else:
                if adding:
                    messages.success(request, "Enfant ajouté comme présent sans réservation.")
                elif result.changed:
                    messages.success(request, f"Présences enregistrées ({result.changed} modification"
                                              f"{'s' if result.changed > 1 else ''}).")
                else:
                    messages.info(request, "Présences déjà à jour : rien n'a changé.")
                return redirect(f"{reverse('booking_staff:expected')}?{choice.query}")
    rows = selectors.expected_children(choice.establishment, choice.unit, choice.day) if choice.valid else []
    show_health = _health(request, rows, HEALTH_CONTEXT) if rows else False
    candidates = (selectors.unbooked_candidates(choice.establishment, choice.day, exclude={r.child.pk for r in rows})
                  if choice.valid else [])
    printable = request.GET.get("format") == "impression"
    return render(request, "booking/staff/expected_print.html" if printable else "booking/staff/expected.html", {
        "choice": choice,
        "establishments": establishments,
        "rows": [_row_view(row, posted.get(row.child.pk), errors.get(row.child.pk)) for row in rows],
        "sheet_error": errors.get(0, ""),
        "show_health": show_health,
        "candidates": candidates,
        "add_error": add_error,
        "added_child": _int(request.POST.get("enfant_sans_reservation")) if request.method == "POST" else None,
        "may_record": _may(request.user, ATTENDANCE_ROLES),
        "attendance_roles": _roles_text(ATTENDANCE_ROLES),
        "day_label": format_date(choice.day),
        "is_future": choice.day > clock.today(commune_tz()),
        "counts": _counts(rows),
    }, status=200)


def _posted_entries(post, adding: bool) -> list[AttendanceEntry]:
    if adding:
        child = _int(post.get("enfant_sans_reservation"))
        return [AttendanceEntry(child, Attendance.Status.UNBOOKED)] if child else []
    entries = []
    for child in dict.fromkeys(i for i in (_int(v) for v in post.getlist("enfants")) if i):
        if f"statut_{child}" not in post:
            continue  # no choice offered or made for this child: leave what is recorded alone
        entries.append(AttendanceEntry(child, post.get(f"statut_{child}", ""), post.get(f"motif_{child}", "")))
    return entries


@dataclass
class RowView:
    row: selectors.ExpectedChild
    status: str
    reason: str
    error: str | None
    options: list[tuple[str, str]]

    @property
    def status_label(self) -> str:
        return dict(Attendance.Status.choices).get(self.status, "Non pointé")


BOOKED_OPTIONS = [("", "Non pointé"), (Attendance.Status.PRESENT, "Présent"), (Attendance.Status.ABSENT, "Absent"),
                  (Attendance.Status.EXCUSED, "Absent excusé")]
UNBOOKED_OPTIONS = [(Attendance.Status.UNBOOKED, "Présent sans réservation"), ("", "Retirer de la liste")]


def _row_view(row: selectors.ExpectedChild, posted: AttendanceEntry | None, error: str | None) -> RowView:
    status = posted.status if posted else row.attendance_status
    reason = posted.reason if posted else row.attendance_reason
    return RowView(row=row, status=status, reason=reason, error=error,
                   options=BOOKED_OPTIONS if row.booking is not None else UNBOOKED_OPTIONS)


def _counts(rows) -> dict[str, int]:
    return {
        "expected": sum(1 for r in rows if r.booking is not None),
        "flagged": sum(1 for r in rows if r.flagged),
        "unbooked": sum(1 for r in rows if r.booking is None),
        "present": sum(1 for r in rows if r.attendance_status in (Attendance.Status.PRESENT,
                                                                  Attendance.Status.UNBOOKED)),
    }


CSV_HEADER = ["Nom", "Prénom", "Date de naissance", "Classe", "Famille", "Réservation", "N° de réservation",
              "Régime alimentaire", "PAI", "Téléphones d'urgence", "Présence", "Motif"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    """A CSV cell a spreadsheet will not run as a formula (phone numbers like +33… kept)."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not text.replace(" ", "").lstrip("+").isdigit():
        return "'" + text
    return text


def _expected_csv(request, choice: ListChoice) -> HttpResponse:
    rows = selectors.expected_children(choice.establishment, choice.unit, choice.day)
    show_health = _health(request, rows, HEALTH_CONTEXT_CSV) if rows else False
    buffer = io.StringIO()
    buffer.write("\ufeff")  # BOM: Excel reads UTF-8
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow(CSV_HEADER)
    for row in rows:
        child = row.child
        writer.writerow([_cell(v) for v in (
            child.last_name, child.first_name, f"{child.birth_date:%d/%m/%Y}", child.get_school_level_display(),
            row.family_reference, row.booking_label, row.booking.reservation.number if row.booking else "",
            row.diet, ("Oui" if row.pai else "Non") if show_health else "voir la fiche",
            " ; ".join(row.phones), dict(Attendance.Status.choices).get(row.attendance_status, ""),
            row.attendance_reason)])
    response = HttpResponse(buffer.getvalue().encode("utf-8"), content_type="text/csv; charset=utf-8")
    filename = f"presences-{choice.establishment.code}-{choice.unit.code}-{choice.day.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- Simulation ---------------------------------------------------------------------------------


VIEWS = {"semaine": "Semaine", "quinzaine": "Quinzaine", "mois": "Mois"}


def _family_id(raw: str) -> int | None:
    raw = (raw or "").strip()
    if raw[:1] in ("F", "f"):
        raw = raw[1:]
    return _int(raw)


def _parse_when(raw: str, tz) -> datetime | None:
    try:
        naive = datetime.strptime(raw.strip(), "%Y-%m-%dT%H:%M")
    except ValueError:
        return None
    return local_instant(naive.date(), naive.time(), tz)


@dataclass
class SimulatedDay:
    label: str
    weekend: bool
    cells: list  # (selectors.Cell, price label)


@staff_required
def simulate(request):
    tz = commune_tz()
    params = request.GET
    errors: dict[str, str] = {}
    now_local = clock.local_now(tz).replace(second=0, microsecond=0)
    when = now_local
    if params.get("quand"):
        when = _parse_when(params["quand"], tz)
        if when is None:
            errors["quand"] = "Date et heure invalides : indiquez une date et une heure (jj/mm/aaaa hh:mm)."
            when = now_local
    family = enrolment = None
    child_id = _int(params.get("enfant"))
    if params.get("inscription"):
        try:
            enrolment = selectors.enrolment_for_simulation(_int(params["inscription"]) or 0)
        except Enrolment.DoesNotExist:
            errors["inscription"] = "Inscription introuvable."
        else:
            if child_id and enrolment.child_id != child_id:
                errors["inscription"] = "Cette inscription n'est pas celle de l'enfant choisi."
                enrolment = None
    family_id = _family_id(params.get("famille", ""))
    if enrolment is not None and family_id and enrolment.child.family_id != family_id:
        errors["inscription"] = "Cette inscription n'est pas celle d'un enfant de la famille choisie."
        enrolment = None
    if enrolment is not None and not family_id:
        family_id = enrolment.child.family_id
    if params.get("famille") and family_id is None:
        errors["famille"] = "Indiquez le numéro de la famille (par exemple F000123 ou 123)."
    if family_id:
        try:
            family = selectors.family_with_enrolments(family_id)
        except Family.DoesNotExist:
            errors["famille"] = "Famille introuvable."
    children = list(family.children.all()) if family else []
    if child_id and family and child_id not in {c.pk for c in children}:
        errors["enfant"] = "Cet enfant n'est pas de la famille choisie."
    if enrolment is None and not errors.get("inscription") and children:
        # One enrolment for the chosen child (or the family's only one): show it directly.
        candidates = [e for c in children if not child_id or c.pk == child_id for e in c.live_enrolments]
        if len(candidates) == 1:
            enrolment = selectors.enrolment_for_simulation(candidates[0].pk)
    view = params.get("vue") if params.get("vue") in VIEWS else "mois"
    anchor = _date(params.get("jour", "")) or when.date()
    rows, start, end = [], None, None
    if enrolment is not None:
        start, end = view_range(anchor, view)
        rows = planning(enrolment, start, end, now=when)
    base = {"famille": family.reference if family else params.get("famille", ""),
            "enfant": child_id or "", "inscription": enrolment.pk if enrolment else "",
            "quand": when.strftime("%Y-%m-%dT%H:%M"), "vue": view}
    navigation = {}
    if start is not None:
        step = {"semaine": 7, "quinzaine": 14}.get(view)
        previous_anchor = start - timedelta(days=step) if step else (start - timedelta(days=1)).replace(day=1)
        next_anchor = end + timedelta(days=1)
        navigation = {"previous": urlencode({**base, "jour": previous_anchor.isoformat()}),
                      "next": urlencode({**base, "jour": next_anchor.isoformat()})}
    return render(request, "booking/staff/simulate.html", {
        "errors": errors,
        "family": family,
        "children": children,
        "child_id": child_id,
        "enrolment": enrolment,
        "when": when,
        "when_value": when.strftime("%Y-%m-%dT%H:%M"),
        "when_label": format_datetime(when, tz=tz),
        "famille_value": family.reference if family else params.get("famille", ""),
        "view": view,
        "views": VIEWS,
        "units": [cell.unit for cell in rows[0].cells] if rows else [],
        "rows": [SimulatedDay(format_date(row.day, year=False), row.day.weekday() >= 5,
                              [(cell, format_cents(cell.price_cents)) for cell in row.cells]) for row in rows],
        "range_label": f"du {format_date(start)} au {format_date(end)}" if start else "",
        "navigation": navigation,
        "base_query": urlencode(base),
    })
