"""The Trésor public recovery channel: Marelle's batches become PES V2 ORMC files, and the
acquittements and PES Retour Recette files become plain facts for Marelle to apply.

The channel only translates (plain data in and out, no database, no clock): Marelle numbers the
batches and pièces, stores the files and changes the invoices. The PES work itself is in
:mod:`.pes` (build), :mod:`.validator` (structural checks) and :mod:`.imports` (parsing).
"""

from __future__ import annotations

from datetime import date

from marelle.plugin_api import (
    RecoveryBatch,
    RecoveryChannel,
    RecoveryExport,
    RecoveryFeedback,
    RecoveryFileError,
    RecoveryInvoice,
)

from . import pes
from .configuration import TresorPublicSettings
from .imports import PesImportError, PieceState, parse_pes_ack, parse_pes_retour
from .validator import UnsafeXmlError, parse_xml, validate_pes_aller

DOCUMENT_ACK = "acquittement"
DOCUMENT_RETOUR = "PES Retour"


def _local(tag) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1] if tag.startswith("{") else tag.split(":")[-1]


class TresorPublicChannel(RecoveryChannel):
    identifier = "tresor_public"
    verbose_name = "Titres de recette au Trésor public (PES V2 ORMC)"
    settings_schema = TresorPublicSettings

    def __init__(self, settings, *, secrets=None):
        super().__init__(settings, secrets=secrets)
        # Edition 06: the DGFiP prints the ASAP from the invoice PDF, which must be attached.
        self.needs_pdf = settings.edition == pes.EDITION_ORMC_ENSU

    # --- Numbering scope ---------------------------------------------------------------------

    def budget_key(self) -> str:
        """Hélios numbers bordereaux and pièces per budget (SIRET, CodCol, CodBud) and exercice."""
        s = self.settings
        return f"{s.id_coll}-{s.cod_col}-{s.cod_bud}"

    # --- From Marelle's data to PES data -----------------------------------------------------

    def _header(self, batch: RecoveryBatch) -> pes.PesHeader:
        created_on = batch.issued_on or batch.created_at.date()
        return pes.PesHeader.from_settings(self.settings, created_on=created_on, post_label=self.settings.post_label)

    def _bordereau(self, batch: RecoveryBatch) -> pes.Bordereau:
        label = batch.label or f"Factures {batch.regie_code}"
        return pes.Bordereau(exercice=batch.exercice, number=batch.sequence,
                             issued_on=batch.issued_on or batch.created_at.date(), label=label,
                             edition=self.settings.edition)

    def _piece(self, invoice: RecoveryInvoice, number: int) -> pes.Piece:
        codes = dict(self.settings.product_codes)
        data = pes.InvoiceData(
            number=invoice.number, label=invoice.label, total_cents=invoice.amount_cents, debtor=invoice.debtor,
            family_reference=invoice.family_reference,
            lines=[pes.InvoiceLineData(label=line.label, amount_cents=line.amount_cents, child_name=line.child_name,
                                       group=line.group, quantity=line.quantity) for line in invoice.lines])
        services = {(line.child_name, line.group or line.label): line.service_code for line in invoice.lines}

        def product_code(first: pes.InvoiceLineData) -> str:
            service = services.get((first.child_name, first.group or first.label), "")
            return codes.get(service) or self.settings.default_product_code

        piece = pes.piece_from_invoice(data, number=number, product_code=product_code)
        nature = self.settings.nature
        if nature != pes.NATURE_ORMC:
            piece = pes.Piece(**{**piece.__dict__, "lines": [pes.PieceLine(label=line.label,
                                                                           amount_cents=line.amount_cents,
                                                                           product_code=line.product_code,
                                                                           nature=nature) for line in piece.lines]})
        return piece

    # --- Checks ------------------------------------------------------------------------------

    def _settings_problems(self) -> list[str]:
        errors: list[str] = []
        pes._check_header(pes.PesHeader.from_settings(self.settings, created_on=date(2000, 1, 1)), errors)
        return [f"Réglages de la régie : {e}" for e in errors]

    def check_invoice(self, invoice: RecoveryInvoice) -> list[str]:
        try:
            piece = self._piece(invoice, invoice.piece_number or 1)
        except pes.PesDataError as error:
            return [f"Facture {invoice.number} : {e}" for e in error.errors]
        errors: list[str] = []
        # The PDF is produced at export; here only whether the channel will need one matters.
        pes._check_piece(piece, self.settings.edition, True, errors)
        return errors

    def check_batch(self, batch: RecoveryBatch) -> list[str]:
        problems = self._settings_problems()
        if not batch.invoices:
            problems.append("Le bordereau ne contient aucune facture.")
        seen: set[str] = set()
        for invoice in batch.invoices:
            if invoice.number in seen:
                problems.append(f"Facture {invoice.number} : présente deux fois dans le bordereau.")
            seen.add(invoice.number)
            problems += self.check_invoice(invoice)
        return problems

    # --- Export --------------------------------------------------------------------------------

    def export(self, batch: RecoveryBatch) -> RecoveryExport:
        missing = [i.number for i in batch.invoices if i.piece_number is None]
        if missing:
            raise ValueError(f"Numéro de pièce manquant pour : {', '.join(missing)}.")
        header = self._header(batch)
        bordereau = self._bordereau(batch)
        pieces = [self._piece(invoice, invoice.piece_number) for invoice in batch.invoices]
        attachments = {i.number: i.pdf for i in batch.invoices if i.pdf is not None} if self.needs_pdf else {}
        content = pes.build_pes_aller(header=header, bordereau=bordereau, pieces=pieces, attachments=attachments)
        errors = validate_pes_aller(content)
        if errors:
            # Our own builder made a file our validator refuses: never hand it to the régisseur.
            raise pes.PesDataError(["Le fichier PES généré ne passe pas la vérification de structure :"] + errors)
        references = {i.number: f"{batch.exercice}/{batch.sequence}/{i.piece_number}" for i in batch.invoices}
        return RecoveryExport(filename=pes.default_file_name(header, bordereau), content=content,
                              content_type="application/xml", references=references)

    # --- Feedback ------------------------------------------------------------------------------

    def _check_budget(self, cod_col: str | None, cod_bud: str | None, what: str) -> None:
        s = self.settings
        if (cod_col and cod_col != s.cod_col) or (cod_bud and cod_bud != s.cod_bud):
            raise RecoveryFileError(
                f"Ce {what} concerne le budget CodCol {cod_col or '?'} / CodBud {cod_bud or '?'}, pas celui de "
                f"cette régie (CodCol {s.cod_col} / CodBud {s.cod_bud}) : rien n'a été importé.")

    def parse_feedback(self, content: bytes, *, filename: str = "") -> list[RecoveryFeedback]:
        try:
            root = parse_xml(content)
        except UnsafeXmlError as error:
            raise RecoveryFileError(f"Fichier refusé : {error}") from None
        except Exception as error:  # noqa: BLE001 - ParseError and encoding errors alike
            raise RecoveryFileError(f"Ce fichier n'est pas un XML lisible ({error}) : rien n'a été importé.") from None
        names = {_local(element.tag) for element in root.iter()}
        try:
            if "ACQUIT" in names:
                return self._ack_feedback(content)
            if "PES_RecetteRetour" in names:
                return self._retour_feedback(content)
        except PesImportError as error:
            raise RecoveryFileError(f"Fichier illisible : {error} Rien n'a été importé.") from None
        raise RecoveryFileError("Ce fichier n'est ni un acquittement PES ni un PES Retour Recette : "
                                "rien n'a été importé.")

    def _ack_feedback(self, content: bytes) -> list[RecoveryFeedback]:
        ack = parse_pes_ack(content)
        self._check_budget(ack.cod_col, ack.cod_bud, "acquittement")
        # The guichet names its acquittement after our file: "ACK_" + our NomFic.
        file_name = (ack.file_name or "").removeprefix("ACK_")
        common = {"as_of": ack.structure_date, "document": DOCUMENT_ACK}
        facts: list[RecoveryFeedback] = []
        for element in ack.file_level:
            if element.ok:
                continue
            messages = element.messages() or [f"Fichier refusé ({element.domain_label})."]
            facts.append(RecoveryFeedback(
                key=f"ack:{file_name}:file:{element.domain}:ko", state="rejected", file_name=file_name,
                message=f"Fichier refusé ({element.domain_label}) : " + " ; ".join(messages),
                raw={"domain": element.domain}, **common))
        for element in ack.bordereaux:
            exercice, number = element.exercice, element.bordereau
            where = f"{exercice}:{number}"
            if not element.ok:
                facts.append(RecoveryFeedback(
                    key=f"ack:{where}:ko", state="rejected", exercice=exercice, batch_sequence=number,
                    message=" ; ".join(element.messages()) or "Bordereau refusé par le guichet Hélios.",
                    raw={"domain": element.domain, "errors": [str(e) for e in element.errors]}, **common))
                continue
            facts.append(RecoveryFeedback(key=f"ack:{where}:ok", state="accepted", exercice=exercice,
                                          batch_sequence=number, message="Accepté par le guichet Hélios.",
                                          raw={"domain": element.domain}, **common))
            # An accepted bordereau may still list a pièce in error: that pièce is refused.
            for piece in element.pieces:
                messages = [str(e) for e in piece.errors] + [
                    f"Ligne {line.line} : {e}" for line in piece.lines for e in line.errors]
                if messages:
                    facts.append(RecoveryFeedback(
                        key=f"ack:{where}:{piece.piece}:ko", state="rejected", exercice=exercice,
                        batch_sequence=number, piece_number=piece.piece, message=" ; ".join(messages), **common))
        # A refused PDF does not undo an integrated titre: a message for the régisseur only.
        prefix = f"{self.settings.id_coll}{self.settings.cod_col}{self.settings.cod_bud}"
        for element in ack.attachments:
            unique = element.attachment_id or ""
            if element.ok or not (unique.startswith(prefix) and len(unique) == len(prefix) + 19):
                continue
            tail = unique[len(prefix):]
            exercice, number, piece = int(tail[:4]), int(tail[4:11]), int(tail[11:])
            facts.append(RecoveryFeedback(
                key=f"ack:pj:{unique}:ko", state="information", exercice=exercice, batch_sequence=number,
                piece_number=piece,
                message="Facture PDF refusée par le guichet : " + (" ; ".join(element.messages()) or "sans détail")
                        + ". À renvoyer à part au comptable.", **common))
        return facts

    def _retour_feedback(self, content: bytes) -> list[RecoveryFeedback]:
        root = parse_xml(content)
        head = next((e for e in root.iter() if _local(e.tag) == "EnTetePES"), None)
        if head is not None:
            values = {_local(child.tag): child.get("V") for child in head}
            self._check_budget(values.get("CodCol") or values.get("CodColl"), values.get("CodBud"), "PES Retour")
        return [self._retour_fact(state) for state in parse_pes_retour(content)]

    @staticmethod
    def _retour_fact(state: PieceState) -> RecoveryFeedback:
        common = {"exercice": state.exercice, "batch_sequence": state.bordereau, "as_of": state.as_of,
                  "document": DOCUMENT_RETOUR}
        if state.piece is None:  # the whole rôle at once
            kind = {"04": "rejected", "01": "pending"}.get(state.state, "taken")
            return RecoveryFeedback(key=f"retour:{state.exercice}:{state.bordereau}:global:{state.state}",
                                    state=kind, message=f"Rôle entier : {state.state_label}.", **common)
        lines = state.lines
        line_states = "".join(line.state for line in lines)
        if state.state == "04":
            kind = "rejected"
        elif state.state == "05":
            kind = "cancelled"
        elif state.state == "01":
            kind = "pending"
        elif lines and all(line.state == "05" for line in lines):
            kind = "collected"
        elif lines and all(line.state in ("05", "06") for line in lines):
            kind = "written_off"
        elif state.recovered_cents > 0:
            kind = "partially_collected"  # Marelle makes it "collected" when it covers the amount
        else:
            kind = "taken"
        notes = [f"{state.state_label}"]
        if state.observation:
            notes.append(f"observation du comptable : {state.observation}")
        if state.comment:
            notes.append(f"commentaire : {state.comment}")
        if state.paid_via_payfip:
            notes.append("payé en ligne (PayFiP)")
        reference = " ".join(p for p in (state.debt_number, state.period, state.key1, state.key2) if p) \
            if state.debt_number else ""
        return RecoveryFeedback(
            key=(f"retour:{state.exercice}:{state.bordereau}:{state.piece}:{state.state}:{line_states}:"
                 f"{state.recovered_cents}"),
            state=kind, piece_number=state.piece, amount_cents=state.recovered_cents, reference=reference,
            message=" ; ".join(notes) + ".",
            raw={"etat_piece": state.state, "lignes": line_states, "payfip": state.paid_via_payfip,
                 "montant_pris_en_charge_cents": state.taken_amount_cents},
            **common)
