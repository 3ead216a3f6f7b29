"""Invoices handed to the Trésor public (or any recovery channel): the business rules.

The flow, for a régie whose ``payment.plugin`` names a recovery channel:

1. :func:`batch_prepare` — a draft batch (bordereau) of the régie's issued invoices that are
   still wholly unpaid; each invoice the channel cannot transmit (no first name, bad postcode…)
   is left out, with why. An invoice is in at most one live batch (row locks, and a partial
   unique index as the last word).
2. :func:`batch_export` — numbers (batch and pièces, from the counter of the channel's
   numbering scope and the exercice, under a row lock, never reused), the file built by the
   channel (which refuses a file its validator rejects), stored under the commune's media;
   each invoice becomes "transmise au Trésor public": a règlement of means
   ``tresor_public`` is allocated to it for its whole amount. That is the régie's transfer
   entry: the invoice is closed at the régie (nothing left to pay on the portal, no reminder,
   no desk payment, the family's balance is right), the régie's journal of money received
   leaves it out (``billing.selectors._received``), and the payments export shows it under its
   own means. Everything happens in one transaction: a refusal numbers nothing.
3. :func:`feedback_import` — a file read back (acquittement, PES Retour) is parsed by the
   channel (a malformed file changes nothing), then each fact not applied before (its key is
   recorded once per numbering scope) is applied: refused → the batch (or pièce) is rejected,
   its invoices reopen ("à payer": the transmission règlement is cancelled) so that a new
   batch re-issues them under new numbers; collected → the invoice is paid ("réglée auprès du
   Trésor public"); partially collected → it stays transmitted with the amount recovered; facts
   about numbers Marelle never issued are reported, not dropped.

Invoices are only ever wholly transmitted: an invoice already partly paid at the régie (or
reduced by an avoir) is left out, to be settled at the régie, because a titre carries the
invoice's lines and its PDF, which must add up to the amount claimed.

Lock order (as in the settlement core, so that no two services deadlock): recovery rows, then
payment attempts (by pk), then invoices (by pk).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date

from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Prefetch, Q

from marelle.audit.models import AuditEvent
from marelle.audit.services import audit_record
from marelle.billing.models import Allocation, Invoice, InvoiceLine, PaymentAttempt
from marelle.billing.pricing import format_euros
from marelle.catalog.models import Regie
from marelle.core import clock
from marelle.plugin_api import RecoveryBatch as BatchData
from marelle.plugin_api import (
    RecoveryChannel,
    RecoveryFeedback,
    RecoveryFileError,
    RecoveryInvoice,
    RecoveryLine,
)
from marelle.plugin_api.manager import (
    PluginError,
    create_recovery_channel,
    recovery_channel_classes,
)
from marelle.recovery.models import (
    AppliedFeedback,
    FeedbackFile,
    RecoveryBatch,
    RecoveryCounter,
    RecoveryItem,
)

logger = logging.getLogger(__name__)

Status = RecoveryItem.Status
BatchState = RecoveryBatch.State

MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")
# Progress of a pièce at the comptable: a rôle-wide fact never moves a pièce back.
RANK = {Status.EXPORTED: 0, Status.ACCEPTED: 1, Status.PENDING: 2, Status.TAKEN: 3, Status.PARTIALLY_COLLECTED: 4,
        Status.COLLECTED: 5, Status.WRITTEN_OFF: 5}
CLOSED = (Status.REJECTED, Status.CANCELLED, Status.ABANDONED)
FACT_STATUS = {"accepted": Status.ACCEPTED, "pending": Status.PENDING, "taken": Status.TAKEN,
               "partially_collected": Status.PARTIALLY_COLLECTED, "collected": Status.COLLECTED,
               "written_off": Status.WRITTEN_OFF, "rejected": Status.REJECTED, "cancelled": Status.CANCELLED}


class RecoveryError(Exception):
    """A refusal for the régisseur (French); ``messages`` details it (one line per problem)."""

    def __init__(self, message: str, *, messages: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.messages = list(messages or [])


# --- Channels --------------------------------------------------------------------------------


def recovery_regies():
    """The commune's active régies whose plugin offers a recovery channel."""
    return Regie.objects.active().filter(payment_plugin__in=list(recovery_channel_classes())).order_by("label")


def channel_for(regie: Regie) -> RecoveryChannel:
    if regie.payment_plugin not in recovery_channel_classes():
        raise RecoveryError(f"La « {regie.label} » ne transmet pas ses factures au Trésor public.")
    try:
        return create_recovery_channel(regie.payment_plugin, regie.payment_settings or {})
    except PluginError as error:
        raise RecoveryError(f"Réglages de la « {regie.label} » inutilisables : {error}") from None


def _require_staff(actor) -> None:
    if not getattr(actor, "is_commune_staff", False):
        raise RecoveryError("Opération réservée au personnel de la commune.")


def _user_or_none(actor):
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None


def month_label(day: date) -> str:
    return f"{MONTHS[day.month - 1]} {day.year}"


# --- Plain data for the channel ---------------------------------------------------------------


def _lines_prefetch():
    return Prefetch("lines", queryset=InvoiceLine.objects.select_related("service").order_by("position", "pk"))


def recovery_invoice(invoice: Invoice, *, piece_number: int | None = None, pdf: bytes | None = None,
                     lines=None) -> RecoveryInvoice:
    """An invoice as the channel sees it (``lines``, or its lines prefetched with their service)."""
    lines = invoice.lines.all() if lines is None else lines
    issued = clock.local_now().date() if invoice.issued_at is None else invoice.issued_at.astimezone(clock.PARIS).date()
    return RecoveryInvoice(
        number=invoice.number, amount_cents=invoice.total_cents, issued_on=issued, due_on=invoice.due_date,
        label=invoice.label, debtor=dict(invoice.debtor or {}), piece_number=piece_number, pdf=pdf,
        family_reference=f"F{invoice.family_id:06d}",
        lines=[RecoveryLine(label=line.label, amount_cents=line.amount_cents, quantity=line.quantity,
                            child_name=line.child_name, group=line.service.label if line.service_id else "",
                            service_code=line.service.code if line.service_id else "")
               for line in lines])


def _batch_data(batch: RecoveryBatch, invoices: list[RecoveryInvoice], *, exercice: int, sequence: int,
                issued_on: date) -> BatchData:
    tenant = getattr(connection, "tenant", None)
    return BatchData(commune_slug=getattr(tenant, "slug", "") or connection.schema_name, regie_code=batch.regie.code,
                     exercice=exercice, sequence=sequence, created_at=batch.created_at, invoices=invoices,
                     label=batch.label, issued_on=issued_on, commune_name=getattr(tenant, "name", "") or "")


# --- Preparing a batch -------------------------------------------------------------------------


def _live_item(invoice_ref="pk"):
    return RecoveryItem.objects.filter(invoice=OuterRef(invoice_ref), status__in=RecoveryItem.LIVE)


def transmissible_invoices(regie: Regie):
    """The régie's issued invoices, wholly unpaid, in no live batch (oldest first)."""
    return (Invoice.objects.filter(regie=regie, kind=Invoice.Kind.INVOICE, status=Invoice.Status.TO_PAY,
                                   paid_cents=0, total_cents__gt=0)
            .exclude(number="").filter(~Exists(_live_item())).order_by("issued_at", "pk"))


def partly_paid_invoices(regie: Regie):
    """Unpaid invoices a batch cannot carry: partly paid at the régie or reduced by an avoir."""
    return (Invoice.objects.filter(regie=regie, kind=Invoice.Kind.INVOICE, status=Invoice.Status.PARTIALLY_PAID)
            .filter(~Exists(_live_item())).order_by("issued_at", "pk"))


def _partly_paid_entry(invoice: Invoice) -> dict:
    return {"invoice_id": invoice.pk, "number": invoice.number, "messages": [
        f"Facture {invoice.number} : déjà réglée en partie à la régie ({format_euros(invoice.paid_cents)} sur "
        f"{format_euros(invoice.total_cents)}) ; un titre porte sur une facture entière : le reste "
        f"({format_euros(invoice.balance_cents)}) se règle à la régie."]}


@dataclass
class Preview:
    """What "Préparer un bordereau" shows before anything is written."""

    regie: Regie
    included: list[Invoice]
    left_out: list[dict]
    blocking: list[str]  # problems of the régie's settings: nothing can be exported

    @property
    def total_cents(self) -> int:
        return sum(i.total_cents for i in self.included)


def _split(channel: RecoveryChannel, invoices) -> tuple[list[Invoice], list[dict]]:
    included, left_out = [], []
    for invoice in invoices:
        problems = channel.check_invoice(recovery_invoice(invoice))
        if problems:
            left_out.append({"invoice_id": invoice.pk, "number": invoice.number, "messages": problems})
        else:
            included.append(invoice)
    return included, left_out


def _settings_problems(channel: RecoveryChannel, batch_label: str) -> list[str]:
    """The batch-wide problems (the channel's settings): check_batch of an empty batch, less
    the complaint that it is empty."""
    empty = BatchData(commune_slug="", regie_code="", exercice=clock.today().year, sequence=0,
                      created_at=clock.now(), invoices=(), label=batch_label)
    return [m for m in channel.check_batch(empty) if "aucune facture" not in m]


def batch_preview(regie: Regie) -> Preview:
    channel = channel_for(regie)
    invoices = list(transmissible_invoices(regie).prefetch_related(_lines_prefetch()))
    included, left_out = _split(channel, invoices)
    left_out += [_partly_paid_entry(i) for i in partly_paid_invoices(regie)]
    return Preview(regie=regie, included=included, left_out=left_out,
                   blocking=_settings_problems(channel, f"Factures {regie.label}"))


@transaction.atomic
def batch_prepare(*, staff, regie: Regie, label: str = "") -> RecoveryBatch:
    """A draft batch of every transmissible invoice of ``regie`` the channel accepts."""
    _require_staff(staff)
    channel = channel_for(regie)
    label = (label or "").strip() or f"{regie.label} – {month_label(clock.today())}"
    if len(label) > RecoveryBatch._meta.get_field("label").max_length:
        raise RecoveryError("Libellé trop long (150 caractères au plus).")
    # One preparation at a time per régie: the second waits, then finds the invoices taken.
    Regie.objects.select_for_update(no_key=True).filter(pk=regie.pk).first()
    invoices = list(transmissible_invoices(regie).select_for_update(no_key=True, of=("self",))
                    .prefetch_related(_lines_prefetch()))
    included, left_out = _split(channel, invoices)
    left_out += [_partly_paid_entry(i) for i in partly_paid_invoices(regie)]
    if not included:
        raise RecoveryError("Aucune facture à transmettre pour cette régie.",
                            messages=[m for entry in left_out for m in entry["messages"]])
    batch = RecoveryBatch.objects.create(
        regie=regie, channel=channel.identifier, budget_key=channel.budget_key(), label=label,
        invoice_count=len(included), total_cents=sum(i.total_cents for i in included), left_out=left_out,
        created_by=_user_or_none(staff))
    try:
        with transaction.atomic():
            RecoveryItem.objects.bulk_create([RecoveryItem(batch=batch, invoice=i, amount_cents=i.total_cents)
                                              for i in included])
    except IntegrityError:
        raise RecoveryError("Des factures viennent d'être mises dans un autre bordereau : recommencez.") from None
    audit_record(actor=staff, action="recovery.batch_prepared", target=f"recovery_batch:{batch.pk}",
                 regie=regie.code, invoices=len(included), total_cents=batch.total_cents, left_out=len(left_out))
    return batch


@transaction.atomic
def batch_abandon(*, staff, batch_id: int) -> RecoveryBatch:
    """Drop a draft: its invoices are free again; no number was given."""
    _require_staff(staff)
    batch = RecoveryBatch.objects.select_for_update().get(pk=batch_id)
    if batch.state != BatchState.DRAFT:
        raise RecoveryError("Seul un brouillon de bordereau peut être abandonné.")
    batch.items.update(status=Status.ABANDONED)
    batch.state = BatchState.ABANDONED
    batch.save(update_fields=["state"])
    audit_record(actor=staff, action="recovery.batch_abandoned", target=f"recovery_batch:{batch.pk}")
    return batch


# --- Export ------------------------------------------------------------------------------------


def _allocate_numbers(budget_key: str, exercice: int, pieces: int) -> tuple[int, int]:
    """(batch number, first pièce number), advancing the counter under its row lock: two
    exports of the same budget wait for each other and never share a number."""
    RecoveryCounter.objects.bulk_create([RecoveryCounter(budget_key=budget_key, exercice=exercice)],
                                        ignore_conflicts=True)
    counter = RecoveryCounter.objects.select_for_update().get(budget_key=budget_key, exercice=exercice)
    sequence, first = counter.last_batch + 1, counter.last_piece + 1
    counter.last_batch, counter.last_piece = sequence, counter.last_piece + pieces
    counter.save(update_fields=["last_batch", "last_piece"])
    return sequence, first


def _pdf(invoice: Invoice) -> bytes:
    from marelle.billing.pdf import invoice_pdf_bytes

    return invoice_pdf_bytes(invoice)


@transaction.atomic
def batch_export(*, staff, batch_id: int, today: date | None = None) -> RecoveryBatch:
    """Number the draft, build and store its file, and transmit its invoices (see the module
    docstring). A refusal (file the channel cannot build) leaves everything as it was."""
    _require_staff(staff)
    batch = RecoveryBatch.objects.select_for_update().select_related("regie").get(pk=batch_id)
    if batch.state != BatchState.DRAFT:
        raise RecoveryError("Ce bordereau a déjà été généré ou abandonné.")
    channel = channel_for(batch.regie)
    if channel.budget_key() != batch.budget_key:
        raise RecoveryError("Les réglages Trésor public de la régie ont changé depuis la préparation : abandonnez "
                            "ce brouillon et préparez-en un nouveau.")
    items = list(batch.items.filter(status=Status.DRAFT).order_by("pk"))
    invoices = {i.pk: i for i in Invoice.objects.select_for_update(no_key=True)
                .filter(pk__in=[item.invoice_id for item in items]).order_by("pk")}
    # Lines are read apart: a locking query with a prefetch would lock the lines too.
    lines: dict[int, list[InvoiceLine]] = {}
    for line in InvoiceLine.objects.filter(invoice_id__in=list(invoices)).select_related("service").order_by(
            "invoice_id", "position", "pk"):
        lines.setdefault(line.invoice_id, []).append(line)
    kept, dropped = [], []
    for item in items:
        invoice = invoices[item.invoice_id]
        if invoice.status == Invoice.Status.TO_PAY and invoice.paid_cents == 0 and invoice.total_cents == item.amount_cents:
            kept.append(item)
        else:
            dropped.append(item)
    for item in dropped:  # paid or reduced at the régie since the preparation
        invoice = invoices[item.invoice_id]
        batch.left_out.append({"invoice_id": invoice.pk, "number": invoice.number, "messages": [
            f"Facture {invoice.number} : réglée ou modifiée à la régie depuis la préparation, retirée du bordereau."]})
        item.status = Status.ABANDONED
    if not kept:
        raise RecoveryError("Plus aucune facture de ce brouillon n'est à transmettre : abandonnez-le.")
    kept.sort(key=lambda item: invoices[item.invoice_id].number)

    today = today or clock.today()
    exercice = today.year
    sequence, first_piece = _allocate_numbers(batch.budget_key, exercice, len(kept))
    data = []
    for offset, item in enumerate(kept):
        invoice = invoices[item.invoice_id]
        item.piece_number = first_piece + offset
        data.append(recovery_invoice(invoice, piece_number=item.piece_number, lines=lines.get(invoice.pk, []),
                                     pdf=_pdf(invoice) if channel.needs_pdf else None))
    try:
        export = channel.export(_batch_data(batch, data, exercice=exercice, sequence=sequence, issued_on=today))
    except ValueError as error:
        details = list(getattr(error, "errors", None) or [str(error)])
        raise RecoveryError("Le fichier n'a pas pu être généré : rien n'a été numéroté ni transmis.",
                            messages=details) from None

    now = clock.now()
    user = _user_or_none(staff)
    payments = []
    for item in kept:
        invoice = invoices[item.invoice_id]
        item.reference = export.references.get(invoice.number, f"{exercice}/{sequence}/{item.piece_number}")[:40]
        payments.append(PaymentAttempt(
            regie=batch.regie, family_id=invoice.family_id, means=PaymentAttempt.Means.TRESOR_PUBLIC,
            state=PaymentAttempt.State.PAID, amount_cents=invoice.balance_cents, provider=channel.identifier,
            reference=item.reference, created_by=user, settled_at=now,
            settings_snapshot={"recovery_batch": batch.pk, "recovery_status": Status.EXPORTED, "recovered_cents": 0}))
    PaymentAttempt.objects.bulk_create(payments, batch_size=1000)
    allocations = []
    for item, payment in zip(kept, payments, strict=True):
        invoice = invoices[item.invoice_id]
        allocations.append(Allocation(payment=payment, invoice=invoice, amount_cents=payment.amount_cents))
        item.payment = payment
        item.status, item.budget_key, item.exercice = Status.EXPORTED, batch.budget_key, exercice
    Allocation.objects.bulk_create(allocations, batch_size=2000)
    # One statement: every kept invoice was checked (locked) wholly unpaid, so the transfer
    # entry pays exactly its total.
    Invoice.objects.filter(pk__in=[item.invoice_id for item in kept]).update(
        paid_cents=F("total_cents"), status=Invoice.Status.TRANSMITTED)
    # The draft rows are replaced by the exported ones: two statements, where an UPDATE of
    # per-row values would be one CASE per row and column (seconds for thousands of pièces).
    RecoveryItem.objects.filter(pk__in=[item.pk for item in dropped]).update(status=Status.ABANDONED)
    with connection.cursor() as cursor:  # one statement (the ORM deletes in chunks of 100 rows)
        cursor.execute(f"DELETE FROM {RecoveryItem._meta.db_table} WHERE batch_id = %s AND status = %s",
                       [batch.pk, Status.DRAFT])
    for item in kept:
        item.pk = None
    RecoveryItem.objects.bulk_create(kept, batch_size=2000)

    batch.file.save(export.filename, ContentFile(export.content), save=False)
    batch.filename = export.filename
    batch.sha256 = hashlib.sha256(export.content).hexdigest()
    batch.state, batch.exercice, batch.sequence = BatchState.EXPORTED, exercice, sequence
    batch.invoice_count = len(kept)
    batch.total_cents = sum(item.amount_cents for item in kept)
    batch.settings_snapshot = dict(batch.regie.payment_settings or {})
    batch.exported_by, batch.exported_at = user, now
    batch.save()
    audit_record(actor=staff, action="recovery.batch_exported", target=f"recovery_batch:{batch.pk}",
                 regie=batch.regie.code, exercice=exercice, sequence=sequence, first_piece=first_piece,
                 invoices=len(kept), total_cents=batch.total_cents, file=export.filename, sha256=batch.sha256)
    AuditEvent.objects.bulk_create([
        AuditEvent(actor=user, action="invoice.transmitted", target=f"invoice:{invoices[item.invoice_id].number}",
                   family_id=invoices[item.invoice_id].family_id,
                   details={"batch": batch.pk, "reference": item.reference, "amount_cents": item.amount_cents})
        for item in kept], batch_size=2000)
    return batch


def batch_content(batch: RecoveryBatch) -> bytes:
    """The stored file, byte for byte (checked against the hash recorded at export)."""
    with batch.file.open("rb") as handle:
        content = handle.read()
    if hashlib.sha256(content).hexdigest() != batch.sha256:
        raise RecoveryError("Le fichier stocké ne correspond plus à celui généré : contactez l'assistance.")
    return content


# --- Feedback ----------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    documents: list[str] = field(default_factory=list)
    facts: int = 0
    already_applied: int = 0
    changes: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"documents": self.documents, "facts": self.facts, "already_applied": self.already_applied,
                "changes": self.changes, "unmatched": self.unmatched, "notes": self.notes}


class _Books:
    """The rows one import touches, locked once, written back once."""

    def __init__(self, budget_key: str, facts: list[RecoveryFeedback]):
        exported = RecoveryBatch.objects.filter(budget_key=budget_key).exclude(state__in=[BatchState.DRAFT,
                                                                                          BatchState.ABANDONED])
        # One condition per exercice (a Retour may name thousands of pièces).
        per_exercice: dict[int, set[int]] = {}
        for fact in facts:
            if fact.piece_number is not None and fact.exercice:
                per_exercice.setdefault(fact.exercice, set()).add(fact.piece_number)
        pieces = Q(pk__in=[])
        for exercice, numbers in per_exercice.items():
            pieces |= Q(exercice=exercice, piece_number__in=sorted(numbers))
        # The batches named by the facts, and those holding the pièces they name.
        wanted = Q(pk__in=RecoveryItem.objects.filter(Q(budget_key=budget_key) & pieces).values("batch_id"))
        named = {(fact.exercice, fact.batch_sequence) for fact in facts if fact.batch_sequence is not None}
        for exercice, sequence in named:
            wanted |= Q(exercice=exercice, sequence=sequence) if exercice else Q(sequence=sequence)
        files = {fact.file_name for fact in facts if fact.batch_sequence is None and fact.file_name}
        if files:
            wanted |= Q(filename__in=sorted(files))
        self.batches = list(exported.filter(wanted).select_for_update().order_by("pk"))
        self.batches_by_pk = {b.pk: b for b in self.batches}
        batch_ids = [b.pk for b in self.batches]
        self.items = {i.pk: i for i in RecoveryItem.objects.select_for_update()
                      .filter(Q(batch_id__in=batch_ids) | (Q(budget_key=budget_key) & pieces))
                      .exclude(status=Status.ABANDONED).select_related("invoice").order_by("pk")}
        payment_ids = sorted({i.payment_id for i in self.items.values() if i.payment_id})
        self.payments = {p.pk: p for p in PaymentAttempt.objects.select_for_update(no_key=True)
                         .filter(pk__in=payment_ids).order_by("pk")}
        self.invoices = {i.pk: i for i in Invoice.objects.select_for_update(no_key=True)
                         .filter(pk__in=[i.invoice_id for i in self.items.values()]).order_by("pk")}
        self.by_piece = {}
        self.by_batch: dict[int, list[RecoveryItem]] = {}
        for item in self.items.values():
            item.invoice = self.invoices[item.invoice_id]
            if item.piece_number is not None:
                self.by_piece[(item.exercice, item.piece_number)] = item
            self.by_batch.setdefault(item.batch_id, []).append(item)
        self.dirty_items: set[int] = set()
        self.dirty_batches: set[int] = set()
        self.dirty_payments: set[int] = set()
        self.dirty_invoices: set[int] = set()
        self.cancelled_payments: list[int] = []

    def batch(self, fact: RecoveryFeedback) -> RecoveryBatch | None:
        for batch in self.batches:
            if fact.batch_sequence is not None:
                if batch.sequence == fact.batch_sequence and fact.exercice in (None, batch.exercice):
                    return batch
            elif fact.file_name and batch.filename == fact.file_name:
                return batch
        return None

    def item(self, fact: RecoveryFeedback) -> RecoveryItem | None:
        return self.by_piece.get((fact.exercice, fact.piece_number))

    def items_of(self, batch: RecoveryBatch) -> list[RecoveryItem]:
        return self.by_batch.get(batch.pk, [])


def _note(item_or_batch, message: str) -> bool:
    if message and message not in item_or_batch.messages:
        item_or_batch.messages = [*item_or_batch.messages, message]
        return True
    return False


def _describe(item: RecoveryItem) -> str:
    text = f"Facture {item.invoice.number} (pièce {item.piece_number}) : {item.get_status_display()}"
    if item.recovered_cents and item.status in (Status.PARTIALLY_COLLECTED, Status.COLLECTED):
        text += f", recouvré {format_euros(item.recovered_cents)}"
    if item.paid_online:
        text += " (paiement en ligne PayFiP)"
    return text


def _apply_to_item(books: _Books, item: RecoveryItem, fact: RecoveryFeedback, *, rank_only: bool) -> str | None:
    """Apply one fact to one pièce; returns the French summary of the change, or None."""
    if item.status in CLOSED:
        return None
    if item.as_of and fact.as_of and fact.as_of < item.as_of:
        return None  # an older file read late never undoes a newer one
    before = (item.status, item.recovered_cents, item.treasury_reference, item.paid_online, tuple(item.messages),
              item.as_of)
    invoice = item.invoice
    payment = books.payments.get(item.payment_id)
    if fact.state == "information":
        _note(item, fact.message)
    elif fact.state in ("rejected", "cancelled"):
        if item.recovered_cents > 0:
            _note(item, f"Refus reçu alors que {format_euros(item.recovered_cents)} ont été recouvrés : à voir avec "
                        f"le comptable. {fact.message}")
        else:
            item.status = FACT_STATUS[fact.state]
            _note(item, fact.message)
            _reopen(books, item, payment)
    else:
        status = FACT_STATUS[fact.state]
        recovered = item.recovered_cents
        if fact.state in ("partially_collected", "collected") and fact.amount_cents is not None:
            recovered = fact.amount_cents
        if fact.state == "collected" and not recovered:
            recovered = item.amount_cents
        if status == Status.PARTIALLY_COLLECTED and recovered >= item.amount_cents:
            status = Status.COLLECTED
        if status == Status.ACCEPTED and item.status != Status.EXPORTED:
            status = item.status  # an acquittement says nothing new about a pièce already further on
        if rank_only and RANK[status] < RANK.get(item.status, 0):
            status = item.status
        item.status, item.recovered_cents = status, recovered
        item.paid_online = item.paid_online or bool(fact.raw.get("payfip"))
        if fact.reference:
            item.treasury_reference = fact.reference[:60]
        if fact.state not in ("accepted",):
            _note(item, fact.message)
        target = Invoice.Status.PAID if status == Status.COLLECTED else Invoice.Status.TRANSMITTED
        if invoice.status != target:
            invoice.status = target
            books.dirty_invoices.add(invoice.pk)
        if payment is not None:
            snapshot = {**payment.settings_snapshot, "recovery_status": str(item.status),
                        "recovered_cents": item.recovered_cents}
            reference = (item.treasury_reference or payment.reference)[:40]
            if snapshot != payment.settings_snapshot or reference != payment.reference:
                payment.settings_snapshot, payment.reference = snapshot, reference
                books.dirty_payments.add(payment.pk)
    if fact.as_of and (item.as_of is None or fact.as_of > item.as_of):
        item.as_of = fact.as_of
    after = (item.status, item.recovered_cents, item.treasury_reference, item.paid_online, tuple(item.messages),
             item.as_of)
    if after == before:
        return None
    books.dirty_items.add(item.pk)
    if after[:5] == before[:5]:
        return None  # only the date of the latest file moved
    return _describe(item) + (f" — {fact.message}" if fact.message and fact.state != "accepted" else "")


def _reopen(books: _Books, item: RecoveryItem, payment: PaymentAttempt | None) -> None:
    """Refused: undo the transfer entry; the invoice is "à payer" again, free for a new batch."""
    invoice = item.invoice
    if payment is not None and payment.state == PaymentAttempt.State.PAID:
        # The transmission règlement has one allocation, of its whole amount, on this invoice
        # (batch_export made it); it is deleted with the others in _save.
        payment.state = PaymentAttempt.State.CANCELLED
        payment.settings_snapshot = {**payment.settings_snapshot, "recovery_status": str(item.status)}
        books.dirty_payments.add(payment.pk)
        books.cancelled_payments.append(payment.pk)
        invoice.paid_cents -= payment.amount_cents
    invoice.status = (Invoice.Status.PARTIALLY_PAID if invoice.paid_cents > 0 else Invoice.Status.TO_PAY)
    books.dirty_invoices.add(invoice.pk)


def _apply(books: _Books, fact: RecoveryFeedback, summary: ImportSummary, detailed: set[tuple]) -> tuple[
        RecoveryBatch | None, RecoveryItem | None] | None:
    """Apply one fact; returns its (batch, item) target, or None when it matches nothing.
    ``detailed``: the (exercice, batch, pièce) the same file speaks of one by one."""
    if fact.piece_number is not None:
        item = books.item(fact)
        if item is None:
            return None
        change = _apply_to_item(books, item, fact, rank_only=False)
        if change:
            summary.changes.append(change)
        batch = books.batches_by_pk.get(item.batch_id)
        if batch is not None and fact.state == "rejected" and batch.state in (BatchState.EXPORTED,
                                                                             BatchState.ACCEPTED):
            batch.state = BatchState.PARTIALLY_REJECTED
            books.dirty_batches.add(batch.pk)
        return batch, item
    batch = books.batch(fact)
    if batch is None:
        return None
    if fact.state == "rejected":
        if batch.state != BatchState.REJECTED:
            batch.state = BatchState.REJECTED
            books.dirty_batches.add(batch.pk)
            summary.changes.append(f"Bordereau {batch.sequence} ({batch.exercice}) refusé : ses factures sont de "
                                   "nouveau à payer et pourront être réémises dans un nouveau bordereau.")
    elif fact.state == "accepted" and batch.state == BatchState.EXPORTED:
        batch.state = BatchState.ACCEPTED
        books.dirty_batches.add(batch.pk)
        summary.changes.append(f"Bordereau {batch.sequence} ({batch.exercice}) accepté par le guichet.")
    if _note(batch, fact.message) and fact.state != "accepted":
        books.dirty_batches.add(batch.pk)
    # A rôle-wide fact reaches each pièce, except pièces the same file details.
    for item in books.items_of(batch):
        if (item.exercice, batch.sequence, item.piece_number) in detailed and fact.state != "rejected":
            continue
        change = _apply_to_item(books, item, fact, rank_only=fact.document != "acquittement")
        if change and fact.state != "accepted":
            summary.changes.append(change)
    return batch, None


def _save(books: _Books) -> None:
    items = [books.items[pk] for pk in books.dirty_items]
    RecoveryItem.objects.bulk_update(items, ["status", "recovered_cents", "treasury_reference", "paid_online",
                                             "as_of", "messages"], batch_size=2000)
    for batch in books.batches:
        if batch.pk in books.dirty_batches:
            batch.save(update_fields=["state", "messages"])
    Allocation.objects.filter(payment_id__in=books.cancelled_payments).delete()
    PaymentAttempt.objects.bulk_update([books.payments[pk] for pk in books.dirty_payments],
                                       ["state", "settings_snapshot", "reference"], batch_size=2000)
    # Few distinct (status, paid) pairs: one UPDATE each rather than a CASE per invoice.
    groups: dict[tuple[str, int], list[int]] = {}
    for pk in books.dirty_invoices:
        invoice = books.invoices[pk]
        groups.setdefault((invoice.status, invoice.paid_cents), []).append(pk)
    for (status, paid_cents), pks in groups.items():
        Invoice.objects.filter(pk__in=pks).update(status=status, paid_cents=paid_cents)


def feedback_import(*, staff, regie: Regie, content: bytes, filename: str = "") -> ImportSummary:
    """Read a file sent back for ``regie``'s batches and apply what it says, once.

    A file the channel cannot read raises :class:`RecoveryError` before anything is written."""
    _require_staff(staff)
    channel = channel_for(regie)
    if not content:
        raise RecoveryError("Le fichier est vide.")
    try:
        facts = channel.parse_feedback(content, filename=filename)
    except (RecoveryFileError, ValueError) as error:
        raise RecoveryError(str(error)) from None
    return _import(staff=staff, regie=regie, channel=channel, facts=facts, content=content, filename=filename)


@transaction.atomic
def _import(*, staff, regie, channel, facts, content, filename) -> ImportSummary:
    budget_key = channel.budget_key()
    summary = ImportSummary(documents=sorted({f.document for f in facts if f.document}), facts=len(facts))
    books = _Books(budget_key, facts)  # locks first, then read what was already applied
    applied = set(AppliedFeedback.objects.filter(budget_key=budget_key, key__in=[f.key for f in facts])
                  .values_list("key", flat=True))
    new, seen = [], set()
    for fact in facts:
        if fact.key in applied or fact.key in seen:
            summary.already_applied += 1
            continue
        seen.add(fact.key)
        new.append(fact)
    detailed = {(f.exercice, f.batch_sequence, f.piece_number) for f in new if f.piece_number is not None}
    source = FeedbackFile(regie=regie, filename=(filename or "retour.xml")[:200],
                          sha256=hashlib.sha256(content).hexdigest(), imported_by=_user_or_none(staff))
    source.file.save(filename or "retour.xml", ContentFile(content), save=False)
    source.save()
    records = []
    for fact in new:
        target = _apply(books, fact, summary, detailed)
        if target is None:
            where = (f"pièce {fact.piece_number} du bordereau {fact.batch_sequence}" if fact.piece_number is not None
                     else f"bordereau {fact.batch_sequence}" if fact.batch_sequence is not None
                     else f"fichier {fact.file_name or '?'}")
            summary.unmatched.append(f"{fact.document or 'Fichier'} : {where} ({fact.exercice or '?'}) inconnu de "
                                     f"cette régie — {fact.message}")
            continue
        batch, item = target
        records.append(AppliedFeedback(budget_key=budget_key, key=fact.key[:200], state=fact.state,
                                       batch=batch, item=item, source=source))
    _save(books)
    AppliedFeedback.objects.bulk_create(records, batch_size=2000)
    source.summary = summary.as_dict()
    source.save(update_fields=["summary"])
    user = _user_or_none(staff)
    AuditEvent.objects.bulk_create([
        AuditEvent(actor=user, action="invoice.recovery_updated", target=f"invoice:{books.items[pk].invoice.number}",
                   family_id=books.items[pk].invoice.family_id,
                   details={"status": books.items[pk].status, "recovered_cents": books.items[pk].recovered_cents,
                            "file": source.filename})
        for pk in sorted(books.dirty_items)], batch_size=2000)
    audit_record(actor=staff, action="recovery.feedback_imported", target=f"recovery_file:{source.pk}",
                 regie=regie.code, file=source.filename, facts=summary.facts, already_applied=summary.already_applied,
                 changes=len(summary.changes), unmatched=len(summary.unmatched))
    return summary
