"""Who may call the families' API: the rules are families.permissions, the web's own."""

from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import BasePermission

from marelle.families.permissions import family_of

# Token first: an anonymous call then gets 401 with "WWW-Authenticate: Token", which tells
# an app what to send; a browser session (with its CSRF token) works as well.
AUTHENTICATION_CLASSES = [TokenAuthentication, SessionAuthentication]

FAMILIES_ONLY = "Cet espace est réservé aux familles."


def request_family(request):
    """The caller's family (None for staff, anonymous or a closed account), looked up once
    per request."""
    if not hasattr(request, "_marelle_family"):
        request._marelle_family = family_of(request.user)
    return request._marelle_family


class IsFamily(BasePermission):
    """The account holds an active family; staff and operators are refused (403)."""

    message = FAMILIES_ONLY

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated) and request_family(request) is not None
