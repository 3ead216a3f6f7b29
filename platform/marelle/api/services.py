"""API access tokens (rest_framework.authtoken, one table per commune schema).

One token per account, shared by the account's apps: revoking it signs every app out,
as changing the password does (signals.py).
"""

from django.db import transaction
from rest_framework.authtoken.models import Token

from marelle.audit.services import audit_record


@transaction.atomic
def token_obtain(*, user) -> Token:
    token, created = Token.objects.get_or_create(user=user)
    if created:
        audit_record(actor=user, action="api.token_created", target=f"user:{user.pk}")
    return token


@transaction.atomic
def token_revoke(*, user) -> bool:
    deleted, _ = Token.objects.filter(user=user).delete()
    if deleted:
        audit_record(actor=user, action="api.token_revoked", target=f"user:{user.pk}")
    return bool(deleted)


def tokens_revoke_on_password_change(*, user) -> None:
    """A new password ends the account's other sessions; its API token goes with them."""
    if Token.objects.filter(user=user).delete()[0]:
        audit_record(actor=None, action="api.token_revoked", target=f"user:{user.pk}", reason="password_changed")
