"""The one source of "now": aware datetimes, dates in the commune's time zone.

Code calls these instead of datetime.now()/date.today(); tests freeze the clock
(time-machine) and every rule sees the same instant.
"""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.utils import timezone

PARIS = ZoneInfo("Europe/Paris")


def now() -> datetime:
    return timezone.now()


def local_now(tz: ZoneInfo = PARIS) -> datetime:
    return timezone.now().astimezone(tz)


def today(tz: ZoneInfo = PARIS) -> date:
    return local_now(tz).date()
