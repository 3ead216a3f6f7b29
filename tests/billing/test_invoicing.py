"""Invoicing runs from real bookings and attendance: lines, numbering, races, credit notes."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, connections
from marelle.billing.invoicing import (
    InvoicingError,
    credit_note_create,
    invoicing_run_draft,
    invoicing_run_issue,
)
from marelle.billing.models import Invoice, InvoicingRun
from marelle.booking.models import Attendance
from marelle.booking.services import Change, reservation_submit
from marelle.catalog.models import Regie, Unit

from tests.factories import accept_document, enrol, make_family, make_staff
from tests.support import create_committed_commune, drop_committed_commune, in_own_connection

PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=PARIS)
SEPT = (date(2026, 9, 1), date(2026, 9, 30))


@pytest.fixture
def booked(alpha):
    """Two families with September cantine bookings in alpha."""
    connection.set_tenant(alpha)
    with time_machine.travel(MONDAY, tick=False):
        enrolments = []
        for index, quotient_checked in enumerate((True, False)):
            family = make_family(f"p{index}@example.fr", last_name=f"Nom{index}", children=("Enfant",))
            if quotient_checked:
                family.quotient_verified_until = date(2026, 12, 31)
                family.save()
            child = family.children.get()
            accept_document(child)
            enrolment = enrol(child, "cantine")
            reservation_submit(actor=None, enrolment=enrolment, changes=[
                Change(day, "repas") for day in (date(2026, 9, 14), date(2026, 9, 15), date(2026, 9, 17))])
            enrolments.append(enrolment)
    return enrolments


def test_draft_then_issue_produces_one_invoice_per_family_with_lines_and_numbers(booked):
    regie = Regie.objects.get(code="scolaire")
    with time_machine.travel(datetime(2026, 10, 5, 9, 0, tzinfo=PARIS), tick=False):
        run = invoicing_run_draft(actor=None, regie=regie, period_start=SEPT[0], period_end=SEPT[1],
                                  label="Septembre 2026")
        drafts = {i.family.primary_guardian.last_name: i for i in run.invoices.all()}
        assert drafts["Nom0"].total_cents == 3 * 300  # checked quotient: bracket t1
        assert drafts["Nom1"].total_cents == 3 * 500  # no proof: highest bracket
        line = drafts["Nom0"].lines.get()
        assert (line.quantity, line.unit_price_cents, line.dates) == (3, 300, ["2026-09-14", "2026-09-15", "2026-09-17"])
        assert line.label == "Cantine d'Alpha – Repas" and line.child_name == "Enfant Nom0"
        assert all(i.number == "" and i.status == "draft" for i in drafts.values())

        invoicing_run_issue(actor=make_staff(), run_id=run.pk)
    issued = list(Invoice.objects.filter(run=run).order_by("number"))
    assert [i.number for i in issued] == ["SCO-2026-000001", "SCO-2026-000002"]
    assert {i.status for i in issued} == {"to_pay"}
    assert issued[0].due_date == date(2026, 11, 4) and issued[0].debtor["city"] == "Alixan"
    # The issue's SQL freezes the same debtor as debtors_of (baskets and credit notes use it).
    from marelle.billing.invoicing import debtors_of

    frozen = debtors_of([i.family_id for i in issued])
    assert [i.debtor for i in issued] == [frozen[i.family_id] for i in issued]
    assert issued[0].debtor["name"] == "Madame Claire Nom0"
    with pytest.raises(InvoicingError, match="déjà été émise"):
        invoicing_run_issue(actor=None, run_id=run.pk)


def test_a_second_run_for_the_same_period_is_refused(booked):
    regie = Regie.objects.get(code="scolaire")
    invoicing_run_draft(actor=None, regie=regie, period_start=SEPT[0], period_end=SEPT[1], label="Septembre")
    with pytest.raises(InvoicingError, match="existe déjà"):
        invoicing_run_draft(actor=None, regie=regie, period_start=SEPT[0], period_end=SEPT[1], label="Septembre")


def test_excused_absence_is_not_billed(booked):
    enrolment = booked[0]
    Attendance.objects.create(child=enrolment.child, establishment=enrolment.establishment,
                              unit=Unit.objects.get(code="repas"), day=date(2026, 9, 15), status="excused",
                              reason="Certificat médical")
    run = invoicing_run_draft(actor=None, regie=Regie.objects.get(code="scolaire"), period_start=SEPT[0],
                              period_end=SEPT[1], label="Septembre")
    line = run.invoices.get(family=enrolment.child.family).lines.get()
    assert line.quantity == 2 and "2026-09-15" not in line.dates


def test_credit_note_references_the_invoice_and_lowers_what_is_owed(booked):
    run = invoicing_run_draft(actor=None, regie=Regie.objects.get(code="scolaire"), period_start=SEPT[0],
                              period_end=SEPT[1], label="Septembre")
    invoicing_run_issue(actor=None, run_id=run.pk)
    invoice = Invoice.objects.get(run=run, family=booked[0].child.family)
    with pytest.raises(InvoicingError, match="motif"):
        credit_note_create(actor=None, invoice_id=invoice.pk, amount_cents=300, reason="")
    with pytest.raises(InvoicingError, match="Montant"):
        credit_note_create(actor=None, invoice_id=invoice.pk, amount_cents=10_000, reason="Erreur")
    credit = credit_note_create(actor=None, invoice_id=invoice.pk, amount_cents=300, reason="Repas non servi (grève)")
    invoice.refresh_from_db()
    assert credit.kind == "credit_note" and credit.credited_invoice_id == invoice.pk and credit.total_cents == -300
    assert credit.number.startswith("SCO-")
    assert invoice.total_cents == 900 and invoice.balance_cents == 600 and invoice.status == "partially_paid"


@pytest.fixture
def two_regie_runs(db):
    """Committed: one commune, bookings for 12 families, two draft runs (Sept and Oct)."""
    with time_machine.travel(MONDAY, tick=False):
        commune = create_committed_commune("factures")

        def populate():
            connection.set_tenant(commune)
            regie = Regie.objects.get(code="scolaire")
            for index in range(12):
                child = make_family(f"f{index}@example.fr", children=("E",)).children.get()
                accept_document(child)
                reservation_submit(actor=None, enrolment=enrol(child, "cantine"),
                                   changes=[Change(date(2026, 9, 14), "repas"), Change(date(2026, 10, 5), "repas")])
            runs = [invoicing_run_draft(actor=None, regie=regie, period_start=start, period_end=end, label=label).pk
                    for start, end, label in ((date(2026, 9, 1), date(2026, 9, 30), "Septembre"),
                                              (date(2026, 10, 1), date(2026, 10, 31), "Octobre"))]
            return runs

        runs = in_own_connection(populate)
    try:
        yield commune, runs
    finally:
        drop_committed_commune(commune)


def test_two_runs_issued_at_the_same_moment_never_share_a_number_nor_leave_a_gap(two_regie_runs):
    commune, runs = two_regie_runs
    barrier = threading.Barrier(len(runs))

    def issue(run_id):
        try:
            connection.set_tenant(commune)
            barrier.wait(timeout=30)
            invoicing_run_issue(actor=None, run_id=run_id)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(runs)) as pool:
        list(pool.map(issue, runs))

    def check():
        connection.set_tenant(commune)
        numbers = sorted(Invoice.objects.exclude(number="").values_list("number", flat=True))
        assert numbers == [f"SCO-2026-{n:06d}" for n in range(1, 25)]
        assert InvoicingRun.objects.filter(status="issued").count() == 2

    in_own_connection(check)


def test_beat_drafts_the_monthly_run_on_the_regies_issue_day_once(booked):
    from marelle.billing.invoicing import draft_scheduled_runs, scheduled_runs_due
    from marelle.billing.tasks import draft_scheduled_invoicing_runs

    regie = Regie.objects.get(code="scolaire")
    assert (regie.invoicing or {}).get("issue_day", 5) == 5
    assert scheduled_runs_due(regie, date(2026, 10, 4)) == []  # before the issue day
    assert scheduled_runs_due(regie, date(2026, 10, 5)) == [(date(2026, 9, 1), date(2026, 9, 30), "Septembre 2026")]
    assert scheduled_runs_due(regie, date(2027, 1, 5)) == [(date(2026, 12, 1), date(2026, 12, 31), "Décembre 2026")]
    with time_machine.travel(datetime(2026, 10, 5, 5, 0, tzinfo=PARIS), tick=False):
        [run_id] = draft_scheduled_invoicing_runs.apply().result
        run = InvoicingRun.objects.get(pk=run_id)
        assert (run.status, run.label, run.invoices.count()) == ("draft", "Septembre 2026", 2)
        assert draft_scheduled_runs() == []  # the next morning's beat (or a second worker) drafts nothing
    # Abandoned by staff: the beat does not make it again.
    run.status = InvoicingRun.Status.CANCELLED
    run.save()
    with time_machine.travel(datetime(2026, 10, 6, 5, 0, tzinfo=PARIS), tick=False):
        assert draft_scheduled_runs() == []


def test_per_period_regies_are_drafted_for_periods_ended_last_month_or_starting_next_month(alpha):
    from marelle.billing.invoicing import scheduled_runs_due
    from marelle.catalog.models import Period, Service

    connection.set_tenant(alpha)
    regie = Regie.objects.get(code="scolaire")
    service = Service.objects.get(code="cantine")
    Period.objects.create(service=service, code="toussaint", label="Vacances de la Toussaint", kind="holidays",
                          start=date(2026, 10, 19), end=date(2026, 10, 30))
    regie.invoicing = {"frequency": "per_period", "issue_day": 3}
    assert scheduled_runs_due(regie, date(2026, 11, 3)) == [
        (date(2026, 10, 19), date(2026, 10, 30), "Vacances de la Toussaint")]
    assert scheduled_runs_due(regie, date(2026, 12, 3)) == []
    regie.invoicing = {"frequency": "per_period", "issue_day": 3, "due_before_period_start": True}
    assert scheduled_runs_due(regie, date(2026, 9, 3)) == [
        (date(2026, 10, 19), date(2026, 10, 30), "Vacances de la Toussaint")]


def test_the_invoicing_command_drafts_what_is_due_then_issues_it(booked):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from tenants.models import Commune

    out = StringIO()
    with time_machine.travel(datetime(2026, 10, 5, 9, 0, tzinfo=PARIS), tick=False):
        call_command("invoicing", "due", "--commune", "alpha", "--date", "2026-10-05", stdout=out)
        connection.set_tenant(Commune.objects.get(slug="alpha"))  # the command left the tenant context
        run = InvoicingRun.objects.get()
        assert f"alpha : brouillon n° {run.pk} « Septembre 2026 » (2 factures)" in out.getvalue()
        call_command("invoicing", "issue", "--commune", "alpha", "--run", str(run.pk), stdout=out)
    assert f"facturation n° {run.pk} émise (SCO-2026-000001 à SCO-2026-000002)" in out.getvalue()
    with pytest.raises(CommandError, match="aucune régie « inconnue »"):
        call_command("invoicing", "draft", "--commune", "alpha", "--regie", "inconnue", "--from", "2026-09-01",
                     "--to", "2026-09-30")
    with pytest.raises(CommandError, match="date invalide"):
        call_command("invoicing", "due", "--date", "05/10/2026")
