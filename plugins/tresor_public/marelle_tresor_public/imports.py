"""What comes back from Hélios: the acquittement (PES Acquit) and the PES Retour Recette.

Pure module: bytes in, dataclasses out, and pure functions that say how the invoices' recovery
state changes (:func:`apply_ack`, :func:`apply_retour`); the billing core stores the result
under its row locks. Applying the same file twice gives no second change.

Parsing is tolerant of what we do not use (unknown elements, namespaces or none, extra blocks
the DGFiP may add) and strict on what we need: a missing or malformed key field raises
:class:`PesImportError` with a French message naming the location, and nothing is applied.

Sources: DosTech ``Acquittement_blocs``/``_codes``, ``PES_RecetteRetour_blocs``/``_codes``,
``DomaineGlobalRetour_blocscommuns``; protocols.md §3.7, §3.8, §3.10, §4.3.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, InvalidOperation

from .validator import UnsafeXmlError, parse_xml

__all__ = [
    "PesImportError", "AckError", "AckLine", "AckPiece", "AckElement", "AckResult", "parse_pes_ack",
    "Recovery", "LineState", "PieceState", "parse_pes_retour",
    "RecoveryStatus", "InvoiceRecoveryState", "RecoveryChange", "apply_ack", "apply_retour",
    "unmatched_states", "ACK_DOMAINS", "PIECE_STATES", "LINE_STATES", "RECOVERY_ORIGINS", "STATUS_LABELS",
    "FAMILY_LABELS",
]


class PesImportError(ValueError):
    pass


ACK_DOMAINS = {
    "0": "Technique", "1": "Signature technique", "2": "Signature globale", "3": "Signature bordereau", "4": "PJ",
    "5": "Dépense", "6": "Recette", "7": "Rôle", "8": "Budget", "9": "État actif", "10": "État passif",
    "11": "Marché", "12": "Facture", "99": "Paramétrage",
}
PIECE_STATES = {"01": "En instance", "02": "Prise en charge", "03": "Prise en charge partielle", "04": "Rejetée",
                "05": "Annulée"}
LINE_STATES = {"01": "Rejetée", "02": "Annulée", "03": "Mise en instance", "04": "Non soldée", "05": "Soldée",
               "06": "Soldée en non-valeur"}
RECOVERY_ORIGINS = {
    "01": "Encaissement avant émission de titre", "02": "Encaissement", "03": "Flux d'encaissement",
    "04": "Mandat correctif", "05": "Mandat", "06": "Liste de non-valeur", "07": "Titre correctif", "08": "Titre",
    "09": "Annulation de frais de poursuite", "10": "Paiement en ligne (PayFiP/TIPI)", "11": "Encaissement technique",
    "12": "Divers",
}
ORIGIN_PAYFIP = "10"


# --- XML helpers ------------------------------------------------------------------------------


def _local(tag) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1] if tag.startswith("{") else tag.split(":")[-1]


def _parse(xml: bytes, what: str) -> ET.Element:
    try:
        return parse_xml(xml)
    except UnsafeXmlError as exc:
        raise PesImportError(str(exc)) from None
    except ET.ParseError as exc:
        raise PesImportError(f"{what} : XML mal formé ({exc}).") from None


def _children(element: ET.Element | None, name: str) -> list[ET.Element]:
    if element is None:
        return []
    return [child for child in element if _local(child.tag) == name]


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    found = _children(element, name)
    return found[0] if found else None


def _find(element: ET.Element, name: str) -> ET.Element | None:
    """First descendant (or self) with that local name, namespaces ignored."""
    for node in element.iter():
        if _local(node.tag) == name:
            return node
    return None


def _value(element: ET.Element | None, name: str) -> str | None:
    """The V attribute of a child; tolerant of a value written as text instead."""
    child = _child(element, name)
    if child is None:
        return None
    value = child.attrib.get("V")
    if value is None and child.text and child.text.strip():
        value = child.text
    return value.strip() if value is not None else None


def _required(element: ET.Element | None, name: str, path: str) -> str:
    value = _value(element, name)
    if not value:
        raise PesImportError(f"{path}/{name} : valeur obligatoire absente.")
    return value


def _int(value: str | None, path: str) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]+", value):
        raise PesImportError(f"{path} : nombre entier attendu, trouvé « {value} ».")
    return int(value)


def _date(value: str | None, path: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise PesImportError(f"{path} : date « {value} » invalide (AAAA-MM-JJ).") from None


def _cents(value: str | None, path: str) -> int | None:
    """"12.5" / "12.50" / "12,50" → 1250, exactly."""
    if value is None or value == "":
        return None
    text = value.replace(",", ".")
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]{1,2})?", text):
        raise PesImportError(f"{path} : montant « {value} » invalide.")
    try:
        return int((Decimal(text) * 100).to_integral_exact())
    except (InvalidOperation, ArithmeticError):  # pragma: no cover
        raise PesImportError(f"{path} : montant « {value} » invalide.") from None


def _boolean(value: str | None, path: str) -> bool:
    if value in ("1", "true", "TRUE", "True"):
        return True
    if value in ("0", "false", "FALSE", "False"):
        return False
    raise PesImportError(f"{path} : booléen attendu (0 ou 1), trouvé « {value} ».")


def _header(root: ET.Element) -> dict:
    head = _find(root, "EnTetePES")
    params = _find(root, "Parametres")
    return {
        "file_name": _value(params, "NomFic"),
        "structure_date": _date(_value(head, "DteStr"), "EnTetePES/DteStr"),
        "id_post": _value(head, "IdPost"),
        "id_coll": _value(head, "IdColl"),
        "cod_col": _value(head, "CodCol") or _value(head, "CodColl"),
        "cod_bud": _value(head, "CodBud"),
    }


# --- Acquittement ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AckError:
    code: str  # NumAnoAck, e.g. "ERREUR_DOUBLON_BORDEREAU" (may be empty)
    label: str  # LibelleAnoAck

    def __str__(self) -> str:
        return f"{self.code} : {self.label}" if self.code and self.label else (self.code or self.label)


@dataclass(frozen=True)
class AckLine:
    line: int
    errors: tuple[AckError, ...]


@dataclass(frozen=True)
class AckPiece:
    piece: int  # NumPiece = IdPce
    errors: tuple[AckError, ...]
    lines: tuple[AckLine, ...] = ()


@dataclass(frozen=True)
class AckElement:
    """One acknowledged element: a bordereau (domain 6 Recette / 7 Rôle), a PJ (4), or the
    whole file (0 Technique, signatures) when it carries no bordereau number."""

    domain: str
    ok: bool
    exercice: int | None = None
    bordereau: int | None = None
    attachment_id: str | None = None  # IdUnique of a PJ
    errors: tuple[AckError, ...] = ()
    pieces: tuple[AckPiece, ...] = ()

    @property
    def domain_label(self) -> str:
        return ACK_DOMAINS.get(self.domain, self.domain)

    def messages(self) -> list[str]:
        """French lines for the finance user (bordereau errors then per pièce / ligne)."""
        out = [str(e) for e in self.errors]
        for piece in self.pieces:
            out += [f"Pièce {piece.piece} : {e}" for e in piece.errors]
            for line in piece.lines:
                out += [f"Pièce {piece.piece}, ligne {line.line} : {e}" for e in line.errors]
        return out


@dataclass(frozen=True)
class AckResult:
    file_name: str | None
    structure_date: date | None
    id_post: str | None
    cod_col: str | None
    cod_bud: str | None
    elements: tuple[AckElement, ...]

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.elements)

    @property
    def bordereaux(self) -> tuple[AckElement, ...]:
        return tuple(e for e in self.elements if e.bordereau is not None)

    @property
    def file_level(self) -> tuple[AckElement, ...]:
        """Elements about the whole file (technique, signature…): a KO here rejects it all."""
        return tuple(e for e in self.elements if e.bordereau is None and e.attachment_id is None)

    @property
    def attachments(self) -> tuple[AckElement, ...]:
        return tuple(e for e in self.elements if e.attachment_id is not None)

    def bordereau(self, exercice: int, number: int) -> AckElement | None:
        for element in self.bordereaux:
            if element.bordereau == number and element.exercice in (exercice, None):
                return element
        return None


def _ack_errors(element: ET.Element) -> tuple[AckError, ...]:
    return tuple(AckError(code=_value(e, "NumAnoAck") or "", label=_value(e, "LibelleAnoAck") or "")
                 for e in _children(element, "Erreur"))


def parse_pes_ack(xml: bytes) -> AckResult:
    """An acquittement: per element (bordereau, PJ, file) OK/KO with its error codes."""
    root = _parse(xml, "Acquittement")
    acquit = _find(root, "ACQUIT")
    if acquit is None:
        raise PesImportError(f"/{_local(root.tag)} : ce fichier n'est pas un acquittement PES (bloc ACQUIT absent).")
    elements = []
    for index, element in enumerate(_children(acquit, "ElementACQUIT"), start=1):
        path = f"/ACQUIT/ElementACQUIT[{index}]"
        domain = _required(element, "DomaineAck", path)
        ok = _boolean(_required(element, "EtatAck", path), f"{path}/EtatAck")
        number = _int(_value(element, "NumBord"), f"{path}/NumBord")
        exercice = _int(_value(element, "ExerciceBord"), f"{path}/ExerciceBord")
        pieces = []
        for p_index, detail in enumerate(_children(element, "DetailPiece"), start=1):
            p_path = f"{path}/DetailPiece[{p_index}]"
            lines = tuple(
                AckLine(line=_int(_required(line, "NumLigne", f"{p_path}/DetailLigne"), f"{p_path}/DetailLigne/NumLigne"),
                        errors=_ack_errors(line))
                for line in _children(detail, "DetailLigne"))
            pieces.append(AckPiece(piece=_int(_required(detail, "NumPiece", p_path), f"{p_path}/NumPiece"),
                                   errors=_ack_errors(detail), lines=lines))
        elements.append(AckElement(domain=domain, ok=ok, exercice=exercice, bordereau=number,
                                   attachment_id=_value(element, "IdUnique"), errors=_ack_errors(element),
                                   pieces=tuple(pieces)))
    if not elements:
        raise PesImportError("/ACQUIT : aucun ElementACQUIT.")
    header = _header(root)
    return AckResult(file_name=header["file_name"], structure_date=header["structure_date"], id_post=header["id_post"],
                     cod_col=header["cod_col"], cod_bud=header["cod_bud"], elements=tuple(elements))


# --- PES Retour Recette ------------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """One EncaissementEmargement: how and when money came in on a line."""

    origin: str  # OrgEma; "10" = paid online (TIPI/PayFiP)
    on: date | None
    amount_cents: int

    @property
    def origin_label(self) -> str:
        return RECOVERY_ORIGINS.get(self.origin, self.origin)


@dataclass(frozen=True)
class LineState:
    line: int  # IdLigne = sous-article
    state: str  # EtatLigPce
    amount_cents: int | None  # MtHT as taken by the comptable
    recovered_cents: int  # MtRecoTot, else the sum of the recoveries
    recovery_count: int
    recoveries: tuple[Recovery, ...] = ()
    remaining_cents: int | None = None  # InfoContentieux/SldPrinc when given
    observation: str | None = None
    comment: str | None = None

    @property
    def state_label(self) -> str:
        return LINE_STATES.get(self.state, self.state)

    @property
    def settled(self) -> bool:
        """Soldée (05) or soldée en non-valeur (06): nothing more will be recovered."""
        return self.state in ("05", "06")

    @property
    def paid_via_payfip(self) -> bool:
        return any(r.origin == ORIGIN_PAYFIP for r in self.recoveries)


@dataclass(frozen=True)
class PieceState:
    """The comptable's view of one article (pièce) at ``as_of``.

    ``piece`` is ``None`` for a ``BordereauORMCGlobal`` event: it applies to every pièce of
    the bordereau (prise en charge, mise en instance or rejet of the whole rôle)."""

    exercice: int
    bordereau: int
    piece: int | None
    state: str  # EtatPce: 01 en instance, 02 PEC, 03 PEC partielle, 04 rejetée, 05 annulée
    as_of: date | None = None  # EnTetePES/DteStr of the file
    taken_on: date | None = None  # DtePcePec
    rejected_on: date | None = None  # DtePceRej
    pending_on: date | None = None  # DtePceInst
    observation: str | None = None  # ObsEtat (codes joined by "-")
    comment: str | None = None
    debt_number: str | None = None  # InfoORMC/NumDette…
    period: str | None = None
    key1: str | None = None
    key2: str | None = None
    lines: tuple[LineState, ...] = ()
    amount_cents: int | None = None  # BordereauORMCGlobal/MtTTC for a global event

    @property
    def state_label(self) -> str:
        return PIECE_STATES.get(self.state, self.state)

    @property
    def settled(self) -> bool:
        return bool(self.lines) and all(line.settled for line in self.lines)

    @property
    def recovered_cents(self) -> int:
        return sum(line.recovered_cents for line in self.lines)

    @property
    def taken_amount_cents(self) -> int | None:
        amounts = [line.amount_cents for line in self.lines]
        return None if not amounts or None in amounts else sum(amounts)

    @property
    def paid_via_payfip(self) -> bool:
        return any(line.paid_via_payfip for line in self.lines)

    @property
    def piece_number_burnt(self) -> bool:
        """Rejected after its prise en charge was annulled: this IdPce may never be reused."""
        return self.state == "04" and self.taken_on is not None and self.rejected_on is not None


def _line_state(ligne: ET.Element, path: str) -> LineState:
    bloc = _child(ligne, "BlocLignePiece")
    info = _child(bloc, "InfoLignePiece")
    info_path = f"{path}/BlocLignePiece/InfoLignePiece"
    if info is None:
        raise PesImportError(f"{info_path} : bloc obligatoire absent.")
    recoveries = []
    for r_index, ema in enumerate(_children(ligne, "EncaissementEmargement"), start=1):
        r_path = f"{path}/EncaissementEmargement[{r_index}]"
        recoveries.append(Recovery(origin=_required(ema, "OrgEma", r_path),
                                   on=_date(_value(ema, "DteReco"), f"{r_path}/DteReco"),
                                   amount_cents=_cents(_required(ema, "MtReco", r_path), f"{r_path}/MtReco")))
    reco = _child(bloc, "InfoRecouvrement")
    total = _cents(_value(reco, "MtRecoTot"), f"{path}/BlocLignePiece/InfoRecouvrement/MtRecoTot")
    count = _int(_value(reco, "NbrReco"), f"{path}/BlocLignePiece/InfoRecouvrement/NbrReco")
    contentieux = _child(bloc, "InfoContentieux")
    return LineState(
        line=_int(_required(info, "IdLigne", info_path), f"{info_path}/IdLigne"),
        state=_required(info, "EtatLigPce", info_path),
        amount_cents=_cents(_value(info, "MtHT"), f"{info_path}/MtHT"),
        recovered_cents=total if total is not None else sum(r.amount_cents for r in recoveries),
        recovery_count=count if count is not None else len(recoveries),
        recoveries=tuple(recoveries),
        remaining_cents=_cents(_value(contentieux, "SldPrinc"), f"{path}/BlocLignePiece/InfoContentieux/SldPrinc"),
        observation=_value(info, "ObsEtat"), comment=_value(info, "Commentaire"))


def parse_pes_retour(xml: bytes) -> list[PieceState]:
    """Every pièce (and global ORMC bordereau event) of a PES Retour Recette file."""
    root = _parse(xml, "PES Retour")
    recette = _find(root, "PES_RecetteRetour")
    if recette is None:
        raise PesImportError(f"/{_local(root.tag)} : ce fichier n'est pas un PES Retour Recette "
                             "(bloc PES_RecetteRetour absent).")
    as_of = _header(root)["structure_date"]
    states: list[PieceState] = []
    for b_index, bordereau in enumerate(_children(recette, "Bordereau"), start=1):
        b_path = f"/PES_RecetteRetour/Bordereau[{b_index}]"
        global_block = _child(bordereau, "BordereauORMCGlobal")
        if global_block is not None:
            g_path = f"{b_path}/BordereauORMCGlobal"
            taken = _date(_value(global_block, "DtePec"), f"{g_path}/DtePec")
            rejected = _date(_value(global_block, "DteRej"), f"{g_path}/DteRej")
            pending = _date(_value(global_block, "DteInst"), f"{g_path}/DteInst")
            state = "04" if rejected else "01" if pending and not taken else "02" if taken else None
            if state is None:
                raise PesImportError(f"{g_path} : ni date de prise en charge, ni de rejet, ni de mise en instance.")
            states.append(PieceState(
                exercice=_int(_required(global_block, "Exer", g_path), f"{g_path}/Exer"),
                bordereau=_int(_required(global_block, "IdBord", g_path), f"{g_path}/IdBord"),
                piece=None, state=state, as_of=as_of, taken_on=taken, rejected_on=rejected, pending_on=pending,
                amount_cents=_cents(_value(global_block, "MtTTC"), f"{g_path}/MtTTC")))
            continue
        bloc = _child(bordereau, "BlocBordereau")
        if bloc is None:
            raise PesImportError(f"{b_path} : BlocBordereau ou BordereauORMCGlobal attendu.")
        exercice = _int(_required(bloc, "Exer", f"{b_path}/BlocBordereau"), f"{b_path}/BlocBordereau/Exer")
        number = _int(_required(bloc, "IdBord", f"{b_path}/BlocBordereau"), f"{b_path}/BlocBordereau/IdBord")
        for p_index, piece in enumerate(_children(bordereau, "Piece"), start=1):
            p_path = f"{b_path}/Piece[{p_index}]"
            bloc_piece = _child(piece, "BlocPiece")
            bp_path = f"{p_path}/BlocPiece"
            if bloc_piece is None:
                raise PesImportError(f"{bp_path} : bloc obligatoire absent.")
            ormc = _child(bloc_piece, "InfoORMC")
            states.append(PieceState(
                exercice=exercice, bordereau=number,
                piece=_int(_required(bloc_piece, "IdPce", bp_path), f"{bp_path}/IdPce"),
                state=_required(bloc_piece, "EtatPce", bp_path), as_of=as_of,
                taken_on=_date(_value(bloc_piece, "DtePcePec"), f"{bp_path}/DtePcePec"),
                rejected_on=_date(_value(bloc_piece, "DtePceRej"), f"{bp_path}/DtePceRej"),
                pending_on=_date(_value(bloc_piece, "DtePceInst"), f"{bp_path}/DtePceInst"),
                observation=_value(bloc_piece, "ObsEtat"), comment=_value(bloc_piece, "Commentaire"),
                debt_number=_value(ormc, "NumDette"), period=_value(ormc, "Per"), key1=_value(ormc, "Cle1"),
                key2=_value(ormc, "Cle2"),
                lines=tuple(_line_state(ligne, f"{p_path}/LigneDePiece[{l_index}]")
                            for l_index, ligne in enumerate(_children(piece, "LigneDePiece"), start=1))))
    return states


# --- Applying to invoices ----------------------------------------------------------------------


class RecoveryStatus:
    """Where a transmitted invoice stands (protocols.md §4.3)."""

    EXPORTED = "exported"  # PES file built, numbers assigned, régie balance closed
    TRANSMITTED = "transmitted"  # handed to the tiers de transmission
    ACK_OK = "ack_ok"  # integrated by the guichet (visible to the comptable)
    ACK_KO = "ack_ko"  # refused by the guichet: correct and re-issue under new numbers
    PENDING = "en_instance"  # mis en instance by the comptable
    TAKEN = "pris_en_charge"  # prise en charge: the family receives an ASAP
    PARTIAL = "partiel"  # some money recovered
    SETTLED = "solde"  # fully recovered: "réglée auprès du Trésor public"
    WRITTEN_OFF = "non_valeur"  # closed in non-valeur
    REJECTED = "rejete"  # rejected by the comptable: back to the régisseur for correction
    CANCELLED = "annule"  # annulled


# Progress order: a state from an older file never moves an invoice back.
_RANK = {
    RecoveryStatus.EXPORTED: 0, RecoveryStatus.TRANSMITTED: 1, RecoveryStatus.ACK_KO: 2, RecoveryStatus.ACK_OK: 2,
    RecoveryStatus.PENDING: 3, RecoveryStatus.TAKEN: 4, RecoveryStatus.PARTIAL: 5, RecoveryStatus.REJECTED: 6,
    RecoveryStatus.CANCELLED: 6, RecoveryStatus.SETTLED: 7, RecoveryStatus.WRITTEN_OFF: 7,
}

STATUS_LABELS = {  # back-office wording
    RecoveryStatus.EXPORTED: "Titre généré (fichier PES à transmettre)",
    RecoveryStatus.TRANSMITTED: "Transmis au comptable public",
    RecoveryStatus.ACK_OK: "Accepté par le guichet Hélios",
    RecoveryStatus.ACK_KO: "Refusé par le guichet Hélios : à corriger et réémettre",
    RecoveryStatus.PENDING: "Mis en instance par le comptable",
    RecoveryStatus.TAKEN: "Pris en charge par le comptable",
    RecoveryStatus.PARTIAL: "Partiellement recouvré",
    RecoveryStatus.SETTLED: "Soldé auprès du Trésor public",
    RecoveryStatus.WRITTEN_OFF: "Admis en non-valeur",
    RecoveryStatus.REJECTED: "Rejeté par le comptable : à corriger et réémettre",
    RecoveryStatus.CANCELLED: "Annulé",
}

_TO_PAY_AT_TRESOR = "Transmise au Trésor public : à régler auprès du comptable public, avec l'avis des sommes à payer"
FAMILY_LABELS = {  # what the family sees on the invoice
    RecoveryStatus.EXPORTED: _TO_PAY_AT_TRESOR,
    RecoveryStatus.TRANSMITTED: _TO_PAY_AT_TRESOR,
    RecoveryStatus.ACK_OK: _TO_PAY_AT_TRESOR,
    RecoveryStatus.ACK_KO: "Transmise au Trésor public (en cours de traitement)",
    RecoveryStatus.PENDING: "Transmise au Trésor public (en cours de traitement)",
    RecoveryStatus.TAKEN: _TO_PAY_AT_TRESOR,
    RecoveryStatus.PARTIAL: "Partiellement réglée auprès du Trésor public",
    RecoveryStatus.SETTLED: "Réglée auprès du Trésor public",
    RecoveryStatus.WRITTEN_OFF: "Close par le Trésor public",
    RecoveryStatus.REJECTED: "Transmise au Trésor public (en cours de traitement)",
    RecoveryStatus.CANCELLED: "Annulée par le Trésor public",
}


@dataclass(frozen=True)
class InvoiceRecoveryState:
    """The recovery facts the core keeps per transmitted invoice (plain data)."""

    invoice: str  # invoice number, for messages
    exercice: int
    bordereau: int  # IdBord
    piece: int  # IdPce
    amount_cents: int  # what was transmitted
    status: str = RecoveryStatus.TRANSMITTED
    recovered_cents: int = 0
    paid_via_payfip: bool = False
    as_of: date | None = None  # date of the latest PES Retour applied
    messages: tuple[str, ...] = ()  # acquit errors / comptable's observations, for the finance user
    anomaly: str = ""  # amount taken by the comptable differs from ours
    reference: str = ""  # NumDette/Per/Cle1/Cle2 as returned, to show the family
    attachment_id: str = ""  # IdUnique of its PDF in PES_PJ, to match PJ acquits

    @property
    def family_label(self) -> str:
        return FAMILY_LABELS.get(self.status, _TO_PAY_AT_TRESOR)

    @property
    def needs_correction(self) -> bool:
        return self.status in (RecoveryStatus.ACK_KO, RecoveryStatus.REJECTED)


@dataclass(frozen=True)
class RecoveryChange:
    invoice: str  # key in ``current``
    before: InvoiceRecoveryState
    after: InvoiceRecoveryState
    summary: str  # French, for the audit log / the finance user


def _euros(cents: int) -> str:
    return f"{cents // 100},{cents % 100:02d} €" if cents >= 0 else f"-{_euros(-cents)}"


def _index(current: Mapping[str, InvoiceRecoveryState]) -> dict[tuple[int, int], list[str]]:
    by_bordereau: dict[tuple[int, int], list[str]] = {}
    for key, state in current.items():
        by_bordereau.setdefault((state.exercice, state.bordereau), []).append(key)
    return by_bordereau


def _changes(current: Mapping[str, InvoiceRecoveryState], updated: Mapping[str, InvoiceRecoveryState]) -> list[RecoveryChange]:
    changes = []
    for key, after in updated.items():
        before = current[key]
        if after != before:
            summary = STATUS_LABELS.get(after.status, after.status)
            if after.recovered_cents != before.recovered_cents:
                summary += f" ; recouvré {_euros(after.recovered_cents)}"
            if after.paid_via_payfip and not before.paid_via_payfip:
                summary += " (paiement en ligne PayFiP)"
            if after.anomaly and after.anomaly != before.anomaly:
                summary += f" ; {after.anomaly}"
            changes.append(RecoveryChange(invoice=key, before=before, after=after, summary=summary))
    return changes


def apply_ack(current: Mapping[str, InvoiceRecoveryState], ack: AckResult, *,
              file_bordereaux: Iterable[tuple[int, int]] = ()) -> list[RecoveryChange]:
    """Changes an acquittement brings to invoices that are exported or transmitted.

    A bordereau OK → ``ack_ok``; KO → ``ack_ko`` for every pièce of it, with the bordereau's
    and the pièce's own errors. A file-level KO (technique, signature: no bordereau number)
    applies to ``file_bordereaux``, the (exercice, IdBord) the core knows the file carried.
    Invoices already further on (a PES Retour came first) are left alone. Idempotent.
    """
    by_bordereau = _index(current)
    updated: dict[str, InvoiceRecoveryState] = {}
    early = (RecoveryStatus.EXPORTED, RecoveryStatus.TRANSMITTED, RecoveryStatus.ACK_OK, RecoveryStatus.ACK_KO)

    def mark(key: str, ok: bool, messages: list[str]) -> None:
        state = updated.get(key, current[key])
        if state.status not in early:
            return
        if ok and state.status == RecoveryStatus.ACK_KO and key in updated:
            return  # a KO element in the same acquit wins
        status = RecoveryStatus.ACK_OK if ok else RecoveryStatus.ACK_KO
        kept = tuple(state.messages) if state.status == status else ()
        merged = kept + tuple(m for m in messages if m not in kept)
        updated[key] = replace(state, status=status, messages=merged)

    for element in ack.file_level:
        if not element.ok:
            for exercice, number in file_bordereaux:
                for key in by_bordereau.get((exercice, number), []):
                    mark(key, False, [f"Fichier refusé ({element.domain_label}) : {m}" for m in element.messages()]
                         or [f"Fichier refusé ({element.domain_label})."])
    for element in ack.bordereaux:
        keys = [k for (exercice, number), ks in by_bordereau.items()
                if number == element.bordereau and element.exercice in (exercice, None) for k in ks]
        pieces = {p.piece: p for p in element.pieces}
        for key in keys:
            piece = pieces.get(current[key].piece)
            messages = [str(e) for e in element.errors]
            if piece is not None:
                messages += [f"Pièce {piece.piece} : {e}" for e in piece.errors]
                messages += [f"Ligne {line.line} : {e}" for line in piece.lines for e in line.errors]
            # An OK bordereau may still list a pièce in error: that pièce is KO.
            ok = element.ok and not (piece is not None and (piece.errors or any(line.errors for line in piece.lines)))
            mark(key, ok, messages if not ok else [])
    # A refused PJ does not undo an integrated bordereau (re-issuing would duplicate the
    # titre): the invoice keeps its status and the finance user sees why the PDF must be
    # sent again on its own.
    by_attachment = {s.attachment_id: key for key, s in current.items() if s.attachment_id}
    for element in ack.attachments:
        key = by_attachment.get(element.attachment_id)
        if key is None or element.ok:
            continue
        state = updated.get(key, current[key])
        notes = [f"Pièce jointe {element.attachment_id} refusée : {m}" for m in element.messages()] or [
            f"Pièce jointe {element.attachment_id} refusée."]
        merged = tuple(state.messages) + tuple(n for n in notes if n not in state.messages)
        if merged != state.messages:
            updated[key] = replace(state, messages=merged)
    return _changes(current, updated)


def _status_from(state: PieceState, amount_cents: int) -> str:
    if state.state == "04":
        return RecoveryStatus.REJECTED
    if state.state == "05":
        return RecoveryStatus.CANCELLED
    if state.state == "01":
        return RecoveryStatus.PENDING
    lines = state.lines
    if lines and all(line.state == "05" for line in lines):
        return RecoveryStatus.SETTLED
    if lines and all(line.state in ("05", "06") for line in lines):
        return RecoveryStatus.WRITTEN_OFF
    recovered = state.recovered_cents
    if lines and recovered >= amount_cents > 0:
        return RecoveryStatus.SETTLED
    if recovered > 0:
        return RecoveryStatus.PARTIAL
    return RecoveryStatus.TAKEN


def _reference(state: PieceState) -> str:
    parts = [state.debt_number, state.period, state.key1, state.key2]
    return " ".join(p for p in parts if p) if state.debt_number else ""


def apply_retour(current: Mapping[str, InvoiceRecoveryState], states: Iterable[PieceState]) -> list[RecoveryChange]:
    """Changes a PES Retour brings to the invoices in ``current`` (keyed by invoice number).

    A pièce is matched by (exercice, IdBord, IdPce); a global ORMC event by (exercice, IdBord)
    applies to all the bordereau's pièces that have no detail of their own in the same file.
    The state is what the comptable says (EtatPce, then the lines: all 05 → soldée, 05/06 →
    non-valeur, money recovered → partiel or soldée when it covers the amount); a newer file
    wins even when it moves an invoice back (a payment rejected by the bank); recovered
    amounts are MtRecoTot (cumulative), PayFiP is OrgEma 10. States dated before the last
    applied file (``as_of``) are ignored, so an old file read late changes nothing; applying
    the same file again yields no change. Pièces we do not know are ignored: see
    :func:`unmatched_states`.
    """
    by_piece = {(s.exercice, s.bordereau, s.piece): key for key, s in current.items()}
    by_bordereau = _index(current)
    states = list(states)
    detailed = {(s.exercice, s.bordereau, s.piece) for s in states if s.piece is not None}
    updated: dict[str, InvoiceRecoveryState] = {}

    for state in states:
        if state.piece is None:
            keys = [k for k in by_bordereau.get((state.exercice, state.bordereau), [])
                    if (state.exercice, state.bordereau, current[k].piece) not in detailed]
        else:
            key = by_piece.get((state.exercice, state.bordereau, state.piece))
            keys = [key] if key else []
        for key in keys:
            before = updated.get(key, current[key])
            if before.as_of and state.as_of and state.as_of < before.as_of:
                continue  # an older file: it cannot undo what a newer one said
            status = _status_from(state, before.amount_cents)
            if state.piece is None and _RANK[status] < _RANK.get(before.status, 0):
                continue  # a rôle-wide event never undoes what is known of the pièce itself
            if state.piece is None:
                recovered, payfip = before.recovered_cents, before.paid_via_payfip
            else:
                recovered = state.recovered_cents
                payfip = before.paid_via_payfip or state.paid_via_payfip
            messages = tuple(m for m in (
                f"Observation du comptable : {state.observation}" if state.observation else "",
                f"Commentaire du comptable : {state.comment}" if state.comment else "",
            ) if m)
            anomaly = ""
            taken = state.taken_amount_cents if state.piece is not None else None
            if taken is not None and taken != before.amount_cents:
                anomaly = (f"montant pris en charge {_euros(taken)} différent du montant transmis "
                           f"{_euros(before.amount_cents)}")
            updated[key] = replace(
                before, status=status, recovered_cents=recovered, paid_via_payfip=payfip,
                as_of=state.as_of or before.as_of, messages=messages or before.messages,
                anomaly=anomaly or before.anomaly, reference=_reference(state) or before.reference)
    return _changes(current, updated)


def unmatched_states(current: Mapping[str, InvoiceRecoveryState], states: Iterable[PieceState]) -> list[PieceState]:
    """States of pièces (or bordereaux) no invoice in ``current`` matches: to show the finance
    user (a titre issued by another software, a wrong budget, a file for another commune)."""
    pieces = {(s.exercice, s.bordereau, s.piece) for s in current.values()}
    bordereaux = {(s.exercice, s.bordereau) for s in current.values()}
    return [s for s in states
            if (s.piece is None and (s.exercice, s.bordereau) not in bordereaux)
            or (s.piece is not None and (s.exercice, s.bordereau, s.piece) not in pieces)]
