"""Fixtures of the booking tests: the clock frozen on Monday 7 September 2026 at 10:00 in
Paris (next week's cantine closes on Thursday 10 at 12:00), the alpha commune current."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection

MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))


@pytest.fixture
def clock():
    with time_machine.travel(MONDAY, tick=False) as traveller:
        yield traveller


@pytest.fixture
def in_alpha(alpha):
    connection.set_tenant(alpha)
    return alpha
