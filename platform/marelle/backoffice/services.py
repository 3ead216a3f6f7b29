"""Writes of the back-office: health-data reads (traced), staff accounts, families created
at the desk. Decisions on change requests go through marelle.families.services."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from marelle.audit.services import audit_record
from marelle.core.commune import current_config
from marelle.families.models import Child, Family, Guardian, HealthDataAccess
from marelle.families.permissions import is_staff_member

logger = logging.getLogger(__name__)

FAMILY_PAGE = "fiche famille"
CHANGE_REQUEST = "demande de modification"


class EmailAlreadyUsed(Exception):
    pass


# --- Health data -------------------------------------------------------------------------


def health_data_allowed(staff) -> bool:
    """Whether this staff member's role may read children's health data in this commune."""
    return is_staff_member(staff, tuple(current_config().families.health_data_roles))


def reveal_health_data(*, staff, children: Iterable[Child | int], context: str) -> bool:
    """Call right before showing the health block of ``children`` to ``staff``.

    Returns False (and records nothing) when the role may not read health data; otherwise
    records one HealthDataAccess per child (who, when, which child, where) and returns True.
    """
    if not health_data_allowed(staff):
        return False
    child_ids = list(dict.fromkeys(c if isinstance(c, int) else c.pk for c in children))
    if child_ids:
        HealthDataAccess.objects.bulk_create(
            [HealthDataAccess(staff=staff, child_id=child_id, context=context[:120]) for child_id in child_ids])
    return True


# --- Invitations -------------------------------------------------------------------------


def invite(user, *, base) -> bool:
    """Send the invitation e-mail that lets ``user`` choose a password.

    ``base`` is the request (or the site's base URL) the link is built from. Returns False
    when the accounts app does not provide ``send_invitation`` yet.
    """
    try:
        from marelle.accounts.services import send_invitation
    except ImportError:
        # TODO(accounts): marelle.accounts.services.send_invitation(user, *, base) is the hook;
        # until it exists the account is created and staff must give the family its access.
        logger.warning("send_invitation is not available: no invitation sent to user %s", user.pk)
        return False
    send_invitation(user, base=base)
    return True


def _new_inactive_user(*, email: str, first_name: str, last_name: str, **fields):
    User = get_user_model()
    email = User.objects.normalize_email(email)
    if User.objects.filter(email__iexact=email).exists():
        raise EmailAlreadyUsed(email)
    try:
        with transaction.atomic():
            # No password: the invitation link lets its holder choose one and activates the account.
            return User.objects.create_user(email, None, first_name=first_name, last_name=last_name,
                                            is_active=False, **fields)
    except IntegrityError:  # the same address created at the same moment elsewhere
        raise EmailAlreadyUsed(email) from None


# --- Staff accounts ----------------------------------------------------------------------


def staff_accounts():
    return (get_user_model().objects.filter(is_staff=True).exclude(staff_role="")
            .order_by("last_name", "first_name", "email"))


@transaction.atomic
def staff_account_create(*, actor, email: str, first_name: str, last_name: str, role: str, base):
    """A staff account of this commune, inactive until its holder follows the invitation."""
    user = _new_inactive_user(email=email, first_name=first_name, last_name=last_name, is_staff=True,
                              staff_role=role)
    audit_record(actor=actor, action="staff.created", target=f"user:{user.pk}", role=role)
    user.invitation_sent = invite(user, base=base)
    return user


# --- Families at the desk ----------------------------------------------------------------


GUARDIAN_DESK_FIELDS = ("civility", "last_name", "first_name", "phone_mobile", "address_line",
                        "address_complement", "postcode", "city")


@transaction.atomic
def family_create_at_desk(*, actor, email: str, guardian: dict, base) -> Family:
    """A family created by staff (communes in invitation mode): its first guardian's account
    is inactive until the invitation is followed."""
    data = {name: (guardian.get(name) or "") for name in GUARDIAN_DESK_FIELDS}
    user = _new_inactive_user(email=email, first_name=data["first_name"], last_name=data["last_name"])
    family = Family.objects.create()
    Guardian.objects.create(family=family, user=user, position=1, email=user.email, **data)
    audit_record(actor=actor, action="family.created_at_desk", target=f"family:{family.pk}", family_id=family.pk)
    family.invitation_sent = invite(user, base=base)
    return family
