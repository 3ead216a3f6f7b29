"""Shapes of the booking API (/api/v1/ on a commune's host).

Responses use the code's English field names, like the families' API; the submission body
uses the French names families' apps were promised (« lignes », « jour », « unite »,
« action », « debut », « fin »). Rules are not here: every decision (deadline, closed day,
unknown unit, capacity) is taken by marelle.booking.services, and these serializers only
check that the input is well-formed. (Comments, not docstrings, on serializers: the
OpenAPI schema publishes docstrings.)
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marelle.booking.models import Booking, Enrolment, Reservation
from marelle.booking.selectors import STATE_LABELS
from marelle.booking.services import Change
from marelle.catalog.models import Unit
from marelle.core import clock

#: Longest planning one call returns (both ends included).
PLANNING_MAX_DAYS = 62
#: Days shown when « au » is not given.
PLANNING_DEFAULT_DAYS = 28
#: Lines in one submission: a whole school year of one unit fits.
MAX_LINES = 400
#: Reservation.idempotency_key's length.
IDEMPOTENCY_KEY_MAX_LENGTH = 80

ACTIONS = {"reserver": "book", "annuler": "cancel"}


def _shown(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "…"


class DayField(serializers.DateField):
    # A calendar day, AAAA-MM-JJ; the error repeats what was sent.

    def __init__(self, **kwargs):
        kwargs.setdefault("input_formats", ["iso-8601"])
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if isinstance(value, str | date):
            try:
                return super().to_internal_value(value)
            except serializers.ValidationError:
                pass
        raise serializers.ValidationError(
            f"« {_shown(value)} » n'est pas une date valide : format attendu AAAA-MM-JJ (par exemple 2026-09-14).")


class ClockTimeField(serializers.TimeField):
    # A time of day, HH:MM; the error repeats what was sent.

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                return super().to_internal_value(value)
            except serializers.ValidationError:
                pass
        raise serializers.ValidationError(
            f"« {_shown(value)} » n'est pas une heure valide : format attendu HH:MM (par exemple 08:30).")


@extend_schema_field(OpenApiTypes.STR)
class LabelField(serializers.Field):
    # The French label of a choice, read from the model's choices: the same text as
    # get_<field>_display(), without DRF calling inspect.signature() on that method for
    # every row (a third of the cost of a list of réservations).

    def __init__(self, choices, **kwargs):
        self.labels = {value: str(label) for value, label in choices}
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value):
        return self.labels.get(value, value)


class StrictSerializer(serializers.Serializer):
    # A misspelled key is an error, not a silently ignored one: the family would believe
    # the line said what it meant.

    def to_internal_value(self, data):
        if isinstance(data, dict):
            expected = [name for name, field in self.fields.items() if not field.read_only]
            unknown = sorted(set(data) - set(expected))
            if unknown:
                message = f"Champ inconnu (champs attendus : {', '.join(expected)})."
                raise serializers.ValidationError({name: [message] for name in unknown})
        return super().to_internal_value(data)


# --- Enrolments -----------------------------------------------------------------------------


class UnitSerializer(serializers.ModelSerializer):
    weekdays = serializers.ListField(
        child=serializers.CharField(), read_only=True,
        help_text=_("Jours où l'unité existe (lundi…dimanche) ; vide : tous les jours d'ouverture du service."))

    class Meta:
        model = Unit
        fields = ["code", "label", "kind", "start_time", "end_time", "step_minutes", "weekdays"]
        read_only_fields = fields


class ServiceRefSerializer(serializers.Serializer):
    code = serializers.CharField(read_only=True)
    label = serializers.CharField(read_only=True)
    kind = serializers.CharField(read_only=True, help_text=_("creche, alsh, periscolaire, cantine, jeunesse"))


class EstablishmentRefSerializer(serializers.Serializer):
    code = serializers.CharField(read_only=True)
    label = serializers.CharField(read_only=True)


class PeriodRefSerializer(serializers.Serializer):
    code = serializers.CharField(read_only=True)
    label = serializers.CharField(read_only=True)
    start = serializers.DateField(read_only=True)
    end = serializers.DateField(read_only=True)


class EnrolmentSerializer(serializers.ModelSerializer):
    child = serializers.IntegerField(source="child_id", read_only=True)
    service = ServiceRefSerializer(read_only=True)
    establishment = EstablishmentRefSerializer(read_only=True)
    period = PeriodRefSerializer(read_only=True)
    status = serializers.ChoiceField(choices=Enrolment.Status.choices, read_only=True)
    status_label = LabelField(Enrolment.Status.choices, source="status")
    adhesion = serializers.ChoiceField(choices=Enrolment.Adhesion.choices, read_only=True)
    adhesion_label = LabelField(Enrolment.Adhesion.choices, source="adhesion")
    booking_open = serializers.BooleanField(
        read_only=True, help_text=_("Les jours peuvent être réservés (inscription acceptée et adhésion payée "
                                    "s'il en faut une)."))
    habitual_days = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), read_only=True,
        help_text=_("Jours de fréquentation habituels : {\"lundi\": [\"repas\"], …}"))
    units = UnitSerializer(source="service.active_units", many=True, read_only=True,
                           help_text=_("Unités réservables (codes à envoyer dans « unite »)."))

    class Meta:
        model = Enrolment
        fields = ["id", "child", "service", "establishment", "period", "status", "status_label", "adhesion",
                  "adhesion_label", "adhesion_amount_cents", "booking_open", "habitual_days", "units",
                  "created_at"]
        read_only_fields = fields


# --- Planning ------------------------------------------------------------------------------


class PlanningQuerySerializer(serializers.Serializer):
    du = DayField(required=False, help_text=_("Premier jour (AAAA-MM-JJ) ; par défaut aujourd'hui."))
    au = DayField(required=False, help_text=_(
        f"Dernier jour, inclus (AAAA-MM-JJ) ; par défaut {PLANNING_DEFAULT_DAYS} jours à partir de « du ». "
        f"{PLANNING_MAX_DAYS} jours au plus."))

    def validate(self, attrs):
        start = attrs.get("du") or clock.today()
        end = attrs.get("au") or start + timedelta(days=PLANNING_DEFAULT_DAYS - 1)
        if end < start:
            raise serializers.ValidationError(
                {"au": [f"Le dernier jour ({end:%d/%m/%Y}) précède le premier ({start:%d/%m/%Y})."]})
        if (end - start).days + 1 > PLANNING_MAX_DAYS:
            raise serializers.ValidationError({"au": [
                f"Du {start:%d/%m/%Y} au {end:%d/%m/%Y} : {(end - start).days + 1} jours demandés, "
                f"{PLANNING_MAX_DAYS} au plus par appel."]})
        return {"du": start, "au": end}


class PlanningCellSerializer(serializers.Serializer):
    day = serializers.DateField(read_only=True)
    unit = serializers.CharField(source="unit.code", read_only=True)
    unit_label = serializers.CharField(source="unit.label", read_only=True)
    state = serializers.ChoiceField(choices=list(STATE_LABELS.items()), read_only=True)
    label = serializers.CharField(read_only=True, help_text=_("L'état en français (Réservé, Fermé…)."))
    hint = serializers.CharField(read_only=True, help_text=_(
        "Pourquoi, en clair : jusqu'à quand réserver ou annuler, ou pourquoi le jour est verrouillé."))
    can_book = serializers.BooleanField(read_only=True)
    can_cancel = serializers.BooleanField(read_only=True)
    price_cents = serializers.IntegerField(read_only=True, help_text=_("Prix unitaire selon le quotient familial."))
    start = serializers.TimeField(read_only=True, allow_null=True, help_text=_("Heure d'arrivée réservée (crèche)."))
    end = serializers.TimeField(read_only=True, allow_null=True, help_text=_("Heure de départ réservée (crèche)."))


class PlanningSerializer(serializers.Serializer):
    enrolment = serializers.IntegerField(read_only=True)
    du = serializers.DateField(read_only=True)
    au = serializers.DateField(read_only=True)
    cells = PlanningCellSerializer(many=True, read_only=True, help_text=_("Une case par jour et par unité."))


# --- Réservations -----------------------------------------------------------------------------


class ReservationLineInputSerializer(StrictSerializer):
    jour = DayField(help_text=_("Le jour (AAAA-MM-JJ)."))
    unite = serializers.CharField(max_length=40, help_text=_("Code de l'unité (voir « units » de l'inscription)."))
    action = serializers.ChoiceField(
        choices=[("reserver", _("Réserver")), ("annuler", _("Annuler"))], default="reserver",
        error_messages={"invalid_choice": "Action « {input} » inconnue : « reserver » ou « annuler »."})
    debut = ClockTimeField(required=False, allow_null=True, help_text=_("Heure d'arrivée (HH:MM), crèche."))
    fin = ClockTimeField(required=False, allow_null=True, help_text=_("Heure de départ (HH:MM), crèche."))


class ReservationInputSerializer(StrictSerializer):
    # A ListField rather than many=True: an empty list is a plain message, and the errors
    # of the lines are keyed by their index ({"1": {"jour": [...]}}), the valid ones omitted.
    lignes = serializers.ListField(
        child=ReservationLineInputSerializer(), allow_empty=False, max_length=MAX_LINES,
        help_text=_(f"Les changements à faire ({MAX_LINES} au plus), tous acceptés ou aucun."))

    def changes(self) -> list[Change]:
        return [Change(day=line["jour"], unit=line["unite"], action=ACTIONS[line["action"]],
                       start=line.get("debut"), end=line.get("fin"))
                for line in self.validated_data["lignes"]]


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_LINE_KEYS = {"jour", "unite", "action", "debut", "fin"}


def plain_changes(data) -> list[Change] | None:
    """The changes of a plain, well-formed submission (days and units, no times), read
    without DRF: its validation builds the serializer's fields anew for every request,
    more than the rest of the parsing. None for anything else — a time, a missing or
    unknown key, a value of the wrong type or shape — which ReservationInputSerializer then
    reads or words the errors of; what is read here is what it would read
    (tests/booking/test_api.py checks both)."""
    if not isinstance(data, dict) or data.keys() != {"lignes"}:
        return None
    lines = data["lignes"]
    if not isinstance(lines, list) or not 0 < len(lines) <= MAX_LINES:
        return None
    changes = []
    for line in lines:
        if not isinstance(line, dict) or not line.keys() <= _LINE_KEYS:
            return None
        day, unit, action = line.get("jour"), line.get("unite"), line.get("action", "reserver")
        if line.get("debut") is not None or line.get("fin") is not None:
            return None
        if not (isinstance(day, str) and _ISO_DAY.fullmatch(day) and isinstance(unit, str)
                and 0 < len(unit) <= 40 and unit.strip() == unit and isinstance(action, str) and action in ACTIONS):
            return None
        try:
            changes.append(Change(day=date.fromisoformat(day), unit=unit, action=ACTIONS[action]))
        except ValueError:
            return None
    return changes


# The two serializers below read the labels the API's queries annotate (unit_code,
# unit_label, service_label, period_label: see booking.api.reservations_with_lines).


class BookingLineSerializer(serializers.ModelSerializer):
    unit = serializers.CharField(source="unit_code", read_only=True)
    unit_label = serializers.CharField(read_only=True)
    action = serializers.ChoiceField(choices=Booking.Action.choices, read_only=True)
    action_label = LabelField(Booking.Action.choices, source="action")
    state = serializers.ChoiceField(choices=Booking.State.choices, read_only=True)
    state_label = LabelField(Booking.State.choices, source="state")
    reason = serializers.CharField(read_only=True, help_text=_("Motif donné par le service (refus)."))

    class Meta:
        model = Booking
        fields = ["id", "day", "unit", "unit_label", "action", "action_label", "state", "state_label",
                  "start_time", "end_time", "unit_price_cents", "surcharge_cents", "late", "reason"]
        read_only_fields = fields


class PaymentDueSerializer(serializers.Serializer):
    amount_cents = serializers.IntegerField(read_only=True)
    pay_before = serializers.DateTimeField(read_only=True, help_text=_(
        "Passé ce moment, les réservations non payées sont libérées."))
    url = serializers.URLField(read_only=True, help_text=_("La page « Paiements à effectuer » du portail."))


class ReservationSerializer(serializers.ModelSerializer):
    child = serializers.IntegerField(source="child_id", read_only=True)
    enrolment = serializers.IntegerField(source="enrolment_id", read_only=True)
    service = serializers.CharField(source="service_label", read_only=True)
    period = serializers.CharField(source="period_label", read_only=True)
    state = serializers.ChoiceField(choices=Reservation.State.choices, read_only=True)
    state_label = LabelField(Reservation.State.choices, source="state")
    total_cents = serializers.IntegerField(read_only=True, help_text=_(
        "Total des lignes (prix et suppléments) ; négatif pour une annulation."))
    lines = BookingLineSerializer(many=True, read_only=True, source="line_list")
    payment_due = PaymentDueSerializer(read_only=True, allow_null=True, default=None, help_text=_(
        "Service payé d'avance : le paiement à faire pour confirmer ces réservations (sinon null)."))

    class Meta:
        model = Reservation
        fields = ["number", "child", "enrolment", "service", "period", "state", "state_label", "total_cents",
                  "created_at", "lines", "payment_due"]
        read_only_fields = fields


def _moment(value):
    # DRF's DateTimeField: in the current time zone, ISO 8601, "Z" for UTC.
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _clock(value):
    return None if value is None else value.isoformat()


def _label(choices, value) -> str:
    # LabelField's answer: the choice's French label, or the value itself if unknown.
    try:
        return str(choices(value).label)
    except ValueError:
        return value


def reservation_data(reservation: Reservation) -> dict:
    """What ``ReservationSerializer(reservation).data`` gives, built directly: DRF builds a
    model serializer's fields anew for every instance, which was a third of a booking's
    CPU. The serializers above stay the API's description (OpenAPI) and
    tests/booking/test_api.py checks that both give the same answer."""
    due = getattr(reservation, "payment_due", None)
    return {
        "number": reservation.number,
        "child": reservation.child_id,
        "enrolment": reservation.enrolment_id,
        "service": reservation.service_label,
        "period": reservation.period_label,
        "state": reservation.state,
        "state_label": _label(Reservation.State, reservation.state),
        "total_cents": reservation.total_cents,
        "created_at": _moment(reservation.created_at),
        "lines": [{
            "id": line.pk,
            "day": line.day.isoformat(),
            "unit": line.unit_code,
            "unit_label": line.unit_label,
            "action": line.action,
            "action_label": _label(Booking.Action, line.action),
            "state": line.state,
            "state_label": _label(Booking.State, line.state),
            "start_time": _clock(line.start_time),
            "end_time": _clock(line.end_time),
            "unit_price_cents": line.unit_price_cents,
            "surcharge_cents": line.surcharge_cents,
            "late": line.late,
            "reason": line.reason,
        } for line in reservation.line_list],
        "payment_due": None if due is None else {
            "amount_cents": due["amount_cents"], "pay_before": _moment(due["pay_before"]), "url": due["url"]},
    }


class RejectedLineSerializer(serializers.Serializer):
    jour = serializers.DateField(read_only=True)
    unite = serializers.CharField(read_only=True)
    action = serializers.CharField(read_only=True, help_text=_("reserver ou annuler"))
    motif = serializers.CharField(read_only=True, help_text=_("La règle qui refuse ce jour, en clair."))


class ReservationRejectedSerializer(serializers.Serializer):
    detail = serializers.CharField(read_only=True)
    lignes = RejectedLineSerializer(many=True, read_only=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(read_only=True)
