"""Tokens for the families' apps: obtained with the account's e-mail and password, through
django.contrib.auth.authenticate() so that django-axes counts failures and locks out, as
on the web login page."""

from django.contrib.auth import authenticate, get_user_model, user_logged_in
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from marelle.api import services
from marelle.api.permissions import AUTHENTICATION_CLASSES, FAMILIES_ONLY
from marelle.api.serializers import (
    ErrorDetailSerializer,
    TokenInputSerializer,
    TokenOutputSerializer,
)
from marelle.families.permissions import family_of

INVALID_LOGIN = "Adresse e-mail ou mot de passe incorrect."
TAG = "Authentification"


def _lockout_response(request) -> Response:
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    minutes = int(cool_off.total_seconds() // 60) if cool_off else None
    detail = ("Trop de tentatives de connexion : par sécurité, la connexion est bloquée"
              + (f" pendant {minutes} minutes." if minutes else ".")
              + " Vous pouvez réinitialiser votre mot de passe depuis le portail en attendant.")
    headers = {"Retry-After": str(int(cool_off.total_seconds()))} if cool_off else {}
    return Response({"detail": detail}, status=status.HTTP_429_TOO_MANY_REQUESTS, headers=headers)


class TokenApi(APIView):
    # POST: a token for the account (e-mail + password). DELETE: revoke it.

    def get_authenticators(self):
        if self.request is not None and self.request.method == "POST":
            return []  # credentials are in the body; no session, so no CSRF check either
        return [cls() for cls in AUTHENTICATION_CLASSES]

    def get_permissions(self):
        if self.request is not None and self.request.method == "POST":
            return [AllowAny()]
        return [IsAuthenticated()]

    @extend_schema(
        tags=[TAG], operation_id="token_obtain", auth=[],
        summary="Obtenir un jeton d'accès",
        description="Avec l'adresse e-mail et le mot de passe du compte famille. Après plusieurs échecs, "
                    "la connexion est bloquée quelques minutes (429), comme sur le portail.",
        request=TokenInputSerializer,
        responses={
            200: TokenOutputSerializer,
            400: OpenApiResponse(description="Champs manquants, ou adresse e-mail / mot de passe incorrects "
                                             "(compte non activé compris)."),
            403: OpenApiResponse(ErrorDetailSerializer, description="Compte sans espace famille (agents)."),
            429: OpenApiResponse(ErrorDetailSerializer, description="Trop de tentatives : connexion bloquée "
                                                                    "(en-tête Retry-After)."),
        },
    )
    def post(self, request):
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        email = get_user_model().objects.normalize_email(serializer.validated_data["email"])
        # The DRF request, not request._request: django-axes marks the object it is given
        # as locked out, and its middleware would then replace this JSON answer by the
        # web's HTML lockout page.
        user = authenticate(request=request, username=email, password=serializer.validated_data["password"])
        if user is None:
            if getattr(request, "axes_locked_out", False):
                return _lockout_response(request)
            raise serializers.ValidationError({"non_field_errors": [INVALID_LOGIN]})
        if family_of(user) is None:
            return Response({"detail": FAMILIES_ONLY}, status=status.HTTP_403_FORBIDDEN)
        # A successful sign-in, as for the web: last_login, and django-axes resets the
        # account's failure counter.
        user_logged_in.send(sender=user.__class__, request=request, user=user)
        token = services.token_obtain(user=user)
        return Response({"token": token.key})

    @extend_schema(
        tags=[TAG], operation_id="token_revoke", summary="Révoquer le jeton",
        description="Le jeton du compte cesse d'être valide (sur toutes les applications du compte).",
        request=None,
        responses={204: OpenApiResponse(description="Jeton révoqué (ou aucun jeton)."),
                   401: OpenApiResponse(ErrorDetailSerializer, description="Non authentifié.")},
    )
    def delete(self, request):
        services.token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
