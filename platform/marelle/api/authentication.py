"""Token authentication that finds the caller's family in the same statement.

DRF's TokenAuthentication reads the token and its user (one ORM statement), then every
families' endpoint asked for the guardian and its family (a second one): together about a
third of the CPU of a booking. Here one hand-written statement reads token, user, guardian
and family; the family is what ``marelle.families.permissions.family_of`` would answer
(None for staff, for an account without family, or when the family is not active), kept on
the request for ``request_family``.
"""

from __future__ import annotations

from functools import lru_cache

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from marelle.accounts.models import User
from marelle.core.sql import Columns, prepared_cursor, table
from marelle.families.models import Family, Guardian

_TOKEN = Columns(Token, "t")
_USER = Columns(User, "u")
_GUARDIAN = Columns(Guardian, "g")
_FAMILY = Columns(Family, "f")

#: Where the family found with the token is kept (marelle.api.permissions.request_family).
FAMILY_ATTRIBUTE = "_marelle_family"


def token_tables(schema: str) -> tuple[str, str]:
    """The token statement's columns and FROM clause (aliases t, u, g, f), for a view's
    statement to extend (``token_statement`` below); the statement selects ``WHERE t.key = %s``."""
    return (f"{_TOKEN.sql}, {_USER.sql}, {_GUARDIAN.sql}, {_FAMILY.sql}",
            f"{table(Token, schema)} t "
            f"JOIN {table(User, schema)} u ON u.id = t.user_id "
            f"LEFT JOIN {table(Guardian, schema)} g ON g.user_id = u.id "
            f"LEFT JOIN {table(Family, schema)} f ON f.id = g.family_id")


@lru_cache(maxsize=4096)
def _statement(schema: str) -> str:
    columns, tables = token_tables(schema)
    return f"SELECT {columns} FROM {tables} WHERE t.key = %s"


class FamilyTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``, as DRF's, with the family read alongside.

    A view may have more read in the same statement (booking.api's views of one enrolment
    read that enrolment): its ``token_statement(schema, key)`` gives the SQL and parameters
    (or None), whose rows start with :func:`token_tables`' columns, and its
    ``read_with_token(rows, offset, family)`` gets the rows, where those columns end, and
    the family found (None if none)."""

    def authenticate(self, request):
        self._view = (request.parser_context or {}).get("view")
        result = super().authenticate(request)
        if result is not None:
            setattr(request, FAMILY_ATTRIBUTE, getattr(self, "_family", None))
        return result

    def authenticate_credentials(self, key):
        self._family = None
        view = getattr(self, "_view", None)
        with prepared_cursor() as cursor:
            schema = cursor.db.schema_name
            more = view.token_statement(schema, key) if hasattr(view, "token_statement") else None
            cursor.execute(*(more or (_statement(schema), [key])))
            rows = cursor.fetchall()
        if not rows:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token, offset = _TOKEN.build(rows[0])
        user, offset = _USER.build(rows[0], offset)
        guardian, offset = _GUARDIAN.build(rows[0], offset)
        family, offset = _FAMILY.build(rows[0], offset)
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token.user = user
        if guardian is not None and family is not None and family.status == Family.Status.ACTIVE:
            guardian.family = family
            if guardian.position == 1:
                family.primary_guardian = guardian  # as family_of does: one query less per page
            self._family = family
        if more:
            view.read_with_token(rows, offset, self._family)
        return user, token
