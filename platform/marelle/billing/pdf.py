"""Invoice and credit-note PDFs, rendered by WeasyPrint from an HTML template.

``render_invoice_pdf(invoice)`` returns the bytes. The PDF is cached in ``Invoice.pdf`` on
the commune's own storage (MEDIA_ROOT/<schema>/factures/, never served directly: the
download views check who asks). The Celery task generates it once when the invoice is
issued; a download generates it on the fly when it is missing.

The document shows what was already paid and what is left, so the cached file is tied to
the invoice's state: its name carries a short digest of (status, paid amount). When a
payment or an avoir changes that state, the next download renders and stores a new one.
No request ever leaves the machine while rendering: only ``data:`` URLs are fetched.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from marelle.billing.models import Invoice
from marelle.billing.pricing import format_euros
from marelle.billing.selectors import (
    invoice_state_label,
    lines_by_child,
    local_date,
    long_date,
    payment_channel,
    payment_instructions,
    period_text,
    short_date,
)
from marelle.core.commune import current_config

logger = logging.getLogger(__name__)
# WeasyPrint reports each rendering step at INFO: seven lines per invoice in the worker's log.
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)

TEMPLATE = "billing/pdf/invoice.html"


def portal_url(path: str = "") -> str:
    """The commune's portal address (its primary domain), for texts rendered outside a request."""
    tenant = getattr(connection, "tenant", None)
    domain = None
    try:
        primary = tenant.get_primary_domain() if tenant is not None else None
        domain = primary.domain if primary is not None else None
    except Exception:  # noqa: BLE001 - no domain row: the text simply goes without it
        domain = None
    if not domain:
        return ""
    scheme = "https" if getattr(settings, "IS_PRODUCTION", False) else "http"
    return f"{scheme}://{domain}{path}"


def family_invoices_path() -> str:
    try:
        return reverse("billing:invoices")
    except NoReverseMatch:
        return "/factures/"


def invoice_pdf_context(invoice: Invoice) -> dict:
    identity = current_config().identity
    channel = payment_channel(invoice.regie)
    is_credit = invoice.kind == Invoice.Kind.CREDIT_NOTE
    logo = identity.branding.logo or ""
    return {
        "invoice": invoice,
        "is_credit": is_credit,
        "title": "Avoir" if is_credit else "Facture",
        "identity": identity,
        "primary": identity.branding.primary_color,
        "secondary": identity.branding.secondary_color,
        "logo": logo if logo.startswith("data:") else "",
        "regie": invoice.regie,
        "credited_number": invoice.credited_invoice.number if is_credit and invoice.credited_invoice_id else "",
        "issued_on": short_date(local_date(invoice.issued_at)),
        "due_on": short_date(invoice.due_date),
        "due_on_long": long_date(invoice.due_date),
        "period": period_text(invoice.period_start, invoice.period_end),
        "debtor": invoice.debtor or {},
        "family_reference": f"F{invoice.family_id:06d}",
        "groups": lines_by_child(invoice.lines.all()),
        "total": format_euros(invoice.total_cents),
        "total_abs": format_euros(abs(invoice.total_cents)),
        "paid": format_euros(invoice.paid_cents),
        "balance": format_euros(invoice.balance_cents),
        "state_label": invoice_state_label(invoice),
        "instructions": payment_instructions(invoice, channel, portal_url=portal_url(family_invoices_path())),
        "channel": channel,
    }


def _url_fetcher():
    from weasyprint.urls import URLFetcher

    return URLFetcher(allowed_protocols={"data"}, fail_on_errors=False)


def render_invoice_pdf(invoice: Invoice) -> bytes:
    """The PDF of an issued invoice or credit note, in the current commune's schema."""
    from weasyprint import HTML

    html = render_to_string(TEMPLATE, invoice_pdf_context(invoice))
    return HTML(string=html, url_fetcher=_url_fetcher()).write_pdf()


# --- Cache in Invoice.pdf --------------------------------------------------------------------


def pdf_cache_stem(invoice: Invoice) -> str:
    """``factures/SCO-2026-000001_1a2b3c4d``: the state the stored PDF was rendered for."""
    digest = hashlib.sha256(f"{invoice.status}|{invoice.paid_cents}|{invoice.total_cents}".encode()).hexdigest()[:8]
    return f"factures/{invoice.number}_{digest}"


def stored_pdf_is_current(invoice: Invoice) -> bool:
    name = invoice.pdf.name if invoice.pdf else ""
    if not name or not name.startswith(pdf_cache_stem(invoice)):
        return False
    return invoice.pdf.storage.exists(name)


def store_invoice_pdf(invoice: Invoice, *, data: bytes | None = None) -> bytes:
    """Render (unless ``data`` is given) and store the PDF; only the ``pdf`` column is
    written, so a payment settled meanwhile is never overwritten."""
    if invoice.status == Invoice.Status.DRAFT or not invoice.number:
        raise ValueError("Un brouillon n'a pas de PDF.")
    data = data if data is not None else render_invoice_pdf(invoice)
    previous = invoice.pdf.name if invoice.pdf else ""
    storage = invoice.pdf.storage
    # Resolve the storage's location now (it depends on the schema active now).
    name = storage.save(f"{pdf_cache_stem(invoice)}.pdf", ContentFile(data))
    Invoice.objects.filter(pk=invoice.pk).update(pdf=name)
    invoice.pdf.name = name
    if previous and previous != name:
        try:
            storage.delete(previous)
        except OSError:
            logger.warning("invoice %s: could not delete the outdated PDF %s", invoice.pk, previous)
    return data


def invoice_pdf_bytes(invoice: Invoice) -> bytes:
    """The cached PDF when it matches the invoice's current state, else a fresh one (stored)."""
    if stored_pdf_is_current(invoice):
        try:
            with invoice.pdf.open("rb") as handle:
                return handle.read()
        except FileNotFoundError:
            logger.warning("invoice %s: cached PDF %s vanished", invoice.pk, invoice.pdf.name)
    return store_invoice_pdf(invoice)


def pdf_filename(invoice: Invoice) -> str:
    prefix = "avoir" if invoice.kind == Invoice.Kind.CREDIT_NOTE else "facture"
    return f"{prefix}-{invoice.number}.pdf"
