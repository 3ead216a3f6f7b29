"""Who may see and change what: one place, used by the web views and the API."""

from django.core.exceptions import PermissionDenied
from django.http import Http404

from marelle.core.commune import current_config
from marelle.families.models import Child, Family


def family_of(user) -> Family | None:
    """The family whose account ``user`` holds (None for staff or anonymous)."""
    if not getattr(user, "is_authenticated", False):
        return None
    from marelle.families.models import Guardian

    guardian = Guardian.objects.select_related("family").filter(user=user).first()
    if guardian is None or guardian.family.status != Family.Status.ACTIVE:
        return None
    family = guardian.family
    if guardian.position == 1:
        family.primary_guardian = guardian  # fills the cached property: one query less per page
    return family


def require_family(user) -> Family:
    family = family_of(user)
    if family is None:
        raise PermissionDenied("Cet espace est réservé aux familles.")
    return family


def child_of_family(family: Family, child_id) -> Child:
    """The child, only if it belongs to ``family``: another family's id is a 404, not a 403,
    so ids reveal nothing."""
    try:
        return family.children.exclude(status=Child.Status.ARCHIVED).get(pk=child_id)
    except (Child.DoesNotExist, ValueError, TypeError):
        raise Http404("Enfant introuvable") from None


def is_staff_member(user, roles: tuple[str, ...] | None = None) -> bool:
    if not getattr(user, "is_commune_staff", False):
        return False
    return roles is None or user.staff_role in roles


def can_read_health_data(user, child: Child) -> bool:
    family = family_of(user)
    if family is not None:
        return child.family_id == family.pk
    return is_staff_member(user, tuple(current_config().families.health_data_roles))
