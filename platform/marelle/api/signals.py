"""Changing a password (web form, reset link, invitation, admin) revokes the API token, as
it ends the account's other web sessions."""

from django.conf import settings
from django.db import connection
from django.db.models.signals import post_save
from django.dispatch import receiver
from django_tenants.utils import get_public_schema_name

from marelle.api.services import tokens_revoke_on_password_change


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="marelle.api.revoke_token_on_password_change")
def revoke_token_on_password_change(sender, instance, created, **kwargs):
    # AbstractBaseUser.set_password() keeps the raw password in _password until save()
    # has finished, i.e. until after this signal: it marks a password change.
    # Tokens live in the communes' schemas only (platform operators have none).
    if created or getattr(instance, "_password", None) is None:
        return
    if connection.schema_name != get_public_schema_name():
        tokens_revoke_on_password_change(user=instance)
