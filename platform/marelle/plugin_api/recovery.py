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
    label: str
    amount_cents: int
    quantity: int = 1
    child_name: str = ""


@dataclass(frozen=True)
class RecoveryInvoice:
    """One issued invoice leaving the portal.

    :ivar number: the invoice number (unique per régie).
    :ivar debtor: the debtor as frozen on the invoice at issue time (civility, first and last
        name, address lines, postcode, city, country, e-mail).
    :ivar pdf: the invoice's PDF, when the channel transmits it as an attachment.
    """

    number: str
    amount_cents: int
    issued_on: date
    due_on: date | None
    label: str
    debtor: Mapping[str, Any]
    lines: Sequence[RecoveryLine] = ()
    pdf: bytes | None = None


@dataclass(frozen=True)
class RecoveryBatch:
    """A batch (bordereau) of invoices of one régie, numbered by Marelle.

    :ivar sequence: the batch number, strictly increasing per régie and exercice, never
        reused (a rejected batch is corrected under a new number).
    """

    commune_slug: str
    regie_code: str
    exercice: int
    sequence: int
    created_at: datetime
    invoices: Sequence[RecoveryInvoice]


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
    ``key`` identifies the fact (e.g. "2026/12/PCE4/L1/soldee")."""

    key: str
    state: Literal["accepted", "rejected", "collected", "partially_collected", "cancelled", "written_off"]
    invoice_number: str = ""
    batch_sequence: int | None = None
    amount_cents: int | None = None
    message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


class RecoveryChannel:
    """Base class of a recovery channel; return subclasses from
    ``marelle_register_recovery_channels``."""

    identifier: ClassVar[str]
    verbose_name: ClassVar[str]
    settings_schema: ClassVar[type[PluginSettings]] = PluginSettings

    def __init__(self, settings: PluginSettings, *, secrets: Mapping[str, str] | None = None):
        self.settings = settings
        self.secrets = dict(secrets or {})

    def check_batch(self, batch: RecoveryBatch) -> list[str]:
        """French messages for every invoice the channel cannot transmit (missing first name,
        postcode not 5 digits…); empty when the batch can be exported."""
        return []

    def export(self, batch: RecoveryBatch) -> RecoveryExport:
        """Build the file for ``batch``. Deterministic: the same batch gives the same bytes."""
        raise NotImplementedError

    def parse_feedback(self, content: bytes, *, filename: str = "") -> list[RecoveryFeedback]:
        """Read a file sent back by the receiving side (acknowledgement, collection report)."""
        raise NotImplementedError
