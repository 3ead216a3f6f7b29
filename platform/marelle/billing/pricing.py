"""The one pricing engine: the recap shown before a réservation is validated and the
invoice lines both come from here, so they can never disagree. Pure: no database."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal

from tenants.commune_config.schema import QuotientBracket, Service


def bracket_code(*, quotient: int | None, verified: bool, brackets: list[QuotientBracket]) -> str | None:
    """The family's bracket; without a checked quotient, the highest one applies."""
    if not brackets:
        return None
    if quotient is None or not verified:
        return brackets[-1].code
    for bracket in brackets:
        if bracket.max_quotient is None or quotient <= bracket.max_quotient:
            return bracket.code
    return brackets[-1].code


def unit_price_cents(service: Service, unit_code: str, *, bracket: str | None,
                     start: time | None = None, end: time | None = None) -> int:
    """Price of one booked unit (per booking, or per hour for time ranges)."""
    price = next((p for p in service.pricing.prices if p.unit == unit_code), None)
    if price is None:
        raise LookupError(f"no price for unit {unit_code!r} of service {service.code!r}")
    if price.by_quotient is not None:
        amount = price.by_quotient[bracket] if bracket in price.by_quotient else max(price.by_quotient.values())
    else:
        amount = price.amount_cents
    if price.per == "hour":
        unit = next(u for u in service.units if u.code == unit_code)
        start, end = start or unit.start, end or unit.end
        minutes = (datetime.combine(date.min, end) - datetime.combine(date.min, start)).seconds // 60
        return int((Decimal(amount) * Decimal(minutes) / Decimal(60)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return amount


def format_euros(cents: int) -> str:
    """17,00 € (French formatting, non-breaking space before the sign)."""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    grouped = f"{euros:,}".replace(",", "\u202f")
    return f"{sign}{grouped},{rest:02d}\u00a0€"
