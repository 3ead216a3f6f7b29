"""The booking API for families' apps: enrolments, planning, réservations.

Thin views: who may see what is marelle.families.permissions (through the families' API's
IsFamily), every rule is marelle.booking.services / selectors. Another family's child,
enrolment or réservation is a 404 (ids reveal nothing); staff get 403; anonymous 401.

Submission (POST …/reservations/) is all-or-nothing. With an ``Idempotency-Key`` header, a
retry of the same request by the same account returns the réservation of the first attempt
(200, header ``Idempotent-Replayed: true``) and never books twice, even when the retry
races the first attempt (the database decides: the key's unique index and the index of a
child's live bookings). A key already used for a different request is a 409.
"""

from __future__ import annotations

from django.db.models import F, Prefetch, prefetch_related_objects
from django.http import Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marelle.api.permissions import AUTHENTICATION_CLASSES, IsFamily, request_family
from marelle.booking.models import Booking, Enrolment, Reservation
from marelle.booking.selectors import planning
from marelle.booking.serializers import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    EnrolmentSerializer,
    ErrorSerializer,
    PlanningQuerySerializer,
    PlanningSerializer,
    ReservationInputSerializer,
    ReservationRejectedSerializer,
    ReservationSerializer,
    plain_changes,
    reservation_data,
)
from marelle.booking.services import Change, ReservationRejected, reservation_submit
from marelle.booking.statements import (
    enrolment_from_rows,
    enrolment_of_family,
    token_and_enrolment_sql,
)
from marelle.catalog.models import Unit
from marelle.families.models import Child
from marelle.families.permissions import child_of_family

ENROLMENTS = "Inscriptions"
PLANNING = "Planning"
RESERVATIONS = "Réservations"

ENROLMENT_NOT_FOUND = "Inscription introuvable"
RESERVATION_NOT_FOUND = "Réservation introuvable"
REJECTED = ("Réservation refusée : aucune ligne n'a été enregistrée. Corrigez ou retirez les lignes "
            "ci-dessous, puis envoyez de nouveau la demande.")
KEY_REUSED = ("Cette clé Idempotency-Key a déjà servi pour une autre demande (réservation {number}) : "
              "utilisez une nouvelle clé pour une nouvelle demande.")
IDEMPOTENCY_HEADER = "Idempotency-Key"
SENT_ACTIONS = {"book": "reserver", "cancel": "annuler"}  # the API's words for Change.action
REPLAYED_HEADER = "Idempotent-Replayed"

COMMON_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="Non authentifié (en-tête « Authorization: Token … » "
                                                      "absent ou invalide)."),
    403: OpenApiResponse(ErrorSerializer, description="Compte sans espace famille (agents de la commune)."),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="Introuvable dans ce foyer.")}
INPUT_ERRORS = {400: OpenApiResponse(description="Données mal formées : un message en français par champ "
                                                 "(et par ligne, dans l'ordre envoyé).")}


# --- Base --------------------------------------------------------------------------------------

class BookingApi(APIView):
    # An endpoint of a family's own space: token or session (with CSRF), an active family.
    parser_classes = [JSONParser]
    authentication_classes = AUTHENTICATION_CLASSES
    permission_classes = [IsAuthenticated, IsFamily]
    _NOT_READ = object()
    _enrolment_read = _NOT_READ

    # The views of one enrolment have the API token's statement read that enrolment too
    # (FamilyTokenAuthentication): one statement less per planning or booking. Who may see
    # which enrolment does not change: it is the enrolment of the token's family, as
    # statements.enrolment_of_family reads it.

    def token_statement(self, schema, key):
        if "enrolment_id" not in self.kwargs:
            return None
        return token_and_enrolment_sql(schema), [self.kwargs["enrolment_id"], Child.Status.ARCHIVED, key]

    def read_with_token(self, rows, offset, family):
        self._enrolment_read = enrolment_from_rows(rows, offset, family) if family is not None else None

    @property
    def family(self):
        return request_family(self.request)

    def get_child(self) -> Child:
        return child_of_family(self.family, self.kwargs["child_id"])

    def get_enrolment(self) -> Enrolment:
        enrolment = self._enrolment_read
        if enrolment is self._NOT_READ:  # a session, not a token
            enrolment = enrolment_of_family(self.family, self.kwargs["enrolment_id"])
        if enrolment is None:
            raise Http404(ENROLMENT_NOT_FOUND)
        return enrolment


# Labels are read by joins into plain attributes rather than select_related(): a list of 20
# réservations then builds 40 model instances instead of 160 (a third of its CPU time).
LINES = Booking.objects.annotate(unit_code=F("unit__code"), unit_label=F("unit__label"))  # ordered by day
HISTORY_LENGTH = 50


def reservations_with_lines():
    return (Reservation.objects.annotate(service_label=F("enrolment__service__label"),
                                         period_label=F("enrolment__period__label"))
            .prefetch_related(Prefetch("lines", queryset=LINES, to_attr="line_list")))


# --- Enrolments ----------------------------------------------------------------------------------


class ChildEnrolmentListApi(BookingApi):
    @extend_schema(
        tags=[ENROLMENTS], operation_id="enfants_inscriptions_list", summary="Inscriptions d'un enfant",
        description="Les inscriptions de l'enfant (toutes, avec leur état), chacune avec ses unités "
                    "réservables. « booking_open » dit si des jours peuvent être réservés.",
        responses={200: EnrolmentSerializer(many=True), **COMMON_ERRORS, **NOT_FOUND},
    )
    def get(self, request, child_id):
        child = self.get_child()
        enrolments = (Enrolment.objects.filter(child=child)
                      .select_related("service", "establishment", "period")
                      .prefetch_related(Prefetch("service__units", to_attr="active_units",
                                                 queryset=Unit.objects.active().order_by("position", "code")))
                      .order_by("-period__start", "service__position", "pk"))
        return Response(EnrolmentSerializer(enrolments, many=True).data)


# --- Planning ------------------------------------------------------------------------------------


class PlanningApi(BookingApi):
    @extend_schema(
        tags=[PLANNING], operation_id="inscriptions_planning", summary="Planning de l'enfant pour une inscription",
        description="Une case par jour et par unité, du « du » au « au » inclus (62 jours au plus) : son état "
                    "(libre, reserve, demande, attente, refuse, annulation_demandee, ferme, complet, "
                    "verrouille), son libellé, et en clair jusqu'à quand réserver ou annuler, ou pourquoi le "
                    "jour est verrouillé ; le prix selon le quotient familial.",
        parameters=[PlanningQuerySerializer],
        responses={200: PlanningSerializer, **INPUT_ERRORS, **COMMON_ERRORS, **NOT_FOUND},
    )
    def get(self, request, enrolment_id):
        enrolment = self.get_enrolment()
        query = PlanningQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end = query.validated_data["du"], query.validated_data["au"]
        cells = [cell for row in planning(enrolment, start, end) for cell in row.cells]
        return Response(PlanningSerializer({"enrolment": enrolment.pk, "du": start, "au": end,
                                            "cells": cells}).data)


# --- Réservations --------------------------------------------------------------------------------


def idempotency_key(request) -> str:
    key = (request.headers.get(IDEMPOTENCY_HEADER) or "").strip()
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise serializers.ValidationError({IDEMPOTENCY_HEADER: [
            f"La clé ne doit pas dépasser {IDEMPOTENCY_KEY_MAX_LENGTH} caractères ({len(key)} reçus)."]})
    return key


def _same_request(reservation: Reservation, changes: list[Change]) -> bool:
    sent = {(c.day, c.unit, c.action) for c in changes}
    return sent == {(line.day, line.unit_code, line.action) for line in reservation.line_list}


def _payment_due(request, enrolment: Enrolment, reservation: Reservation) -> dict | None:
    from marelle.billing.baskets import is_prepaid, open_basket_for

    basket = open_basket_for(reservation) if is_prepaid(enrolment.service) else None
    if basket is None:
        return None
    return {"amount_cents": basket.invoice.total_cents, "pay_before": basket.expires_at,
            "url": request.build_absolute_uri(reverse("billing:baskets"))}


def rejection(rejected: ReservationRejected) -> Response:
    """422 with ReservationRejectedSerializer's shape (built directly, like reservation_data)."""
    lines = [{"jour": p.change.day.isoformat(), "unite": p.change.unit,
              "action": SENT_ACTIONS.get(p.change.action, p.change.action), "motif": p.reason}
             for p in rejected.problems]
    return Response({"detail": REJECTED, "lignes": lines}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)


SUBMISSION_EXAMPLE = OpenApiExample(
    "Une semaine de cantine", request_only=True,
    value={"lignes": [{"jour": "2026-09-14", "unite": "repas", "action": "reserver"},
                      {"jour": "2026-09-15", "unite": "repas", "action": "reserver"},
                      {"jour": "2026-09-18", "unite": "repas", "action": "annuler"}]})
REJECTED_EXAMPLE = OpenApiExample(
    "Un jour hors délai", response_only=True, status_codes=["422"],
    value={"detail": REJECTED, "lignes": [{
        "jour": "2026-09-08", "unite": "repas", "action": "reserver",
        "motif": "Réservation impossible pour le mardi 8 septembre 2026 : le délai (jeudi 3 septembre à 12:00, "
                 "« S-1 jeudi 12:00 ») est dépassé."}]})


class EnrolmentReservationCreateApi(BookingApi):
    @extend_schema(
        tags=[RESERVATIONS], operation_id="inscriptions_reservations_create",
        summary="Réserver ou annuler des jours",
        description="Crée une réservation numérotée avec toutes les lignes, ou aucune : si une ligne est refusée "
                    "(jour fermé, hors période, délai dépassé, unité inconnue, complet, déjà réservé…), rien "
                    "n'est enregistré et la réponse 422 nomme chaque ligne refusée avec la règle en cause.\n\n"
                    "En-tête facultatif « Idempotency-Key » (80 caractères au plus, par exemple un UUID) : "
                    "renvoyer la même demande avec la même clé rend la réservation déjà créée (200, en-tête "
                    "« Idempotent-Replayed: true ») sans jamais réserver deux fois. Une clé déjà utilisée pour "
                    "une autre demande donne 409.",
        parameters=[OpenApiParameter(
            IDEMPOTENCY_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
            description="Clé unique de la demande, choisie par l'application (UUID conseillé), réutilisée telle "
                        "quelle pour un nouvel essai de la même demande.")],
        request=ReservationInputSerializer,
        responses={
            201: ReservationSerializer,
            200: OpenApiResponse(ReservationSerializer, description="Même clé Idempotency-Key : la réservation "
                                                                    "créée par le premier envoi."),
            422: OpenApiResponse(ReservationRejectedSerializer, description="Refusée : chaque ligne en cause "
                                                                            "avec son motif ; rien n'est "
                                                                            "enregistré."),
            409: OpenApiResponse(ErrorSerializer, description="Clé Idempotency-Key déjà utilisée pour une "
                                                              "autre demande."),
            **INPUT_ERRORS, **COMMON_ERRORS, **NOT_FOUND,
        },
        examples=[SUBMISSION_EXAMPLE, REJECTED_EXAMPLE],
    )
    def post(self, request, enrolment_id):
        enrolment = self.get_enrolment()
        key = idempotency_key(request)
        changes = plain_changes(request.data)
        if changes is None:
            serializer = ReservationInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            changes = serializer.changes()
        try:
            reservation = reservation_submit(actor=request.user, enrolment=enrolment, changes=changes,
                                             idempotency_key=key)
        except ReservationRejected as rejected:
            return rejection(rejected)
        replayed = reservation.replayed
        if replayed:
            prefetch_related_objects([reservation], Prefetch("lines", queryset=LINES, to_attr="line_list"))
        else:  # just written: the lines are in memory
            reservation.line_list = reservation.written_lines
            for line in reservation.line_list:
                line.unit_code, line.unit_label = line.unit.code, line.unit.label
        if replayed and (reservation.enrolment_id != enrolment.pk or not _same_request(reservation, changes)):
            return Response({"detail": KEY_REUSED.format(number=reservation.number)},
                            status=status.HTTP_409_CONFLICT)
        reservation.service_label, reservation.period_label = enrolment.service.label, enrolment.period.label
        reservation.payment_due = _payment_due(request, enrolment, reservation)
        data = reservation_data(reservation)
        if replayed:
            return Response(data, status=status.HTTP_200_OK, headers={REPLAYED_HEADER: "true"})
        location = reverse("booking_api:reservation", kwargs={"number": reservation.number})
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": location})


class ChildReservationListApi(BookingApi):
    @extend_schema(
        tags=[RESERVATIONS], operation_id="enfants_reservations_list", summary="Réservations d'un enfant",
        description="Historique des réservations de l'enfant, les plus récentes d'abord (50 au plus), avec "
                    "leurs lignes et leur état.",
        responses={200: ReservationSerializer(many=True), **COMMON_ERRORS, **NOT_FOUND},
    )
    def get(self, request, child_id):
        # selectors.reservation_history's 50 latest, with a stable order when two share an instant.
        reservations = (reservations_with_lines().filter(child=self.get_child())
                        .order_by("-created_at", "-pk")[:HISTORY_LENGTH])
        return Response([reservation_data(reservation) for reservation in reservations])


class ReservationDetailApi(BookingApi):
    @extend_schema(
        tags=[RESERVATIONS], operation_id="reservations_detail", summary="Détail d'une réservation",
        description="Par son numéro (par exemple R2026-000001).",
        responses={200: ReservationSerializer, **COMMON_ERRORS, **NOT_FOUND},
    )
    def get(self, request, number):
        try:
            reservation = (reservations_with_lines().exclude(child__status=Child.Status.ARCHIVED)
                           .get(number=number, child__family=self.family))
        except Reservation.DoesNotExist:
            raise Http404(RESERVATION_NOT_FOUND) from None
        return Response(reservation_data(reservation))
