"""Account life cycle: sign-up, confirmation, invitation, e-mail change."""

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from marelle.accounts.tokens import make_token, read_token
from marelle.audit.services import audit_record
from marelle.core.commune import current_config
from marelle.core.emails import send_templated_email


class EmailTaken(Exception):
    pass


def absolute_url(request_or_base, path: str) -> str:
    if hasattr(request_or_base, "build_absolute_uri"):
        return request_or_base.build_absolute_uri(path)
    return f"{request_or_base.rstrip('/')}{path}"


@transaction.atomic
def account_signup(*, email: str, password: str, civility: str, first_name: str, last_name: str, base):
    """A new family account, inactive until the e-mail link is followed."""
    from marelle.families.models import Family, Guardian

    User = get_user_model()
    email = User.objects.normalize_email(email)
    if User.objects.filter(email__iexact=email).exists():
        raise EmailTaken(email)
    try:
        with transaction.atomic():
            user = User.objects.create_user(email, password, first_name=first_name, last_name=last_name,
                                            is_active=False)
    except IntegrityError:  # two sign-ups with the same address at the same moment
        raise EmailTaken(email) from None
    family = Family.objects.create()
    Guardian.objects.create(family=family, user=user, position=1, civility=civility, first_name=first_name,
                            last_name=last_name, email=email)
    audit_record(actor=None, action="account.signed_up", target=f"user:{user.pk}", family_id=family.pk)
    send_confirmation(user, base=base)
    return user


def send_confirmation(user, *, base) -> None:
    link = absolute_url(base, reverse("accounts:confirm", args=[make_token(user, "confirm")]))
    send_templated_email(to=user.email, template="account_confirm", context={"user": user, "link": link})


@transaction.atomic
def account_confirm(token: str):
    user, _ = read_token(token, "confirm")
    user.is_active = True
    user.email_verified_at = timezone.now()
    user.save(update_fields=["is_active", "email_verified_at"])
    audit_record(actor=user, action="account.confirmed", target=f"user:{user.pk}")
    return user


def send_invitation(user, *, base) -> None:
    """Staff created this account at the desk: the link lets its holder choose a password."""
    link = absolute_url(base, reverse("accounts:invitation", args=[make_token(user, "invite")]))
    send_templated_email(to=user.email, template="account_invitation", context={"user": user, "link": link})


@transaction.atomic
def invitation_accept(token: str, password: str):
    user, _ = read_token(token, "invite")
    user.set_password(password)
    user.is_active = True
    user.email_verified_at = timezone.now()
    user.save(update_fields=["password", "is_active", "email_verified_at"])
    audit_record(actor=user, action="account.invitation_accepted", target=f"user:{user.pk}")
    return user


def email_change_request(*, user, new_email: str, base) -> None:
    """Send a confirmation link to the new address; the login stays the old one meanwhile."""
    User = get_user_model()
    new_email = User.objects.normalize_email(new_email)
    if User.objects.filter(email__iexact=new_email).exclude(pk=user.pk).exists():
        raise EmailTaken(new_email)
    link = absolute_url(base, reverse("accounts:email_confirm", args=[make_token(user, "email", new_email)]))
    send_templated_email(to=new_email, template="email_change_confirm",
                         context={"user": user, "link": link, "new_email": new_email})
    audit_record(actor=user, action="account.email_change_requested", target=f"user:{user.pk}")


@transaction.atomic
def email_change_confirm(token: str) -> tuple[object, str]:
    """Returns (user, "applied" | "pending"): pending when staff must validate the change."""
    from marelle.families.models import ChangeRequest

    user, new_email = read_token(token, "email")
    User = get_user_model()
    if User.objects.filter(email__iexact=new_email).exclude(pk=user.pk).exists():
        raise EmailTaken(new_email)
    guardian = getattr(user, "guardian", None)
    if current_config().families.email_change_needs_staff_validation and guardian is not None:
        ChangeRequest.objects.get_or_create(
            family=guardian.family, target="email", object_id=user.pk, status=ChangeRequest.Status.PENDING,
            defaults={"data": {"email": new_email}, "previous": {"email": user.email}, "requested_by": user,
                      "summary": f"Changement d'adresse de connexion vers {new_email}"})
        return user, "pending"
    apply_email_change(user, new_email)
    return user, "applied"


def apply_email_change(user, new_email: str) -> None:
    previous = user.email
    user.email = new_email
    user.email_verified_at = timezone.now()
    user.save(update_fields=["email", "email_verified_at"])
    guardian = getattr(user, "guardian", None)
    if guardian is not None and guardian.email in ("", previous):
        guardian.email = new_email
        guardian.save(update_fields=["email"])
    audit_record(actor=user, action="account.email_changed", target=f"user:{user.pk}")
