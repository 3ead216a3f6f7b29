from drf_spectacular.utils import OpenApiResponse
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marelle.api.permissions import AUTHENTICATION_CLASSES, IsFamily, request_family
from marelle.api.serializers import ChangeRequestSerializer

PENDING_DETAIL = ("Votre demande a été transmise à la commune : elle sera appliquée après validation "
                  "par ses services.")

COMMON_ERRORS = {
    401: OpenApiResponse(description="Non authentifié (en-tête « Authorization: Token … » absent ou invalide)."),
    403: OpenApiResponse(description="Compte sans espace famille (agents de la commune)."),
}
INPUT_ERRORS = {400: OpenApiResponse(description="Données invalides : un message en français par champ.")}
NOT_FOUND = {404: OpenApiResponse(description="Introuvable dans ce foyer.")}


class FamilyApi(APIView):
    # An endpoint of a family's own space: token or session, and an active family. (No
    # docstrings on views: the schema would publish them.)
    parser_classes = [JSONParser]

    authentication_classes = AUTHENTICATION_CLASSES
    permission_classes = [IsAuthenticated, IsFamily]

    @property
    def family(self):
        return request_family(self.request)


def pending_response(results, **extra) -> Response | None:
    """202 with the change requests filed when the commune validates families' changes;
    None when everything was applied or nothing changed."""
    pending = [result.change_request for result in results if result.outcome == "pending"]
    if not pending:
        return None
    body = {"detail": PENDING_DETAIL, "change_requests": ChangeRequestSerializer(pending, many=True).data, **extra}
    return Response(body, status=status.HTTP_202_ACCEPTED)
