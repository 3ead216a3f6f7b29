"""Invoicing runs: draft (set-based: a fixed number of queries whatever the number of
families), review, issue (gapless numbers per régie and year), credit notes.

Prices come from the booking lines, priced by the same engine when the family validated
the recap (billing/pricing.py); services billed on attendance are priced here with that
same engine. So the recap and the invoice can never disagree.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta

from django.contrib.postgres.aggregates import ArrayAgg
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from marelle.audit.services import audit_record
from marelle.billing.models import Invoice, InvoiceCounter, InvoiceLine, InvoicingRun
from marelle.billing.pricing import bracket_code, unit_price_cents
from marelle.booking.models import Attendance, Booking
from marelle.catalog.models import Regie, Service, Unit
from marelle.core import clock
from marelle.core.commune import current_config
from marelle.families.models import Child, Family, Guardian


class InvoicingError(Exception):
    pass


def _services_by_basis(regie: Regie) -> tuple[list[Service], list[Service]]:
    config = {s.code: s for s in current_config().services}
    booked, attended = [], []
    for service in Service.objects.filter(regie=regie):
        conf = config.get(service.code)
        if conf is None:
            continue
        (attended if conf.pricing.basis == "attended" else booked).append(service)
    return booked, attended


def _excused(service_ids, start, end) -> set[tuple[int, int, date]]:
    """(child, unit, day) of absences excused with a document: not billed where the YAML says so."""
    config = {s.code: s for s in current_config().services}
    not_billed = [s.pk for s in Service.objects.filter(pk__in=service_ids)
                  if config[s.code].pricing.absences.excused_with_document == "not_billed"]
    return set(Attendance.objects.filter(unit__service_id__in=not_billed, day__range=(start, end),
                                         status=Attendance.Status.EXCUSED)
               .values_list("child_id", "unit_id", "day"))


@transaction.atomic
def invoicing_run_draft(*, actor, regie: Regie, period_start: date, period_end: date, label: str) -> InvoicingRun:
    """Build the draft invoices of ``regie`` for the period. A second live run for the same
    régie and period is refused (database constraint), even when two start at once."""
    try:
        with transaction.atomic():
            run = InvoicingRun.objects.create(regie=regie, period_start=period_start, period_end=period_end,
                                              label=label, created_by=actor)
    except IntegrityError:
        raise InvoicingError(f"Une facturation « {label} » existe déjà pour cette régie.") from None

    booked, attended = _services_by_basis(regie)
    # family -> list of line dicts
    lines: dict[int, list[dict]] = defaultdict(list)

    if booked:
        excused = _excused([s.pk for s in booked], period_start, period_end)
        # Prepaid bookings (in a basket) were invoiced and paid when they were booked.
        rows = (Booking.objects.filter(enrolment__service__in=booked, action="book", state=Booking.State.ACCEPTED,
                                       day__range=(period_start, period_end), basket_item__isnull=True)
                .values("child_id", "child__family_id", "unit_id", "enrolment__service_id", "unit_price_cents",
                        "surcharge_cents")
                .annotate(days=ArrayAgg("day", ordering="day"), n=Count("id"))
                .order_by("child__family_id", "child_id", "enrolment__service_id", "unit_id"))
        for row in rows:
            days = [d for d in row["days"] if (row["child_id"], row["unit_id"], d) not in excused]
            if not days:
                continue
            lines[row["child__family_id"]].append({
                "child_id": row["child_id"], "service_id": row["enrolment__service_id"], "unit_id": row["unit_id"],
                "dates": days, "quantity": len(days), "unit_price_cents": row["unit_price_cents"]})
            if row["surcharge_cents"]:
                late = len(days)
                lines[row["child__family_id"]].append({
                    "child_id": row["child_id"], "service_id": row["enrolment__service_id"], "unit_id": row["unit_id"],
                    "dates": days, "quantity": late, "unit_price_cents": row["surcharge_cents"], "surcharge": True})

    if attended:
        _attended_lines(attended, period_start, period_end, lines)

    if not lines:
        return run
    _create_drafts(run, regie, lines, label, period_start, period_end)
    audit_record(actor=actor, action="invoicing.drafted", target=f"run:{run.pk}", invoices=len(lines))
    return run


def _attended_lines(services, start, end, lines) -> None:
    config = {s.code: s for s in current_config().services}
    brackets = current_config().quotient_brackets
    today = clock.today()
    by_service = {s.pk: config[s.code] for s in services}
    billed_statuses = [Attendance.Status.PRESENT, Attendance.Status.UNBOOKED, Attendance.Status.ABSENT]
    rows = (Attendance.objects.filter(unit__service__in=services, day__range=(start, end), status__in=billed_statuses)
            .values("child_id", "child__family_id", "child__family__quotient", "child__family__quotient_verified_until",
                    "unit_id", "unit__code", "unit__service_id", "status")
            .annotate(days=ArrayAgg("day", ordering="day"))
            .order_by("child__family_id", "child_id", "unit__service_id", "unit_id", "status"))
    for row in rows:
        conf = by_service[row["unit__service_id"]]
        verified = bool(row["child__family__quotient_verified_until"] and row["child__family__quotient_verified_until"] >= today)
        bracket = bracket_code(quotient=row["child__family__quotient"], verified=verified, brackets=brackets)
        price = unit_price_cents(conf, row["unit__code"], bracket=bracket)
        base = {"child_id": row["child_id"], "service_id": row["unit__service_id"], "unit_id": row["unit_id"],
                "dates": row["days"], "quantity": len(row["days"])}
        lines[row["child__family_id"]].append({**base, "unit_price_cents": price})
        if row["status"] == Attendance.Status.UNBOOKED and conf.pricing.surcharges.unbooked_presence_cents:
            lines[row["child__family_id"]].append({**base, "unit_price_cents": conf.pricing.surcharges.unbooked_presence_cents,
                                                   "surcharge": True, "unbooked": True})


def _create_drafts(run, regie, lines, label, start, end) -> None:
    family_ids = list(lines)
    children = {c.pk: c for c in Child.objects.filter(family_id__in=family_ids).only("first_name", "last_name")}
    units = {u.pk: u for u in Unit.objects.filter(service__regie=regie).select_related("service")}
    invoices = Invoice.objects.bulk_create([
        Invoice(regie=regie, family_id=family_id, run=run, label=label, period_start=start, period_end=end,
                total_cents=sum(line["quantity"] * line["unit_price_cents"] for line in lines[family_id]))
        for family_id in family_ids])
    invoice_lines = []
    for invoice in invoices:
        for position, line in enumerate(lines[invoice.family_id]):
            child, unit = children[line["child_id"]], units[line["unit_id"]]
            text = f"{unit.service.label} – {unit.label}"
            if line.get("unbooked"):
                text = f"Supplément présence sans réservation – {unit.label}"
            elif line.get("surcharge"):
                text = f"Supplément réservation tardive – {unit.label}"
            invoice_lines.append(InvoiceLine(
                invoice=invoice, child_id=child.pk, child_name=f"{child.first_name} {child.last_name}",
                service_id=line["service_id"], unit_id=unit.pk, label=text,
                dates=[d.isoformat() for d in line["dates"]], quantity=line["quantity"],
                unit_price_cents=line["unit_price_cents"], amount_cents=line["quantity"] * line["unit_price_cents"],
                position=position))
    InvoiceLine.objects.bulk_create(invoice_lines, batch_size=2000)


def reserve_invoice_numbers(regie: Regie, year: int, count: int) -> list[str]:
    """``count`` consecutive numbers, reserved under the counter's row lock: two runs issuing
    at once wait for each other, so numbers are unique and leave no gap."""
    InvoiceCounter.objects.get_or_create(regie=regie, year=year)
    counter = InvoiceCounter.objects.select_for_update().get(regie=regie, year=year)
    first = counter.last + 1
    counter.last += count
    counter.save(update_fields=["last"])
    prefix = regie.invoice_prefix
    return [f"{prefix}-{year}-{n:06d}" for n in range(first, first + count)]


def _due_date(regie: Regie, issued_on: date, period_start: date | None) -> date:
    invoicing = regie.invoicing or {}
    if invoicing.get("due_before_period_start") and period_start and period_start > issued_on:
        return period_start - timedelta(days=1)
    return issued_on + timedelta(days=invoicing.get("due_days", 30))


def debtors_of(family_ids) -> dict[int, dict]:
    debtors = {}
    for guardian in Guardian.objects.filter(family_id__in=family_ids, position=1):
        debtors[guardian.family_id] = {
            "name": f"{guardian.get_civility_display()} {guardian.first_name} {guardian.last_name}".strip(),
            # Kept apart too: a titre de recette (PES) needs civility, first and last name.
            "civility": guardian.civility, "first_name": guardian.first_name, "last_name": guardian.last_name,
            "address": guardian.address_line, "complement": guardian.address_complement,
            "postcode": guardian.postcode, "city": guardian.city, "email": guardian.email,
        }
    return debtors


@transaction.atomic
def invoicing_run_issue(*, actor, run_id: int) -> InvoicingRun:
    """Number and issue every draft of the run: from here on the invoices are immutable.

    The numbers are reserved under the counter's row lock, then every draft is numbered,
    dated and given its debtor in one UPDATE (5,000 invoices: one statement, not 5,000)."""
    run = InvoicingRun.objects.select_for_update().select_related("regie").get(pk=run_id)
    if run.status != InvoicingRun.Status.DRAFT:
        raise InvoicingError("Cette facturation a déjà été émise ou abandonnée.")
    count = run.invoices.filter(status=Invoice.Status.DRAFT).count()
    now = timezone.now()
    today = clock.today()
    numbers = reserve_invoice_numbers(run.regie, today.year, count)
    if count:
        _issue_drafts(run, first=int(numbers[0].rsplit("-", 1)[1]), year=today.year, now=now,
                      due=_due_date(run.regie, today, run.period_start))
    run.status, run.issued_at = InvoicingRun.Status.ISSUED, now
    run.save(update_fields=["status", "issued_at"])
    audit_record(actor=actor, action="invoicing.issued", target=f"run:{run.pk}", invoices=count,
                 first=numbers[0] if numbers else "", last=numbers[-1] if numbers else "")
    transaction.on_commit(lambda: _after_issue(run.pk))
    return run


def _issue_drafts(run: InvoicingRun, *, first: int, year: int, now, due: date) -> None:
    """Numbers in (family, pk) order, like ``reserve_invoice_numbers`` gives them; the debtor frozen
    from the family's first guardian (as ``debtors_of`` builds it)."""
    invoices, guardians = Invoice._meta.db_table, Guardian._meta.db_table
    civilities = dict(Guardian._meta.get_field("civility").flatchoices)
    with connection.cursor() as cursor:
        cursor.execute(f"""
            UPDATE {invoices} AS i
               SET number = %(prefix)s || '-' || %(year)s || '-' || lpad((%(first)s + n.rn - 1)::text, 6, '0'),
                   status = CASE WHEN i.total_cents = 0 THEN 'paid' ELSE 'to_pay' END,
                   issued_at = %(now)s, due_date = %(due)s,
                   debtor = COALESCE((
                       SELECT jsonb_build_object(
                                'name', btrim(COALESCE(%(civilities)s::jsonb ->> g.civility, '') || ' '
                                              || g.first_name || ' ' || g.last_name),
                                'civility', g.civility, 'first_name', g.first_name, 'last_name', g.last_name,
                                'address', g.address_line, 'complement', g.address_complement,
                                'postcode', g.postcode, 'city', g.city, 'email', g.email)
                         FROM {guardians} g WHERE g.family_id = i.family_id AND g.position = 1), '{{}}'::jsonb)
              FROM (SELECT id, row_number() OVER (ORDER BY family_id, id) AS rn
                      FROM {invoices} WHERE run_id = %(run)s AND status = 'draft') AS n
             WHERE i.id = n.id""",
            {"prefix": run.regie.invoice_prefix, "year": str(year), "first": first, "now": now, "due": due,
             "run": run.pk, "civilities": json.dumps({k: str(v) for k, v in civilities.items()})})


def _after_issue(run_id: int) -> None:
    """PDFs and "nouvelle facture" e-mails are background work (billing.tasks, when present)."""
    try:
        from marelle.billing.tasks import invoices_issued
    except ImportError:
        return
    invoices_issued.delay(run_id)


@transaction.atomic
def invoicing_run_abandon(*, actor, run_id: int) -> None:
    run = InvoicingRun.objects.select_for_update().get(pk=run_id)
    if run.status != InvoicingRun.Status.DRAFT:
        raise InvoicingError("Seul un brouillon peut être abandonné.")
    run.invoices.filter(status=Invoice.Status.DRAFT).delete()
    run.status = InvoicingRun.Status.CANCELLED
    run.save(update_fields=["status"])
    audit_record(actor=actor, action="invoicing.abandoned", target=f"run:{run.pk}")


@transaction.atomic
def credit_note_create(*, actor, invoice_id: int, amount_cents: int, reason: str) -> Invoice:
    """An avoir referencing an issued invoice; the invoice itself never changes."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if invoice.status in (Invoice.Status.DRAFT, Invoice.Status.CANCELLED) or invoice.kind != Invoice.Kind.INVOICE:
        raise InvoicingError("Un avoir ne peut porter que sur une facture émise.")
    already = -(invoice.credit_notes.aggregate(total=Sum("total_cents"))["total"] or 0)
    if not 0 < amount_cents <= invoice.total_cents - already:
        raise InvoicingError(f"Montant de l'avoir invalide (au plus {invoice.total_cents - already} centimes).")
    if not reason.strip():
        raise InvoicingError("Le motif de l'avoir est obligatoire.")
    if amount_cents > invoice.balance_cents:
        # What was already paid is given back through a refund of the payment, which keeps
        # the régie's cash and the family's credit consistent.
        raise InvoicingError(f"L'avoir dépasse ce qui reste à payer ({invoice.balance_cents} centimes) : pour la part "
                             "déjà réglée, enregistrez un remboursement du paiement.")
    now = timezone.now()
    [number] = reserve_invoice_numbers(invoice.regie, clock.today().year, 1)
    credit = Invoice.objects.create(
        regie=invoice.regie, family=invoice.family, kind=Invoice.Kind.CREDIT_NOTE, credited_invoice=invoice,
        number=number, label=f"Avoir sur la facture {invoice.number} : {reason.strip()}", status=Invoice.Status.PAID,
        total_cents=-amount_cents, paid_cents=-amount_cents, debtor=invoice.debtor, issued_at=now,
        period_start=invoice.period_start, period_end=invoice.period_end)
    InvoiceLine.objects.create(invoice=credit, label=reason.strip(), quantity=1, unit_price_cents=-amount_cents,
                               amount_cents=-amount_cents)
    # The credit settles that much of the invoice (what the family owes goes down).
    invoice.paid_cents += amount_cents
    if invoice.status in (Invoice.Status.TO_PAY, Invoice.Status.PARTIALLY_PAID):
        invoice.status = Invoice.Status.PAID if invoice.paid_cents >= invoice.total_cents else Invoice.Status.PARTIALLY_PAID
    invoice.save(update_fields=["paid_cents", "status"])
    audit_record(actor=actor, action="invoice.credited", target=f"invoice:{invoice.number}",
                 family_id=invoice.family_id, credit_note=number, amount_cents=amount_cents)
    return credit


MONTH_NAMES = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
               "novembre", "décembre")


def _month_bounds(year: int, month: int) -> tuple[date, date]:
    first = date(year, month, 1)
    following = date(year + (month == 12), month % 12 + 1, 1)
    return first, following - timedelta(days=1)


def scheduled_runs_due(regie: Regie, today: date) -> list[tuple[date, date, str]]:
    """The (start, end, label) runs the régie's YAML (``invoicing``) asks to draft on or after
    its ``issue_day`` this month: the previous month (``monthly``), or each service period
    that ended last month (``per_period``; with ``due_before_period_start``, each period
    starting next month, billed before it starts)."""
    invoicing = regie.invoicing or {}
    if today.day < int(invoicing.get("issue_day", 5)):
        return []
    if invoicing.get("frequency", "monthly") == "monthly":
        previous = today.replace(day=1) - timedelta(days=1)
        start, end = _month_bounds(previous.year, previous.month)
        return [(start, end, f"{MONTH_NAMES[previous.month - 1].capitalize()} {previous.year}")]
    from marelle.catalog.models import Period

    if invoicing.get("due_before_period_start"):
        upcoming = (today.replace(day=28) + timedelta(days=7)).replace(day=1)
        window = _month_bounds(upcoming.year, upcoming.month)
        periods = Period.objects.filter(service__regie=regie, start__range=window)
    else:
        previous = today.replace(day=1) - timedelta(days=1)
        periods = Period.objects.filter(service__regie=regie, end__range=_month_bounds(previous.year, previous.month))
    runs = {}
    for period in periods.order_by("start", "end", "pk"):
        runs.setdefault((period.start, period.end), period.label[:100])
    return [(start, end, label) for (start, end), label in runs.items()]


def draft_scheduled_runs(*, today: date | None = None) -> list[InvoicingRun]:
    """Draft, in the current commune, the runs every régie's calendar asks for today; a run
    that exists already for the period (even abandoned by staff) is not made again. Staff
    review and issue the drafts. Two concurrent calls draft each run once (constraint)."""
    today = today or clock.today()
    drafted = []
    for regie in Regie.objects.filter(archived_at__isnull=True).order_by("pk"):
        for start, end, label in scheduled_runs_due(regie, today):
            if InvoicingRun.objects.filter(regie=regie, period_start=start, period_end=end).exists():
                continue
            try:
                drafted.append(invoicing_run_draft(actor=None, regie=regie, period_start=start, period_end=end,
                                                   label=label))
            except InvoicingError:
                continue  # drafted meanwhile by staff or another worker
    return drafted


def family_invoices(family: Family):
    return (Invoice.objects.filter(family=family).exclude(status=Invoice.Status.DRAFT)
            .select_related("regie").prefetch_related("lines").order_by("-issued_at", "-pk"))
