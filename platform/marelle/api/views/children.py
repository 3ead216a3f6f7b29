from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from marelle.api.serializers import (
    AuthorisationSerializer,
    AuthorisationsInputSerializer,
    ChangeRequestSerializer,
    ChildCreateSerializer,
    ChildInputSerializer,
    ChildSerializer,
    ContactInputSerializer,
    ContactSerializer,
    HealthSerializer,
    PendingChangesSerializer,
)
from marelle.api.validation import families_forms, form_errors
from marelle.api.views.base import (
    COMMON_ERRORS,
    INPUT_ERRORS,
    NOT_FOUND,
    FamilyApi,
    pending_response,
)
from marelle.catalog.models import AuthorisationType
from marelle.families.models import Child, ChildHealth
from marelle.families.permissions import can_read_health_data, child_of_family
from marelle.families.services import (
    authorisations_save,
    child_create,
    child_touch_consent,
    contact_delete,
    contact_save,
    record_change,
)

CHILDREN = "Enfants"
HEALTH = "Santé"
CONTACTS = "Personnes à contacter"
AUTHORISATIONS = "Autorisations"

HEALTH_FORBIDDEN = "Vous n'avez pas accès aux renseignements médicaux de cet enfant."

ChildPendingSerializer = inline_serializer("ChildPending", {
    "detail": serializers.CharField(),
    "change_requests": ChangeRequestSerializer(many=True),
    "child": ChildSerializer(),
})


class ChildApi(FamilyApi):
    # An endpoint about one child of the caller's family (another family's id: 404).

    def get_child(self) -> Child:
        return child_of_family(self.family, self.kwargs["child_id"])


class ChildListApi(FamilyApi):
    @extend_schema(tags=[CHILDREN], operation_id="enfants_list", summary="Enfants du foyer",
                   description="Les enfants du foyer, y compris ceux dont l'ajout attend la validation de la "
                               "commune (status pending).",
                   responses={200: ChildSerializer(many=True), **COMMON_ERRORS})
    def get(self, request):
        children = self.family.children.exclude(status=Child.Status.ARCHIVED)
        return Response(ChildSerializer(children, many=True).data)

    @extend_schema(
        tags=[CHILDREN], operation_id="enfants_create", summary="Ajouter un enfant",
        description="« consent » (J'accepte) est obligatoire ; les renseignements médicaux peuvent être donnés "
                    "dans la même requête. Réponse 201 avec la fiche créée, ou 202 si la commune valide les "
                    "ajouts : l'enfant est alors en attente (status pending) et la demande est jointe.",
        request=ChildCreateSerializer,
        responses={201: ChildSerializer, 202: ChildPendingSerializer, **INPUT_ERRORS, **COMMON_ERRORS},
    )
    def post(self, request):
        serializer = ChildCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        health = data.pop("health", None)
        child, result = child_create(actor=request.user, family=self.family, data=data, health=health)
        child_data = ChildSerializer(child).data
        return (pending_response([result], child=child_data)
                or Response(child_data, status=status.HTTP_201_CREATED))


class ChildDetailApi(ChildApi):
    @extend_schema(tags=[CHILDREN], operation_id="enfants_detail", summary="Fiche d'un enfant",
                   responses={200: ChildSerializer, **COMMON_ERRORS, **NOT_FOUND})
    def get(self, request, child_id):
        return Response(ChildSerializer(self.get_child()).data)

    @extend_schema(
        tags=[CHILDREN], operation_id="enfants_update", summary="Modifier la fiche d'un enfant",
        description="Seuls les champs envoyés changent ; « consent » (J'accepte) est obligatoire. Réponse 200 "
                    "avec la fiche à jour, ou 202 avec la demande de modification si la commune valide les "
                    "changements.",
        request=ChildInputSerializer,
        responses={200: ChildSerializer, 202: PendingChangesSerializer, **INPUT_ERRORS, **COMMON_ERRORS,
                   **NOT_FOUND},
    )
    def patch(self, request, child_id):
        child = self.get_child()
        serializer = ChildInputSerializer(instance=child, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            result = record_change(actor=request.user, family=self.family, target="child", instance=child,
                                   data=serializer.validated_data)
            child_touch_consent(child=child)
        child.refresh_from_db()
        return pending_response([result]) or Response(ChildSerializer(child).data)


class ChildHealthApi(ChildApi):
    def get_health(self) -> ChildHealth:
        child = self.get_child()
        if not can_read_health_data(self.request.user, child):
            raise PermissionDenied(HEALTH_FORBIDDEN)
        try:
            return child.health
        except ChildHealth.DoesNotExist:
            # Every child gets its (empty) health record when created; an older row without
            # one reads as empty and is created on the first save.
            return ChildHealth(child=child)

    @extend_schema(tags=[HEALTH], operation_id="enfants_sante_detail", summary="Renseignements médicaux",
                   description="Tous les vaccins, maladies et allergies connus du portail sont listés.",
                   responses={200: HealthSerializer, **COMMON_ERRORS, **NOT_FOUND})
    def get(self, request, child_id):
        return Response(HealthSerializer(self.get_health()).data)

    @extend_schema(
        tags=[HEALTH], operation_id="enfants_sante_update", summary="Modifier les renseignements médicaux",
        description="Seuls les champs envoyés changent (un vaccin, une maladie ou une allergie non envoyé garde "
                    "sa valeur) ; « consent » (J'accepte) est obligatoire. Réponse 200, ou 202 si la commune "
                    "valide les changements.",
        request=HealthSerializer,
        responses={200: HealthSerializer, 202: PendingChangesSerializer, **INPUT_ERRORS, **COMMON_ERRORS,
                   **NOT_FOUND},
    )
    def patch(self, request, child_id):
        health = self.get_health()
        serializer = HealthSerializer(instance=health, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            if health.pk is None:
                health, _created = ChildHealth.objects.get_or_create(child=health.child)
            result = record_change(actor=request.user, family=self.family, target="health", instance=health,
                                   data=serializer.validated_data)
            child_touch_consent(child=health.child)
        health.refresh_from_db()
        return pending_response([result]) or Response(HealthSerializer(health).data)


class ContactListApi(ChildApi):
    @extend_schema(tags=[CONTACTS], operation_id="enfants_contacts_list",
                   summary="Personnes à contacter et autorisées à venir chercher l'enfant",
                   responses={200: ContactSerializer(many=True), **COMMON_ERRORS, **NOT_FOUND})
    def get(self, request, child_id):
        return Response(ContactSerializer(self.get_child().contacts.all(), many=True).data)

    @extend_schema(tags=[CONTACTS], operation_id="enfants_contacts_create", summary="Ajouter une personne",
                   description="Appliqué immédiatement, sans validation de la commune.",
                   request=ContactInputSerializer,
                   responses={201: ContactSerializer, **INPUT_ERRORS, **COMMON_ERRORS, **NOT_FOUND})
    def post(self, request, child_id):
        child = self.get_child()
        serializer = ContactInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        contact = contact_save(actor=request.user, child=child, contact=None, data=serializer.validated_data)
        return Response(ContactSerializer(contact).data, status=status.HTTP_201_CREATED)


class ContactDetailApi(ChildApi):
    def get_contact(self):
        child = self.get_child()
        try:
            return child.contacts.get(pk=self.kwargs["contact_id"])
        except child.contacts.model.DoesNotExist:
            raise Http404("Personne introuvable.") from None

    @extend_schema(tags=[CONTACTS], operation_id="enfants_contacts_update", summary="Modifier une personne",
                   description="Seuls les champs envoyés changent.", request=ContactInputSerializer,
                   responses={200: ContactSerializer, **INPUT_ERRORS, **COMMON_ERRORS, **NOT_FOUND})
    def patch(self, request, child_id, contact_id):
        contact = self.get_contact()
        serializer = ContactInputSerializer(instance=contact, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        contact = contact_save(actor=request.user, child=contact.child, contact=contact,
                               data=serializer.validated_data)
        return Response(ContactSerializer(contact).data)

    @extend_schema(tags=[CONTACTS], operation_id="enfants_contacts_delete", summary="Retirer une personne",
                   request=None,
                   responses={204: OpenApiResponse(description="Supprimée."), **COMMON_ERRORS, **NOT_FOUND})
    def delete(self, request, child_id, contact_id):
        contact_delete(actor=request.user, contact=self.get_contact())
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuthorisationListApi(ChildApi):
    def answers(self, child):
        types = list(AuthorisationType.objects.active())
        answered = {a.authorisation_type_id: a for a in child.authorisations.all()}
        rows = []
        for kind in types:
            answer = answered.get(kind.pk)
            rows.append({"code": kind.code, "label": kind.label, "description": kind.description,
                         "answer": answer.answer if answer else None,
                         "answered_at": answer.answered_at if answer else None})
        return types, rows

    @extend_schema(tags=[AUTHORISATIONS], operation_id="enfants_autorisations_list",
                   summary="Autorisations de l'enfant",
                   description="Une ligne par autorisation proposée par la commune, avec la réponse donnée.",
                   responses={200: AuthorisationSerializer(many=True), **COMMON_ERRORS, **NOT_FOUND})
    def get(self, request, child_id):
        _types, rows = self.answers(self.get_child())
        return Response(AuthorisationSerializer(rows, many=True).data)

    @extend_schema(
        tags=[AUTHORISATIONS], operation_id="enfants_autorisations_update",
        summary="Répondre aux autorisations",
        description="Une réponse (oui, non, non_concerne) pour chaque autorisation proposée par la commune, "
                    "désignée par son code.",
        request=AuthorisationsInputSerializer,
        responses={200: AuthorisationSerializer(many=True), **INPUT_ERRORS, **COMMON_ERRORS, **NOT_FOUND},
    )
    def put(self, request, child_id):
        child = self.get_child()
        serializer = AuthorisationsInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        types, _rows = self.answers(child)
        sent = serializer.validated_data["answers"]
        by_code = {kind.code: kind for kind in types}
        unknown = sorted(set(sent) - set(by_code))
        form = families_forms().AuthorisationsForm(
            data={f"auth_{by_code[code].pk}": answer for code, answer in sent.items() if code in by_code},
            types=types)
        errors = {} if form.is_valid() else form_errors(
            form, rename=lambda name: ("answers", next(k.code for k in types if f"auth_{k.pk}" == name)))
        for code in unknown:
            errors.setdefault("answers", {})[code] = ["Autorisation inconnue dans cette commune."]
        if errors:
            raise serializers.ValidationError(errors)
        authorisations_save(actor=request.user, child=child, answers=form.answers())
        _types, rows = self.answers(child)
        return Response(AuthorisationSerializer(rows, many=True).data)
