"""The deadline vocabulary of the YAML, parsed into typed values.

A deadline says until when a day can be booked (or cancelled). Written in the YAML as a
short French expression, always evaluated in the commune's time zone:

=====================  ==============================================================
``S-1 jeudi 12:00``    the Thursday of the previous week at 12:00 ("jeudi midi pour la
                       semaine suivante"); ``S-2 vendredi 12:00`` two weeks before
``J-1 23:59``          the day before at 23:59 ("la veille"); ``J-0 08:00`` the same day
``J-2 ouvrés 18:00``   two working days before at 18:00 (weekends, public holidays and
                       closures skipped)
``H-48``               48 hours before the unit starts
``M-1 le 20 12:00``    the 20th of the previous month at 12:00
=====================  ==============================================================

This module only parses; the booking engine computes the actual instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Literal

WEEKDAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")

_TIME = r"(?P<time>[0-9]{1,2}:[0-9]{2})"
_FORMS = [
    ("weekday_of_previous_week",
     re.compile(rf"^S-(?P<amount>[1-9]) (?P<weekday>{'|'.join(WEEKDAYS_FR)}) {_TIME}$")),
    ("working_days_before", re.compile(rf"^J-(?P<amount>[0-9]{{1,2}}) ouvrés {_TIME}$")),
    ("days_before", re.compile(rf"^J-(?P<amount>[0-9]{{1,2}}) {_TIME}$")),
    ("hours_before", re.compile(r"^H-(?P<amount>[0-9]{1,3})$")),
    ("day_of_previous_month", re.compile(rf"^M-1 le (?P<day>[0-9]{{1,2}}) {_TIME}$")),
]

# For editors (JSON Schema) and for the error message.
DEADLINE_PATTERN = re.sub(r"\(\?P<\w+>", "(", "|".join(f"({rx.pattern})" for _, rx in _FORMS))
DEADLINE_HELP = (
    "formats acceptés : « S-1 jeudi 12:00 », « J-1 23:59 », « J-2 ouvrés 18:00 », "
    "« H-48 », « M-1 le 20 12:00 »"
)

DeadlineKind = Literal[
    "weekday_of_previous_week", "working_days_before", "days_before", "hours_before",
    "day_of_previous_month",
]


@dataclass(frozen=True)
class Deadline:
    kind: DeadlineKind
    text: str
    amount: int = 0  # weeks, days or hours before, by kind
    weekday: int | None = None  # 0 = Monday
    day_of_month: int | None = None
    at: time | None = None

    def __str__(self) -> str:
        return self.text


def parse_deadline(text: str) -> Deadline:
    """Parse a deadline expression; raise ValueError with a French message if it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"délai attendu sous forme de texte ; {DEADLINE_HELP}")
    normalized = " ".join(text.strip().split())
    for kind, rx in _FORMS:
        match = rx.match(normalized)
        if not match:
            continue
        groups = match.groupdict()
        at = None
        if groups.get("time"):
            hours, minutes = (int(x) for x in groups["time"].split(":"))
            if hours > 23 or minutes > 59:
                raise ValueError(f"heure impossible « {groups['time']} » dans « {text} »")
            at = time(hours, minutes)
        day = int(groups["day"]) if groups.get("day") else None
        if day is not None and not 1 <= day <= 28:
            raise ValueError(f"jour du mois {day} impossible : choisir entre 1 et 28 (tous les mois l'ont)")
        amount = int(groups.get("amount") or 0)
        if kind == "hours_before" and amount == 0:
            raise ValueError("H-0 n'est pas un délai : indiquer au moins une heure")
        weekday = WEEKDAYS_FR.index(groups["weekday"]) if groups.get("weekday") else None
        return Deadline(kind=kind, text=normalized, amount=amount, weekday=weekday,
                        day_of_month=day, at=at)
    raise ValueError(f"délai « {text} » non reconnu ; {DEADLINE_HELP}")
