"""PES V2 Recette "Aller" for an ORMC bordereau (rôle): plain data in, XML bytes out.

Pure module: no Django, no ORM, no clock, no I/O. The billing core maps its invoices to the
dataclasses below (see :func:`piece_from_invoice`), allocates the numbers (see
:func:`next_numbers`), calls :func:`build_pes_aller`, then checks the bytes with
:func:`marelle_tresor_public.validator.validate_pes_aller` before storing them.

What the file contains (DGFiP "documentation technique du PES v2", pages
``DomaineGlobalAller_blocscommuns``, ``PES_RecetteAller_blocs``/``_codes``, ``PES_PJAller_blocs``,
``Annexes``; summary in ``shared/reference/protocols.md`` §3):

- ``Enveloppe`` (``TypFic`` PESORMC) and ``EnTetePES`` (codique, SIRET, CodCol, CodBud);
- one ``Bordereau`` of type 06 (ORMC): ``IdBord`` is the rôle number, ``MtBordHt`` the sum of
  the lines; ``InfoDematerialisee`` 0 and no signature (the commune's chain signs if needed);
- one ``Piece`` (``TypPce`` 15, ``NatPce`` 01, an *article de rôle*) per family invoice, with
  one ``LigneDePiece`` (a *sous-article*) per invoice line group, each carrying the debtor
  (``CatTiers`` 01 personne physique / ``NatJur`` 01 particulier / ``TypTiers`` 01);
- the invoice PDFs in ``PES_PJ`` (gzip then base64), referenced from their pièce by ``PJRef``.

Conventions: every value is an empty element with a ``V`` attribute; amounts are euros with a
dot and two decimals, computed from integer cents without floats; dates are ISO; texts are
upper-case ASCII without accents, cut to the field's length (as Noethys does); the file is
declared and encoded ISO-8859-1 (the encoding Noethys' accepted files use; the pages we read
do not name one, and our texts are ASCII anyway). The output is deterministic: the same input
gives byte-identical files (gzip without timestamp), so a stored file can be rebuilt and
compared.
"""

from __future__ import annotations

import base64
import gzip
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

try:  # python-stdnum comes with the core; the SIRET check digit is checked when it is there.
    from stdnum.fr import siret as _stdnum_siret
except ImportError:  # pragma: no cover
    _stdnum_siret = None

__all__ = [
    "ALLER_NAMESPACE", "ENCODING", "PesDataError", "NumberingError",
    "PesHeader", "Bordereau", "Debtor", "PieceLine", "Piece",
    "InvoiceLineData", "InvoiceData", "piece_from_invoice", "group_invoice_lines",
    "UsedBordereau", "Numbers", "next_numbers",
    "build_pes_aller", "format_amount", "normalise_text", "attachment_id", "attachment_name",
    "encode_attachment", "decode_attachment", "default_file_name",
]

ALLER_NAMESPACE = "http://www.minefi.gouv.fr/cp/helios/pes_v2/Rev0/aller"
ENCODING = "ISO-8859-1"

# Codes fixed for a family-portal ORMC (protocols.md §3.4, annex 2 and 3 of the DosTech).
TYP_FIC_ORMC = "PESORMC"
TYP_BORD_ORMC = "06"
TYP_PCE_ORMC = "15"
NAT_PCE_FONCTIONNEMENT = "01"
CAT_TIERS_PERSONNE_PHYSIQUE = "01"
NAT_JUR_PARTICULIER = "01"
TYP_TIERS_DEBITEUR_PRINCIPAL = "01"
EDITION_ORMC_ENSU = "06"  # the DGFiP prints/sends the ASAP, merging the invoice PDF (PJ type 010)
TYPE_PJ_FACTURE_ENSU = "010"
NATURE_ORMC = "588"  # value the DosTech suggests for ORMC lines
MAX_AMOUNT_CENTS = 10**14 - 1  # Base_Montant: 14 digits including the 2 decimals
MAX_ID_BORD = 9_999_999  # Base_Num7
MAX_ID_PCE = 99_999_999  # Base_Num8
MAX_ID_LIGNE = 999_999  # Base_Num6
MAX_NUM_DETTE = 10**15 - 1  # Base_Num15

CODIQUE = re.compile(r"^(02[AB][0-9]{3,4}|[0-9]{6,7})$")
SIRET = re.compile(r"^[0-9]{14}$")
COD_COL = re.compile(r"^[0-9]{3}$")
COD_BUD = re.compile(r"^[0-9A-Z][0-9]$")
POSTCODE = re.compile(r"^[0-9]{5}$")
PRODUCT_CODE = re.compile(r"^[0-9A-Za-z]{1,4}$")
ALNUM = re.compile(r"^[0-9A-Za-z]+$")

CIVILITIES = {
    "m": "M", "m.": "M", "mr": "M", "mr.": "M", "monsieur": "M",
    "mme": "MME", "mme.": "MME", "madame": "MME",
}


class PesDataError(ValueError):
    """The data given cannot make a valid PES file; ``errors`` are French sentences, each
    naming the invoice and the field, for the régisseur."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class NumberingError(ValueError):
    pass


# --- Input data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PesHeader:
    """Who sends the file to which comptable: the régie's plugin settings plus the file's
    date and name. ``file_name`` (``NomFic``) must never have been used before; by default it
    is derived from the budget and the bordereau number, which are never reused."""

    id_post: str  # codique du poste comptable
    id_coll: str  # SIRET du budget
    cod_col: str
    cod_bud: str
    created_on: date  # DteStr
    budget_label: str | None = None  # LibelleColBud (settings.label)
    post_label: str | None = None  # LibellePoste
    file_name: str | None = None  # NomFic; default_file_name() when None
    sender: str = "MARELLE"  # Emetteur/Sigle: the software vendor (<= 32)
    application: str = "MARELLE PORTAIL FAMILLE"  # Emetteur/Adresse: name and version (<= 38)

    @classmethod
    def from_settings(cls, settings, *, created_on: date, file_name: str | None = None, **extra) -> PesHeader:
        """From the régie's ``TresorPublicSettings`` (or a mapping with the same keys)."""
        get = settings.get if isinstance(settings, Mapping) else (lambda key, default=None: getattr(settings, key, default))
        return cls(id_post=get("id_post"), id_coll=get("id_coll"), cod_col=get("cod_col"), cod_bud=get("cod_bud"),
                   budget_label=get("label"), created_on=created_on, file_name=file_name, **extra)


@dataclass(frozen=True)
class Bordereau:
    """One rôle ORMC. ``number`` (IdBord) comes from :func:`next_numbers`."""

    exercice: int  # Exer
    number: int  # IdBord = numéro de rôle
    issued_on: date  # DteBordEm
    label: str  # Objet: the rôle's label, e.g. "Périscolaire septembre 2026"
    asap_date: date | None = None  # DteAsp (only for ASAPs the commune sends itself)
    # ASAP handling for every pièce: "06" = DGFiP prints/sends the ASAP with the invoice PDF
    # (PJ type 010, required); "03" = Chorus Pro (public debtors, not families); None = no
    # DGFiP handling (the commune sends its own ASAP).
    edition: str | None = EDITION_ORMC_ENSU
    attachment_type: str = TYPE_PJ_FACTURE_ENSU  # TypePJ of the invoice PDFs


@dataclass(frozen=True)
class Debtor:
    """The responsable légal who owes the invoice (a natural person)."""

    civility: str  # "M" / "MME" (also "m", "mme", "Monsieur", "Madame")
    last_name: str
    first_name: str
    address: str  # Adr2: number and street
    postcode: str  # 5 digits; ignored abroad ("99999" is written)
    city: str
    complement: str = ""  # Adr1: "complément distribution" (bâtiment, appartement, chez…)
    locality: str = ""  # Adr3: lieu-dit, BP
    reference: str = ""  # RefTiers (<= 30): the family's stable reference, groups its debts
    country_code: str | None = None  # INSEE country code (3 digits) when not resident in France

    @classmethod
    def from_snapshot(cls, snapshot: Mapping, *, reference: str = "") -> Debtor:
        """From ``Invoice.debtor``. The snapshot must carry ``civility``, ``first_name`` and
        ``last_name`` separately (a PES debtor needs them apart), plus ``address``,
        ``complement``, ``postcode``, ``city``; optional ``locality`` and ``country_code``."""
        missing = [key for key in ("civility", "first_name", "last_name") if key not in snapshot]
        if missing:
            raise PesDataError([
                "Le débiteur de la facture ne donne pas séparément civilité, prénom et nom "
                f"(clés manquantes : {', '.join(missing)}) : le titre ne peut pas être émis."])
        return cls(civility=snapshot.get("civility") or "", last_name=snapshot.get("last_name") or "",
                   first_name=snapshot.get("first_name") or "", address=snapshot.get("address") or "",
                   complement=snapshot.get("complement") or "", locality=snapshot.get("locality") or "",
                   postcode=snapshot.get("postcode") or "", city=snapshot.get("city") or "",
                   country_code=snapshot.get("country_code") or None, reference=reference)


@dataclass(frozen=True)
class PieceLine:
    """One sous-article: an invoice line group (e.g. one child's cantine of the month)."""

    label: str  # ObjLignePce (<= 160)
    amount_cents: int  # MtHT, > 0
    product_code: str  # CodProdLoc (<= 4 alphanumerics), mapped in Hélios to a national product
    nature: str = NATURE_ORMC  # Nature (compte), "588" suggested for ORMC


@dataclass(frozen=True)
class Piece:
    """One article de rôle = one family invoice."""

    number: int  # IdPce, from next_numbers()
    invoice_number: str  # "CG-2026-000042": key of its PDF in ``attachments``, PJ name
    label: str  # ObjPce (<= 160)
    debtor: Debtor
    lines: Sequence[PieceLine]
    total_cents: int  # the invoice's amount; must equal the sum of the lines
    debt_number: int | None = None  # NumDette (<= 15 digits), optional
    period: int | None = None  # Per (1 digit), optional
    attachment_id: str | None = None  # PJ IdUnique; attachment_id() when None


# --- From the billing core's invoices ----------------------------------------------------------


@dataclass(frozen=True)
class InvoiceLineData:
    """An ``InvoiceLine`` as plain data. ``group`` is what lines are grouped by inside one
    child's lines (the service label, say); empty means the line's own label."""

    label: str
    amount_cents: int
    child_name: str = ""
    group: str = ""
    quantity: int = 1
    unit_price_cents: int = 0


@dataclass(frozen=True)
class InvoiceData:
    """An issued ``Invoice`` as plain data (number, label, total, debtor snapshot, lines)."""

    number: str
    label: str
    total_cents: int
    debtor: Mapping
    lines: Sequence[InvoiceLineData]
    family_reference: str = ""  # e.g. "F000123", becomes RefTiers


def group_invoice_lines(lines: Iterable[InvoiceLineData], *,
                        product_code: str | Mapping[str, str] | Callable[[InvoiceLineData], str]) -> list[PieceLine]:
    """One :class:`PieceLine` per (child, group), in order of first appearance, amounts summed
    exactly (a negative line, e.g. a reduction, is netted inside its group)."""
    groups: dict[tuple[str, str], list[InvoiceLineData]] = {}
    for line in lines:
        groups.setdefault((line.child_name, line.group or line.label), []).append(line)
    result = []
    for (child, group), members in groups.items():
        if callable(product_code):
            code = product_code(members[0])
        elif isinstance(product_code, Mapping):
            code = product_code.get(group, product_code.get("*", ""))
        else:
            code = product_code
        label = f"{group} - {child}" if child else group
        result.append(PieceLine(label=label, amount_cents=sum(m.amount_cents for m in members), product_code=code))
    return result


def piece_from_invoice(invoice: InvoiceData, *, number: int,
                       product_code: str | Mapping[str, str] | Callable[[InvoiceLineData], str],
                       debt_number: int | None = None, period: int | None = None) -> Piece:
    """The pièce of one invoice: debtor from the snapshot, lines grouped per child and group."""
    return Piece(number=number, invoice_number=invoice.number, label=f"Facture {invoice.number} {invoice.label}",
                 debtor=Debtor.from_snapshot(invoice.debtor, reference=invoice.family_reference),
                 lines=group_invoice_lines(invoice.lines, product_code=product_code),
                 total_cents=invoice.total_cents, debt_number=debt_number, period=period)


# --- Numbers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsedBordereau:
    """A bordereau number already used for this budget (CodCol+CodBud) and TypBord, whatever
    became of it (sent, acknowledged, rejected, abandoned after generation)."""

    exercice: int
    number: int
    last_piece: int = 0  # the highest IdPce it used
    rejected: bool = False  # informative: a rejected number is never reused either


@dataclass(frozen=True)
class Numbers:
    exercice: int
    bordereau: int
    pieces: tuple[int, ...]


def next_numbers(used: Iterable[UsedBordereau], *, exercice: int, piece_count: int) -> Numbers:
    """The next bordereau number and ``piece_count`` piece numbers for ``exercice``.

    Both sequences are per exercice (and per budget and TypBord: pass only that budget's
    history), strictly increasing, start at 1, and never go back: a rejected or abandoned
    bordereau keeps its numbers for ever (Hélios refuses duplicates, and a titre whose prise en
    charge was annulled may not reuse its IdPce), so the correction goes out under new ones.
    The caller allocates under a row lock and records the result before building the file.
    """
    if piece_count < 1:
        raise NumberingError("Un bordereau compte au moins une pièce.")
    if not 1000 <= exercice <= 9999:
        raise NumberingError(f"Exercice {exercice} invalide (quatre chiffres).")
    same_year = [u for u in used if u.exercice == exercice]
    bordereau = max((u.number for u in same_year), default=0) + 1
    first_piece = max((u.last_piece for u in same_year), default=0) + 1
    last_piece = first_piece + piece_count - 1
    if bordereau > MAX_ID_BORD:
        raise NumberingError(f"Plus de numéro de bordereau disponible pour l'exercice {exercice} (7 chiffres).")
    if last_piece > MAX_ID_PCE:
        raise NumberingError(f"Plus de numéro de pièce disponible pour l'exercice {exercice} (8 chiffres).")
    return Numbers(exercice=exercice, bordereau=bordereau, pieces=tuple(range(first_piece, last_piece + 1)))


# --- Value formatting --------------------------------------------------------------------------

_TRANSLITERATE = str.maketrans({
    "œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "’": "'", "‘": "'", "‚": "'", "“": '"', "”": '"',
    "«": '"', "»": '"', "–": "-", "—": "-", "‐": "-", "…": "...", "€": "EUR", "°": " ", "\u00a0": " ",
    "\u202f": " ",
})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GUILLEMETS = re.compile(r"«\s*|\s*»")


def normalise_text(value: str | None, max_length: int) -> str:
    """Upper-case ASCII without accents or control characters, spaces collapsed, cut to
    ``max_length`` characters (Noethys' practice; Hélios matches debtors on these forms)."""
    text = value or ""
    if not text.isascii():
        text = _GUILLEMETS.sub('"', text)
        text = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
        text = "".join(c for c in text if not unicodedata.combining(c)).encode("ascii", "ignore").decode("ascii")
    text = " ".join(_CONTROL.sub(" ", text).split()).upper()
    return text[:max_length].rstrip()


def _is_meaningless(text: str) -> bool:
    # V_BaseString forbids "nc", V_BaseAlphanum forbids "0" and only zeros.
    return not text or text.lower() == "nc" or set(text) == {"0"}


def format_amount(cents: int) -> str:
    """``1234`` → ``"12.34"``: exact integer arithmetic, dot, always two decimals."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"montant en centimes attendu (int), reçu {cents!r}")
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    return f"{sign}{euros}.{rest:02d}"


def _iso(day: date) -> str:
    return day.isoformat()


def attachment_id(header: PesHeader, bordereau: Bordereau, piece: Piece) -> str:
    """PJ ``IdUnique`` (<= 50 letters/digits, unique for ever): SIRET + CodCol + CodBud +
    exercice + IdBord + IdPce, 38 digits/letters, unique because numbers are never reused."""
    return f"{header.id_coll}{header.cod_col}{header.cod_bud}{bordereau.exercice:04d}{bordereau.number:07d}{piece.number:08d}"


def attachment_name(piece: Piece) -> str:
    """``NomPJ``: a name with an extension, <= 100 characters."""
    safe = re.sub(r"[^0-9A-Za-z_-]+", "-", piece.invoice_number).strip("-") or str(piece.number)
    return f"FACTURE-{safe}"[:95] + ".pdf"


def default_file_name(header: PesHeader, bordereau: Bordereau) -> str:
    """``NomFic``: unique because (budget, exercice, bordereau number) is never reused."""
    return f"PESORMC_{header.id_coll}_{header.cod_col}{header.cod_bud}_{bordereau.exercice}_{bordereau.number:07d}.xml"


def encode_attachment(content: bytes) -> str:
    """gzip (no timestamp, so the output is reproducible) then base64, as PES_PJ requires."""
    return base64.b64encode(gzip.compress(content, compresslevel=6, mtime=0)).decode("ascii")


def decode_attachment(text: str) -> bytes:
    return gzip.decompress(base64.b64decode(text, validate=True))


# --- Input checks ------------------------------------------------------------------------------


def _check_header(header: PesHeader, errors: list[str]) -> None:
    if not CODIQUE.match(header.id_post or ""):
        errors.append(f"Codique du poste comptable « {header.id_post} » invalide : 6 ou 7 chiffres, "
                      "ou 02A/02B suivi de 3 ou 4 chiffres.")
    if not SIRET.match(header.id_coll or ""):
        errors.append(f"SIRET du budget « {header.id_coll} » invalide : 14 chiffres.")
    elif _stdnum_siret is not None and not _stdnum_siret.is_valid(header.id_coll):
        errors.append(f"SIRET du budget « {header.id_coll} » invalide : clé de contrôle incorrecte.")
    if not COD_COL.match(header.cod_col or ""):
        errors.append(f"Code collectivité « {header.cod_col} » invalide : 3 chiffres.")
    if not COD_BUD.match(header.cod_bud or ""):
        errors.append(f"Code budget « {header.cod_bud} » invalide : un chiffre ou une lettre majuscule puis un chiffre.")


def _check_bordereau(bordereau: Bordereau, errors: list[str]) -> None:
    if not 1000 <= bordereau.exercice <= 9999:
        errors.append(f"Exercice {bordereau.exercice} invalide.")
    if not 1 <= bordereau.number <= MAX_ID_BORD:
        errors.append(f"Numéro de bordereau {bordereau.number} invalide : de 1 à {MAX_ID_BORD}.")
    if bordereau.asap_date and bordereau.asap_date < bordereau.issued_on:
        errors.append("La date d'envoi des avis des sommes à payer précède la date d'émission du bordereau.")
    if bordereau.edition not in (None, "03", "06"):
        errors.append(f"Édition « {bordereau.edition} » interdite sur un titre ORMC (03 ou 06 seulement).")
    if _is_meaningless(normalise_text(bordereau.label, 160)):
        errors.append("L'objet du bordereau (rôle) est vide.")


def _check_piece(piece: Piece, edition: str | None, has_pdf: bool, errors: list[str]) -> None:
    where = f"Facture {piece.invoice_number}"
    debtor = piece.debtor
    if not 1 <= piece.number <= MAX_ID_PCE:
        errors.append(f"{where} : numéro de pièce {piece.number} invalide (de 1 à {MAX_ID_PCE}).")
    if piece.total_cents <= 0:
        errors.append(f"{where} : montant {format_amount(piece.total_cents)} € ; seules les factures d'un montant "
                      "positif sont transmises (les avoirs se règlent à la régie).")
    if not piece.lines:
        errors.append(f"{where} : aucune ligne.")
    if len(piece.lines) > MAX_ID_LIGNE:
        errors.append(f"{where} : trop de lignes ({len(piece.lines)}).")
    total = 0
    for index, line in enumerate(piece.lines, start=1):
        total += line.amount_cents
        if line.amount_cents <= 0:
            errors.append(f"{where}, ligne {index} « {line.label} » : montant {format_amount(line.amount_cents)} € ; "
                          "chaque ligne d'un titre doit être positive.")
        if line.amount_cents > MAX_AMOUNT_CENTS:
            errors.append(f"{where}, ligne {index} : montant trop élevé.")
        if not PRODUCT_CODE.match(line.product_code or ""):
            errors.append(f"{where}, ligne {index} : code produit local « {line.product_code} » invalide "
                          "(1 à 4 lettres ou chiffres).")
        if not re.fullmatch(r"[0-9]{1,12}", line.nature or ""):
            errors.append(f"{where}, ligne {index} : nature « {line.nature} » invalide (1 à 12 chiffres).")
    if piece.lines and total != piece.total_cents:
        errors.append(f"{where} : la somme des lignes ({format_amount(total)} €) diffère du montant de la facture "
                      f"({format_amount(piece.total_cents)} €).")
    if _is_meaningless(normalise_text(piece.label, 160)):
        errors.append(f"{where} : objet de la pièce vide.")
    if piece.debt_number is not None and not 1 <= piece.debt_number <= MAX_NUM_DETTE:
        errors.append(f"{where} : numéro de dette {piece.debt_number} invalide (1 à 15 chiffres).")
    if piece.period is not None and not 0 <= piece.period <= 9:
        errors.append(f"{where} : période {piece.period} invalide (un chiffre).")
    if piece.attachment_id is not None and not (ALNUM.match(piece.attachment_id) and len(piece.attachment_id) <= 50):
        errors.append(f"{where} : identifiant de PJ « {piece.attachment_id} » invalide (1 à 50 lettres ou chiffres).")
    if edition == "06" and not has_pdf:
        errors.append(f"{where} : la facture PDF est nécessaire pour que la DGFiP édite l'avis des sommes à payer.")
    if edition == "03":
        errors.append(f"{where} : l'édition Chorus Pro (03) demande un débiteur identifié par SIRET, pas une famille.")
    # Debtor (CatTiers 01: civility, first name and name are mandatory).
    if debtor.civility.strip().lower() in ("mlle", "mademoiselle", "melle"):
        errors.append(f"{where} : la civilité « Mademoiselle » n'est plus admise par la DGFiP (utiliser Madame).")
    elif debtor.civility.strip().lower() not in CIVILITIES:
        found = f"inconnue (« {debtor.civility} »)" if debtor.civility.strip() else "manquante"
        errors.append(f"{where} : civilité du débiteur {found} ; Monsieur ou Madame est obligatoire pour une "
                      "personne physique.")
    if _is_meaningless(normalise_text(debtor.last_name, 38)):
        errors.append(f"{where} : nom du débiteur manquant.")
    if _is_meaningless(normalise_text(debtor.first_name, 38)):
        errors.append(f"{where} : prénom du débiteur manquant (obligatoire pour une personne physique).")
    if _is_meaningless(normalise_text(debtor.address, 38)):
        errors.append(f"{where} : adresse (numéro et voie) du débiteur manquante.")
    if _is_meaningless(normalise_text(debtor.city, 38)):
        errors.append(f"{where} : ville du débiteur manquante.")
    if debtor.country_code and debtor.country_code != "100":
        if not re.fullmatch(r"[0-9]{3}", debtor.country_code):
            errors.append(f"{where} : code pays INSEE « {debtor.country_code} » invalide (3 chiffres).")
    elif not POSTCODE.match(debtor.postcode or "") or debtor.postcode == "99999":
        errors.append(f"{where} : code postal du débiteur « {debtor.postcode} » invalide (5 chiffres ; "
                      "à l'étranger, indiquer le pays).")
    if debtor.reference and _is_meaningless(normalise_text(debtor.reference, 30)):
        errors.append(f"{where} : référence du débiteur « {debtor.reference} » invalide.")


# --- XML ---------------------------------------------------------------------------------------
# Written as text rather than through ElementTree: ~0.4 million elements for 5,000 invoices,
# and ElementTree's pure-Python serialiser takes most of the time. Every value goes through
# _attr(), which escapes what XML requires.

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;",
                          "\r": "&#13;"})


def _attr(value: str) -> str:
    return value.translate(_ESCAPES)


class _Writer:
    def __init__(self):
        self.parts: list[str] = []
        self.depth = 0

    def open(self, tag: str, attributes: str = "") -> None:
        self.parts.append(f"{' ' * self.depth}<{tag}{attributes}>\n")
        self.depth += 1

    def close(self, tag: str) -> None:
        self.depth -= 1
        self.parts.append(f"{' ' * self.depth}</{tag}>\n")

    def leaf(self, tag: str, value: str) -> None:
        indent = " " * self.depth
        self.parts.append(f'{indent}<{tag} V="{_attr(value)}"/>\n')

    def text_leaf(self, tag: str, value: str | None, max_length: int) -> None:
        text = normalise_text(value, max_length)
        if not _is_meaningless(text):
            self.leaf(tag, text)

    def raw(self, text: str) -> None:
        self.parts.append(text)


def _tiers(debtor: Debtor, depth: int) -> str:
    """The Tiers block, rendered once per pièce and repeated on each of its lines."""
    w = _Writer()
    w.depth = depth
    w.open("Tiers")
    w.open("InfoTiers")
    w.text_leaf("RefTiers", debtor.reference, 30)
    w.leaf("CatTiers", CAT_TIERS_PERSONNE_PHYSIQUE)
    w.leaf("NatJur", NAT_JUR_PARTICULIER)
    w.leaf("TypTiers", TYP_TIERS_DEBITEUR_PRINCIPAL)
    w.leaf("Civilite", CIVILITIES[debtor.civility.strip().lower()])
    w.leaf("Nom", normalise_text(debtor.last_name, 38))
    w.leaf("Prenom", normalise_text(debtor.first_name, 38))
    w.close("InfoTiers")
    w.open("Adresse")
    w.leaf("TypAdr", "1")  # principal
    w.text_leaf("Adr1", debtor.complement, 38)
    w.leaf("Adr2", normalise_text(debtor.address, 38))
    w.text_leaf("Adr3", debtor.locality, 38)
    abroad = bool(debtor.country_code and debtor.country_code != "100")
    w.leaf("CP", "99999" if abroad else debtor.postcode)
    city = f"{debtor.postcode} {debtor.city}" if abroad and debtor.postcode else debtor.city
    w.leaf("Ville", normalise_text(city, 38))
    w.leaf("CodRes", "1" if abroad else "0")
    if abroad:
        w.leaf("CodPays", debtor.country_code)
    w.close("Adresse")
    w.close("Tiers")
    return "".join(w.parts)


def build_pes_aller(*, header: PesHeader, bordereau: Bordereau, pieces: list[Piece],
                    attachments: dict[str, bytes] | None = None) -> bytes:
    """The PES_Aller file (bytes, ISO-8859-1) of one ORMC bordereau.

    ``attachments`` maps an invoice number (``Piece.invoice_number``) to its PDF. Raises
    :class:`PesDataError` listing every problem found in the input (French, per invoice);
    nothing is written half-way. Run :func:`validator.validate_pes_aller` on the result.
    """
    attachments = attachments or {}
    errors: list[str] = []
    _check_header(header, errors)
    _check_bordereau(bordereau, errors)
    if not pieces:
        errors.append("Le bordereau ne contient aucune facture.")
    seen_numbers: set[int] = set()
    seen_invoices: set[str] = set()
    for piece in pieces:
        if piece.number in seen_numbers:
            errors.append(f"Facture {piece.invoice_number} : numéro de pièce {piece.number} déjà utilisé dans ce bordereau.")
        if piece.invoice_number in seen_invoices:
            errors.append(f"Facture {piece.invoice_number} : présente deux fois dans le bordereau.")
        seen_numbers.add(piece.number)
        seen_invoices.add(piece.invoice_number)
        pdf = attachments.get(piece.invoice_number)
        if pdf is not None and not pdf:
            errors.append(f"Facture {piece.invoice_number} : le fichier PDF est vide.")
        _check_piece(piece, bordereau.edition, bool(pdf), errors)
    for key in attachments:
        if key not in seen_invoices:
            errors.append(f"PDF « {key} » fourni pour une facture absente du bordereau.")
    ids = [p.attachment_id or attachment_id(header, bordereau, p) for p in pieces if attachments.get(p.invoice_number)]
    if len(set(ids)) != len(ids):
        errors.append("Deux pièces jointes portent le même identifiant unique.")
    total_cents = sum(p.total_cents for p in pieces)
    if total_cents > MAX_AMOUNT_CENTS:
        errors.append("Montant du bordereau trop élevé (14 chiffres au plus).")
    file_name = header.file_name or default_file_name(header, bordereau)
    if len(file_name) > 100 or _is_meaningless(file_name):
        errors.append(f"Nom de fichier « {file_name} » invalide (1 à 100 caractères).")
    if errors:
        raise PesDataError(errors)

    w = _Writer()
    w.raw(f'<?xml version="1.0" encoding="{ENCODING}"?>\n')
    w.open("n:PES_Aller", f' xmlns:n="{ALLER_NAMESPACE}"')
    w.open("Enveloppe")
    w.open("Parametres")
    w.leaf("Version", "2")
    w.leaf("TypFic", TYP_FIC_ORMC)
    w.leaf("NomFic", file_name)
    w.close("Parametres")
    w.open("Emetteur")
    w.leaf("Sigle", normalise_text(header.sender, 32))
    w.leaf("Adresse", normalise_text(header.application, 38))
    w.close("Emetteur")
    w.close("Enveloppe")

    w.open("EnTetePES")
    w.leaf("DteStr", _iso(header.created_on))
    w.leaf("IdPost", header.id_post)
    w.text_leaf("LibellePoste", header.post_label, 38)
    w.leaf("IdColl", header.id_coll)
    w.leaf("CodCol", header.cod_col)
    w.leaf("CodBud", header.cod_bud)
    w.text_leaf("LibelleColBud", header.budget_label, 38)
    w.close("EnTetePES")

    w.open("PES_RecetteAller")
    w.open("EnTeteRecette")
    w.leaf("IdVer", "2")
    w.leaf("InfoDematerialisee", "0")
    w.close("EnTeteRecette")
    w.open("Bordereau")
    w.open("BlocBordereau")
    w.leaf("Exer", str(bordereau.exercice))
    w.leaf("IdBord", str(bordereau.number))
    w.leaf("DteBordEm", _iso(bordereau.issued_on))
    w.leaf("TypBord", TYP_BORD_ORMC)
    w.leaf("NbrPce", str(len(pieces)))
    w.leaf("MtBordHt", format_amount(total_cents))
    if bordereau.asap_date:
        w.leaf("DteAsp", _iso(bordereau.asap_date))
    w.text_leaf("Objet", bordereau.label, 160)
    w.close("BlocBordereau")

    pj_items: list[tuple[str, str, str, bytes]] = []
    for piece in pieces:
        w.open("Piece")
        w.open("BlocPiece")
        w.leaf("IdPce", str(piece.number))
        w.leaf("TypPce", TYP_PCE_ORMC)
        w.leaf("NatPce", NAT_PCE_FONCTIONNEMENT)
        if bordereau.edition:
            w.leaf("Edition", bordereau.edition)
        w.text_leaf("ObjPce", piece.label, 160)
        if piece.debt_number is not None:
            w.leaf("NumDette", str(piece.debt_number))
        if piece.period is not None:
            w.leaf("Per", str(piece.period))
        pdf = attachments.get(piece.invoice_number)
        if pdf:
            unique = piece.attachment_id or attachment_id(header, bordereau, piece)
            name = attachment_name(piece)
            w.open("PJRef")
            w.leaf("Support", "01")
            w.leaf("IdUnique", unique)
            w.leaf("NomPJ", name)
            w.leaf("TypePJ", bordereau.attachment_type)
            w.close("PJRef")
            pj_items.append((unique, name, piece.invoice_number, pdf))
        w.close("BlocPiece")
        # An ORMC article has a single debtor: every sous-article carries the same one.
        tiers = _tiers(piece.debtor, w.depth + 1)
        for number, line in enumerate(piece.lines, start=1):
            w.open("LigneDePiece")
            w.open("BlocLignePiece")
            w.open("InfoLignePiece")
            w.leaf("IdLigne", str(number))
            w.text_leaf("ObjLignePce", line.label, 160)
            w.leaf("CodProdLoc", line.product_code.upper())
            w.leaf("Nature", line.nature)
            w.leaf("Majo", "0")
            w.leaf("TvaIntraCom", "0")
            w.leaf("MtHT", format_amount(line.amount_cents))
            w.close("InfoLignePiece")
            w.close("BlocLignePiece")
            w.raw(tiers)
            w.close("LigneDePiece")
        w.close("Piece")
    w.close("Bordereau")
    w.close("PES_RecetteAller")

    if pj_items:
        w.open("PES_PJ")
        w.open("EnTetePES_PJ")
        w.leaf("IdVer", "1")
        w.close("EnTetePES_PJ")
        for unique, name, invoice_number, pdf in pj_items:
            w.open("PJ")
            w.open("Contenu")
            w.raw(f'{" " * w.depth}<Fichier MIMEType="application/pdf">{encode_attachment(pdf)}</Fichier>\n')
            w.close("Contenu")
            w.leaf("IdUnique", unique)
            w.leaf("NomPJ", name)
            w.leaf("TypePJ", bordereau.attachment_type)
            w.leaf("Description", normalise_text(f"Facture {invoice_number}", 250))
            w.close("PJ")
        w.close("PES_PJ")
    w.close("n:PES_Aller")
    return "".join(w.parts).encode(ENCODING, "xmlcharrefreplace")
