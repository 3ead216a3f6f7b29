"""Signed, expiring, single-use links (sign-up confirmation, invitation, e-mail change).

A link carries the account id and a digest of the account's current state for its
purpose; once the link has done its job that state changes (e-mail confirmed, password
set, address changed) and the same link is refused.
"""

import hashlib

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing

PURPOSES = ("confirm", "invite", "email")


class InvalidLink(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # "expired" or "invalid"


def _state(user, purpose: str, extra: str) -> str:
    material = "|".join([purpose, str(user.pk), user.email, user.password or "", str(user.is_active),
                         user.email_verified_at.isoformat() if user.email_verified_at else "", extra])
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def make_token(user, purpose: str, extra: str = "") -> str:
    assert purpose in PURPOSES
    return signing.dumps({"u": user.pk, "s": _state(user, purpose, extra), "x": extra},
                         salt=f"marelle.accounts.{purpose}", compress=True)


def read_token(token: str, purpose: str):
    """Return (user, extra) or raise InvalidLink."""
    try:
        data = signing.loads(token, salt=f"marelle.accounts.{purpose}",
                             max_age=settings.ACCOUNT_LINK_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise InvalidLink("expired") from None
    except signing.BadSignature:
        raise InvalidLink("invalid") from None
    user = get_user_model().objects.filter(pk=data.get("u")).first()
    if user is None or _state(user, purpose, data.get("x", "")) != data.get("s"):
        raise InvalidLink("invalid")
    return user, data.get("x", "")
