"""Who may call the families' API: the rules are families.permissions, the web's own."""

from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission

from marelle.api.authentication import FAMILY_ATTRIBUTE, FamilyTokenAuthentication
from marelle.families.permissions import family_of

# Token first: an anonymous call then gets 401 with "WWW-Authenticate: Token", which tells
# an app what to send; a browser session (with its CSRF token) works as well.
AUTHENTICATION_CLASSES = [FamilyTokenAuthentication, SessionAuthentication]

FAMILIES_ONLY = "Cet espace est réservé aux familles."


def request_family(request):
    """The caller's family (None for staff, anonymous or a closed account), looked up once
    per request (by the token authentication itself when it was a token)."""
    if not hasattr(request, FAMILY_ATTRIBUTE):
        setattr(request, FAMILY_ATTRIBUTE, family_of(request.user))
    return getattr(request, FAMILY_ATTRIBUTE)


class IsFamily(BasePermission):
    """The account holds an active family; staff and operators are refused (403)."""

    message = FAMILIES_ONLY

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated) and request_family(request) is not None
