"""`manage.py demo seed`, what `./dev run` shows a new user, here in the beta test commune
(its Wednesdays are booked as requests that staff accept or refuse)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine
from django.db import connection
from marelle.booking.models import Booking, Enrolment
from marelle.core.management.commands.demo import Command

MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))


def test_the_demo_leaves_the_martins_booking_requests_in_the_staff_queue(beta):
    connection.set_tenant(beta)
    with time_machine.travel(MONDAY, tick=False):
        Command().seed_commune(beta)
        requested = list(Booking.objects.filter(state=Booking.State.REQUESTED).select_related("child__family"))
        # Léa and Tom Martin (the validated family), one Wednesday each; nobody else.
        assert sorted(b.child.first_name for b in requested) == ["Léa", "Tom"]
        assert {b.child.family.guardians.get().email for b in requested} == {"martin@beta.demo"}
        assert all(b.day.weekday() == 2 and b.day >= MONDAY.date() for b in requested)
        assert Enrolment.objects.filter(child__first_name="Inès", status=Enrolment.Status.ACCEPTED).exists()

        Command().seed_commune(beta)  # again, as every `./dev run` does: nothing more
        assert Booking.objects.filter(state=Booking.State.REQUESTED).count() == 2
