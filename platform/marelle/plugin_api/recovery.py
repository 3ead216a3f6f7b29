"""The recovery channel contract: invoices that leave the portal to be collected elsewhere.

Some régies do not collect their invoices themselves: the invoices are handed to the
comptable public as titres de recette (PES V2 "ORMC" files), and the family pays the DGFiP.
A recovery channel turns a batch of issued invoices into what the receiving organisation
expects (a file to download and transmit) and reads back what it answers (acknowledgement,
collection reports), as plain data. Like a payment provider it never writes to the database:
Marelle numbers the batch, stores the file, changes the invoices' states ("transmise au
Trésor public", then "réglée auprès du Trésor public") and records who did what.

This module only fixes the shape; the ``tresor_public`` plugin is its first implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar, Literal

from marelle.plugin_api.payment import PluginSettings


@dataclass(frozen=True)
class RecoveryLine:
    """One invoice line.

    :ivar group: what lines are grouped by on the receiving side inside one child's lines
        (the service's label: one titre line per child and service); empty: the line's label.
    :ivar service_code: the code of the service the line bills (YAML ``services[].code``), for
        channels that map services to their own codes (product codes of a titre).
    """

    label: str
    amount_cents: int
    quantity: int = 1
    child_name: str = ""
    group: str = ""
    service_code: str = ""


@dataclass(frozen=True)
class RecoveryInvoice:
    """One issued invoice leaving the portal.

    :ivar number: the invoice number (unique per régie).
    :ivar debtor: the debtor as frozen on the invoice at issue time (civility, first and last
        name, address lines, postcode, city, country, e-mail).
    :ivar pdf: the invoice's PDF, when the channel transmits it as an attachment (given to
        :meth:`RecoveryChannel.export` when the channel's ``needs_pdf`` is true, never to the
        checks).
    :ivar piece_number: the number of the invoice inside the batch on the receiving side (the
        titre's pièce number), allocated by Marelle at export, never reused; None in checks.
    :ivar family_reference: the family's stable reference (e.g. "F000123"), which lets the
        receiving side group a debtor's debts.
    """

    number: str
    amount_cents: int
    issued_on: date
    due_on: date | None
    label: str
    debtor: Mapping[str, Any]
    lines: Sequence[RecoveryLine] = ()
    pdf: bytes | None = None
    piece_number: int | None = None
    family_reference: str = ""


@dataclass(frozen=True)
class RecoveryBatch:
    """A batch (bordereau) of invoices of one régie, numbered by Marelle.

    :ivar sequence: the batch number, strictly increasing per numbering scope (the channel's
        :meth:`RecoveryChannel.budget_key`) and exercice, never reused (a rejected batch is
        corrected under a new number); 0 while the batch is only being checked.
    :ivar label: what the batch is about, e.g. "Périscolaire septembre 2026".
    :ivar issued_on: the date the file is dated with (Paris); ``created_at``'s date when None.
    :ivar commune_name: the commune's name, for the file's labels.
    """

    commune_slug: str
    regie_code: str
    exercice: int
    sequence: int
    created_at: datetime
    invoices: Sequence[RecoveryInvoice]
    label: str = ""
    issued_on: date | None = None
    commune_name: str = ""


@dataclass(frozen=True)
class RecoveryExport:
    """What the régisseur downloads and transmits.

    :ivar references: invoice number -> the reference the receiving side will use (e.g. the
        titre number), shown to the family.
    """

    filename: str
    content: bytes
    content_type: str
    references: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecoveryFeedback:
    """One fact read back from the receiving side, about one invoice (or the whole batch when
    ``invoice_number`` is empty). Applying the same feedback twice must change nothing: the
    ``key`` identifies the fact (e.g. "2026/12/PCE4/L1/soldee").

    The receiving side usually knows an invoice by its numbers, not by Marelle's invoice
    number: then ``invoice_number`` is empty and the fact names ``exercice``,
    ``batch_sequence`` and ``piece_number`` (the pièce), or only ``exercice`` and
    ``batch_sequence`` (the whole batch), or only ``file_name`` (the whole file: a technical
    refusal). Marelle matches them against the batches it exported and reports what matches
    nothing.

    States: ``accepted`` (the batch or invoice was integrated), ``rejected`` (refused: Marelle
    reopens the invoices for correction and re-issue under new numbers), ``pending`` (held by
    the receiving side), ``taken`` (taken over for collection), ``partially_collected`` /
    ``collected`` (money recovered, ``amount_cents`` cumulative), ``cancelled``,
    ``written_off``, ``information`` (a message only: nothing changes).

    :ivar reference: the reference the family quotes when paying (e.g. the debt number).
    :ivar as_of: the date of the file the fact comes from: an older fact never undoes a newer.
    :ivar document: "acquittement", "retour"… for the summary shown to staff.
    """

    key: str
    state: Literal["accepted", "rejected", "pending", "taken", "collected", "partially_collected", "cancelled",
                   "written_off", "information"]
    invoice_number: str = ""
    batch_sequence: int | None = None
    amount_cents: int | None = None
    message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)
    exercice: int | None = None
    piece_number: int | None = None
    file_name: str = ""
    reference: str = ""
    as_of: date | None = None
    document: str = ""


class RecoveryFileError(ValueError):
    """A file given to :meth:`RecoveryChannel.parse_feedback` cannot be read (malformed XML,
    another kind of file, another budget): the message is French, for the régisseur; Marelle
    applies nothing from it."""


class RecoveryChannel:
    """Base class of a recovery channel; return subclasses from
    ``marelle_register_recovery_channels``."""

    identifier: ClassVar[str]
    verbose_name: ClassVar[str]
    settings_schema: ClassVar[type[PluginSettings]] = PluginSettings

    def __init__(self, settings: PluginSettings, *, secrets: Mapping[str, str] | None = None):
        self.settings = settings
        self.secrets = dict(secrets or {})

    #: True when :meth:`export` needs each invoice's PDF (``RecoveryInvoice.pdf``).
    needs_pdf: bool = False

    def budget_key(self) -> str:
        """The numbering scope on the receiving side (for the Trésor public: the budget). Batches
        of régies with the same key share one sequence of batch and piece numbers."""
        return self.identifier

    def check_invoice(self, invoice: RecoveryInvoice) -> list[str]:
        """French messages for what prevents this one invoice from being transmitted (Marelle
        leaves such invoices out of a batch and shows why)."""
        return []

    def check_batch(self, batch: RecoveryBatch) -> list[str]:
        """French messages for every invoice the channel cannot transmit (missing first name,
        postcode not 5 digits…) and for what blocks the whole batch (settings); empty when the
        batch can be exported."""
        return []

    def export(self, batch: RecoveryBatch) -> RecoveryExport:
        """Build the file for ``batch``. Deterministic: the same batch gives the same bytes."""
        raise NotImplementedError

    def parse_feedback(self, content: bytes, *, filename: str = "") -> list[RecoveryFeedback]:
        """Read a file sent back by the receiving side (acknowledgement, collection report).
        Raises :class:`RecoveryFileError` when the file cannot be read."""
        raise NotImplementedError
