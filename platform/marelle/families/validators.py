"""Field rules for family records, shared by the web forms and the API."""

import re

from django.core.exceptions import ValidationError

from marelle.families.postcodes import communes_for, matching_city

_PHONE = re.compile(r"^(?:\+33|0033|0)([1-9])(\d{8})$")


def normalize_phone(value: str) -> str:
    """A French phone number as "06 12 34 56 78" (or raise ValidationError)."""
    digits = re.sub(r"[\s.\-()]", "", value or "")
    match = _PHONE.match(digits)
    if not match:
        raise ValidationError("Numéro de téléphone invalide : 10 chiffres, par exemple 06 12 34 56 78.",
                              code="phone")
    national = "0" + match.group(1) + match.group(2)
    return " ".join(national[i:i + 2] for i in range(0, 10, 2))


def validate_postcode(value: str) -> str:
    value = (value or "").strip()
    if not re.fullmatch(r"\d{5}", value):
        raise ValidationError("Code postal invalide : 5 chiffres.", code="postcode")
    if not communes_for(value):
        raise ValidationError(f"Le code postal {value} n'existe pas.", code="postcode")
    return value


def validate_city_for_postcode(postcode: str, city: str) -> str:
    """The official city name, or a ValidationError listing the communes of the postcode."""
    official = matching_city(postcode, city)
    if official:
        return official
    names = communes_for(postcode)
    listed = ", ".join(names[:8]) + ("…" if len(names) > 8 else "")
    raise ValidationError(f"Cette ville ne correspond pas au code postal {postcode} ({listed}).", code="city")
