from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from marelle.api.serializers import (
    FamilySerializer,
    FamilyUpdateSerializer,
    GuardianCreateSerializer,
    GuardianSerializer,
    PendingChangesSerializer,
)
from marelle.api.views.base import COMMON_ERRORS, INPUT_ERRORS, FamilyApi, pending_response
from marelle.families.models import ChangeRequest, Family
from marelle.families.services import guardian_add, record_change

TAG = "Famille"


def family_profile(family: Family) -> dict:
    family = Family.objects.prefetch_related("guardians").get(pk=family.pk)
    family.pending_changes = list(family.change_requests.filter(status=ChangeRequest.Status.PENDING))
    return FamilySerializer(family).data


class FamilyDetailApi(FamilyApi):
    @extend_schema(tags=[TAG], operation_id="famille_detail", summary="Dossier de la famille",
                   description="Le foyer, ses responsables légaux et les modifications en attente de validation.",
                   responses={200: FamilySerializer, **COMMON_ERRORS})
    def get(self, request):
        return Response(family_profile(self.family))

    @extend_schema(
        tags=[TAG], operation_id="famille_update", summary="Modifier le dossier de la famille",
        description="Seuls les champs envoyés changent. Les responsables sont désignés par leur identifiant. "
                    "Réponse 200 avec le dossier à jour si la modification est appliquée, 202 avec la demande "
                    "de modification si la commune valide les changements.",
        request=FamilyUpdateSerializer,
        responses={200: FamilySerializer, 202: PendingChangesSerializer, **INPUT_ERRORS, **COMMON_ERRORS},
    )
    def patch(self, request):
        family = self.family
        serializer = FamilyUpdateSerializer(instance=family, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        guardians = data.pop("guardians", [])
        with transaction.atomic():
            results = []
            if data:
                results.append(record_change(actor=request.user, family=family, target="family", instance=family,
                                             data=data))
            for guardian, changes in guardians:
                if changes:
                    results.append(record_change(actor=request.user, family=family, target="guardian",
                                                 instance=guardian, data=changes))
        return pending_response(results) or Response(family_profile(family))


class FamilyGuardianCreateApi(FamilyApi):
    @extend_schema(
        tags=[TAG], operation_id="famille_responsables_create", summary="Ajouter le second responsable légal",
        description="Un foyer a au plus deux responsables ; le second n'a pas de compte sur le portail. "
                    "Pour modifier un responsable existant : PATCH /famille/.",
        request=GuardianCreateSerializer,
        responses={201: GuardianSerializer, **INPUT_ERRORS, **COMMON_ERRORS},
    )
    def post(self, request):
        family = self.family
        if family.guardians.filter(position=2).exists():
            raise serializers.ValidationError(
                {"non_field_errors": ["Le foyer a déjà deux responsables légaux : modifiez le second."]})
        serializer = GuardianCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        guardian = guardian_add(actor=request.user, family=family, data=serializer.validated_data)
        return Response(GuardianSerializer(guardian).data, status=status.HTTP_201_CREATED)
