"""Background work of the billing: PDFs and e-mails after an invoicing run is issued,
reminders of unpaid invoices.

Tasks run in the schema of the commune that enqueued them (tenant-schemas-celery); they
take ids, never model instances, and are safe to run twice.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.utils import uuid
from django.db import transaction

from marelle.audit.models import AuditEvent
from marelle.audit.services import audit_record
from marelle.billing.models import Invoice, InvoicingRun
from marelle.billing.pricing import format_euros
from marelle.billing.selectors import (
    REMINDER_ACTION,
    UNPAID,
    long_date,
    online_note,
    payment_channel,
)
from marelle.celery import app as celery_app
from marelle.core.emails import send_templated_email

try:  # registered here so that Celery's autodiscovery (billing.tasks) finds it
    from marelle.billing.reconciliation import reconcile_pending_payments  # noqa: F401
except ImportError:  # the settlement work has not landed yet
    pass

from marelle.billing.baskets import expire_unpaid_baskets  # noqa: E402,F401 - registered for beat

logger = logging.getLogger(__name__)

#: Invoices per sub-task when a run is issued (PDFs take ~0.1 s each).
CHUNK = 50
NOTIFIED_ACTION = "invoice.notified"


class EagerSafeTask(celery_app.Task):
    """The app's (tenant-aware) task class, except in eager mode (tests, the demo without a
    broker): there Celery wraps ``delay()`` in ``denied_join_result()``, which flips a
    *process-global* flag; two threads issuing runs at the same moment (the numbering race
    test, a threaded dev server) can leave it set, and every later ``result.get()`` fails with
    "Never call result.get() within a task". Applying directly avoids the flag."""

    abstract = True

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None,
                    shadow=None, **options):
        if self._get_app().conf.task_always_eager:
            return self.apply(args, kwargs, task_id=task_id or uuid(), link=link, link_error=link_error,
                              **options)
        return super().apply_async(args, kwargs, task_id=task_id, producer=producer, link=link,
                                   link_error=link_error, shadow=shadow, **options)


def _recipients(invoice: Invoice) -> list[str]:
    """The debtor's address at issue time, else the family's guardians with an address."""
    email = (invoice.debtor or {}).get("email")
    if email:
        return [email]
    return sorted({g.email for g in invoice.family.guardians.all() if g.email})


def _links(invoice: Invoice) -> tuple[str, str]:
    from django.urls import reverse

    from marelle.billing.pdf import portal_url

    try:
        detail = reverse("billing:invoice", args=[invoice.pk])
        listing = reverse("billing:invoices")
    except Exception:  # noqa: BLE001 - URLs not mounted (tests of the core): no links
        return "", ""
    return portal_url(detail), portal_url(listing)


def notify_invoice_issued(invoice: Invoice) -> bool:
    """E-mail "nouvelle facture disponible" (once per invoice: recorded in the audit)."""
    target = f"invoice:{invoice.number}"
    if AuditEvent.objects.filter(action=NOTIFIED_ACTION, target=target).exists():
        return False
    recipients = _recipients(invoice)
    if not recipients:
        logger.info("invoice %s: no e-mail address to notify", invoice.number)
        return False
    channel = payment_channel(invoice.regie)
    link, listing = _links(invoice)
    with transaction.atomic():
        send_templated_email(to=recipients, template="invoice_issued", context={
            "invoice": invoice, "debtor": invoice.debtor or {}, "total": format_euros(invoice.total_cents),
            "balance": format_euros(invoice.balance_cents), "due_date": long_date(invoice.due_date),
            "channel": channel, "note": online_note(invoice, channel), "link": link, "listing": listing,
        })
        audit_record(actor=None, action=NOTIFIED_ACTION, target=target, family_id=invoice.family_id)
    return True


def _issued(ids):
    return (Invoice.objects.filter(pk__in=ids).exclude(status=Invoice.Status.DRAFT)
            .select_related("regie", "credited_invoice", "family").prefetch_related("lines", "family__guardians")
            .order_by("pk"))


@shared_task(name="marelle.billing.invoices_issued_chunk", base=EagerSafeTask)
def invoices_issued_chunk(invoice_ids: list[int]) -> dict:
    """PDF then e-mail for each invoice; one failing PDF never stops the others (the
    download view renders a missing PDF on the fly)."""
    from marelle.billing.pdf import store_invoice_pdf, stored_pdf_is_current

    done = {"pdf": 0, "pdf_failed": 0, "emails": 0}
    for invoice in _issued(invoice_ids):
        if not stored_pdf_is_current(invoice):
            try:
                store_invoice_pdf(invoice)
                done["pdf"] += 1
            except Exception:  # noqa: BLE001 - logged; the next download retries
                done["pdf_failed"] += 1
                logger.exception("invoice %s: PDF generation failed", invoice.number)
        if invoice.kind == Invoice.Kind.INVOICE and notify_invoice_issued(invoice):
            done["emails"] += 1
    return done


@shared_task(name="marelle.billing.invoices_issued", base=EagerSafeTask)
def invoices_issued(run_id: int) -> int:
    """Enqueued by ``invoicing_run_issue`` after commit: fan the run's invoices out in chunks."""
    run = InvoicingRun.objects.filter(pk=run_id, status=InvoicingRun.Status.ISSUED).first()
    if run is None:
        logger.warning("invoices_issued: run %s is not issued", run_id)
        return 0
    ids = list(run.invoices.exclude(status=Invoice.Status.DRAFT).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), CHUNK):
        invoices_issued_chunk.delay(ids[start:start + CHUNK])
    return len(ids)


@shared_task(name="marelle.billing.invoice_pdf", base=EagerSafeTask)
def invoice_pdf(invoice_id: int) -> bool:
    """(Re)generate one invoice's PDF, e.g. after a credit note."""
    from marelle.billing.pdf import store_invoice_pdf, stored_pdf_is_current

    invoice = _issued([invoice_id]).first()
    if invoice is None or stored_pdf_is_current(invoice):
        return False
    store_invoice_pdf(invoice)
    return True


def invoice_remind(*, actor, invoice_ids) -> tuple[int, list[str]]:
    """E-mail a reminder for each unpaid invoice of ``invoice_ids``; returns how many were
    sent and the numbers that could not be (paid meanwhile, no address). Audited per invoice."""
    sent, skipped = 0, []
    invoices = _issued(invoice_ids).filter(kind=Invoice.Kind.INVOICE)
    with transaction.atomic():
        for invoice in invoices:
            recipients = _recipients(invoice)
            if invoice.status not in UNPAID or invoice.balance_cents <= 0 or not recipients:
                skipped.append(invoice.number)
                continue
            channel = payment_channel(invoice.regie)
            link, listing = _links(invoice)
            send_templated_email(to=recipients, template="invoice_reminder", context={
                "invoice": invoice, "debtor": invoice.debtor or {}, "total": format_euros(invoice.total_cents),
                "balance": format_euros(invoice.balance_cents), "due_date": long_date(invoice.due_date),
                "channel": channel, "note": online_note(invoice, channel), "link": link, "listing": listing,
            })
            audit_record(actor=actor, action=REMINDER_ACTION, target=f"invoice:{invoice.number}",
                         family_id=invoice.family_id, balance_cents=invoice.balance_cents)
            sent += 1
    return sent, skipped


@shared_task(name="marelle.billing.tasks.draft_scheduled_invoicing_runs")
def draft_scheduled_invoicing_runs() -> list[int]:
    """Per commune, every morning (beat): draft the runs due on the régies' issue days."""
    from marelle.billing.invoicing import draft_scheduled_runs

    runs = draft_scheduled_runs()
    if runs:
        logger.info("invoicing runs drafted: %s", [r.pk for r in runs])
    return [r.pk for r in runs]
