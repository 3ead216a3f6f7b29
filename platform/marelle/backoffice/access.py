"""Who may enter the back-office (/gestion/): the commune's staff, by role.

Anonymous visitors are sent to the login page (and come back afterwards); a signed-in
family, or a staff member whose role is not enough for the page, gets a 403 page in French.
Every back-office page is marked ``no-store``: it may carry personal and health data.
"""

from collections.abc import Callable, Iterable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.cache import add_never_cache_headers

from marelle.accounts.models import User
from marelle.families.permissions import is_staff_member

# Used only while the accounts app has not wired its login URL yet.
FALLBACK_LOGIN_PATH = "/compte/connexion/"


def login_url() -> str:
    try:
        return reverse("accounts:login")
    except NoReverseMatch:
        return FALLBACK_LOGIN_PATH


def role_labels(roles: Iterable[str]) -> list[str]:
    labels = dict(User.StaffRole.choices)
    return [str(labels.get(role, role)) for role in roles]


def forbidden(request, message: str | None = None):
    response = render(request, "backoffice/403.html", {
        "message": message or "Cet espace est réservé au personnel de la commune.",
    }, status=403)
    add_never_cache_headers(response)
    return response


def _normalise(roles) -> tuple[str, ...] | None:
    if roles is None:
        return None
    if isinstance(roles, str):
        return (roles,)
    return tuple(roles)


def deny(request, roles: tuple[str, ...] | None):
    """The response that refuses ``request`` for a page restricted to ``roles`` (None: any
    staff role), or None when the user may enter."""
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url())
    if not is_staff_member(user):
        return forbidden(request)
    if roles is not None and user.staff_role not in roles:
        return forbidden(request, "Cette page est réservée aux rôles suivants : "
                         + ", ".join(role_labels(roles)) + ".")
    return None


def staff_required(view: Callable | None = None, *, roles: Iterable[str] | str | None = None):
    """Decorator for back-office views: ``@staff_required`` or ``@staff_required(roles=[...])``."""
    allowed = _normalise(roles)

    def decorator(func):
        @wraps(func)
        def wrapper(request, *args, **kwargs):
            response = deny(request, allowed)
            if response is None:
                response = func(request, *args, **kwargs)
            add_never_cache_headers(response)
            return response

        wrapper.staff_roles = allowed
        return wrapper

    if view is not None:
        return decorator(view)
    return decorator


class StaffRequiredMixin:
    """Class-based views: set ``staff_roles`` to restrict to some roles (None: any staff)."""

    staff_roles: Iterable[str] | None = None

    def dispatch(self, request, *args, **kwargs):
        response = deny(request, _normalise(self.staff_roles))
        if response is None:
            response = super().dispatch(request, *args, **kwargs)
        add_never_cache_headers(response)
        return response
