"""Our own structural validator for PES V2 Recette Aller files (ORMC first).

The official XSD is not available offline (protocols.md §3.9), so this module encodes what the
DGFiP's documentation says about the blocks we emit and their neighbours: order and
cardinality of elements, "every leaf is an empty element with a V attribute", lengths, formats
and code lists, then the rules across fields that the guichet or the comptable enforces
(triplet TypBord/TypPce/NatPce, CatTiers/NatJur pairs, civility and first name of a natural
person, residence and country, Edition and PJ type, totals and counts, unique numbers, PJ
references and contents, signature versus InfoDematerialisee).

``validate_pes_aller(xml) -> list[str]``: an empty list means valid; otherwise French
messages, each starting with an XPath-like location (``/PES_Aller/PES_RecetteAller/
Bordereau[1]/Piece[2]/LigneDePiece[1]/Tiers[1]/InfoTiers/Nom : …``). Blocks we never emit
(prélèvement, hospital data, RIB, birth place, recouvrement, signatures) are accepted without
deep checks, except the leaf convention. Pure: no Django, stdlib only (plus python-stdnum for
the SIRET check digit when installed).
"""

from __future__ import annotations

import base64
import binascii
import gc
import gzip
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

try:  # python-stdnum is a dependency of the core; the check digit is a bonus when present.
    from stdnum.fr import siret as _stdnum_siret
except ImportError:  # pragma: no cover
    _stdnum_siret = None

from .pes import ALLER_NAMESPACE

__all__ = ["validate_pes_aller", "parse_xml", "UnsafeXmlError"]

XMLDSIG = "http://www.w3.org/2000/09/xmldsig#"

# --- Leaf checks: each returns an error (French, without the location) or None ----------------

Check = Callable[[str], "str | None"]


def _texte(max_length: int) -> Check:
    def check(value: str) -> str | None:
        if not value:
            return "valeur vide."
        if len(value) > max_length:
            return f"« {value[:50]}{'…' if len(value) > 50 else ''} » dépasse {max_length} caractères ({len(value)})."
        if value.lower() == "nc" or set(value) == {"0"}:
            return f"« {value} » n'est pas une valeur admise (ni « nc », ni zéros seuls)."
        return None
    return check


def _alnum(max_length: int, min_length: int = 1) -> Check:
    def check(value: str) -> str | None:
        if not re.fullmatch(r"[0-9A-Za-z]*", value) or not min_length <= len(value) <= max_length:
            return f"« {value} » : {min_length} à {max_length} lettres ou chiffres attendus."
        return None
    return check


def _num(max_digits: int, *, minimum: int = 0, label: str = "nombre") -> Check:
    def check(value: str) -> str | None:
        if not re.fullmatch(r"[0-9]+", value) or len(value.lstrip("0") or "0") > max_digits:
            return f"{label} « {value} » invalide : entier de {max_digits} chiffres au plus."
        if int(value) < minimum:
            return f"{label} « {value} » invalide : au moins {minimum}."
        return None
    return check


def _digits(length: int, label: str) -> Check:
    def check(value: str) -> str | None:
        return None if re.fullmatch(rf"[0-9]{{{length}}}", value) else f"{label} « {value} » invalide : {length} chiffres."
    return check


def _regex(pattern: str, message: str) -> Check:
    compiled = re.compile(pattern)

    def check(value: str) -> str | None:
        return None if compiled.fullmatch(value) else message.format(value=value)
    return check


def _code(*allowed: str, label: str = "code") -> Check:
    def check(value: str) -> str | None:
        return None if value in allowed else f"{label} « {value} » inconnu (valeurs admises : {', '.join(allowed)})."
    return check


def _date(value: str) -> str | None:
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            date.fromisoformat(value)
            return None
        except ValueError:
            pass
    return f"date « {value} » invalide (AAAA-MM-JJ)."


def _year(value: str) -> str | None:
    return None if re.fullmatch(r"[12][0-9]{3}", value) else f"exercice « {value} » invalide (année sur 4 chiffres)."


def _boolean(value: str) -> str | None:
    return None if value in ("0", "1", "true", "false", "TRUE", "FALSE") else f"booléen « {value} » invalide (0 ou 1)."


AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")


def _amount(*, positive: bool) -> Check:
    def check(value: str) -> str | None:
        if not AMOUNT.fullmatch(value):
            return (f"montant « {value} » invalide : euros avec un point et deux décimales au plus, "
                    "14 chiffres au plus (ex. 1254.67).")
        if positive and Decimal(value) <= 0:
            return f"montant « {value} » invalide : strictement positif."
        return None
    return check


def _codique(value: str) -> str | None:
    if re.fullmatch(r"02[AB][0-9]{3,4}|[0-9]{6,7}", value):
        return None
    return f"codique « {value} » invalide (6 ou 7 chiffres, ou 02A/02B suivi de 3 ou 4 chiffres)."


def _siret(value: str) -> str | None:
    if not re.fullmatch(r"[0-9]{14}", value):
        return f"SIRET « {value} » invalide : 14 chiffres."
    if _stdnum_siret is not None and not _stdnum_siret.is_valid(value):
        return f"SIRET « {value} » invalide : clé de contrôle incorrecte."
    return None


def _postcode(value: str) -> str | None:
    return None if re.fullmatch(r"[0-9]{5}", value) else f"code postal « {value} » invalide : 5 chiffres (99999 à l'étranger)."


def _nom_pj(value: str) -> str | None:
    if len(value) > 100 or not re.fullmatch(r".+\.[A-Za-z0-9]{2,4}", value):
        return f"nom de PJ « {value} » invalide : 100 caractères au plus, avec une extension de 2 à 4 caractères."
    return None


def _iban(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Z]{2}[0-9]{2}[a-zA-Z0-9]{1,30}", value) else f"IBAN « {value} » invalide."


def _bic(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Z0-9]{8}([A-Z0-9]{3})?", value) else f"BIC « {value} » invalide (majuscules)."


# --- The tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    check: Check


@dataclass(frozen=True)
class Block:
    children: tuple  # ((name, min, max or None, Leaf | Block | Opaque | FichierSpec), ...)

    def __post_init__(self):
        object.__setattr__(self, "index", {name: i for i, (name, *_rest) in enumerate(self.children)})


@dataclass(frozen=True)
class Opaque:
    """A block we accept without checking its inside beyond the leaf convention."""

    label: str


@dataclass(frozen=True)
class FichierSpec:
    """``Contenu/Fichier``: the only element with text (base64) and a MIMEType attribute."""


MANY = None
T = _texte


def _b(*children) -> Block:
    return Block(tuple(children))


def _l(check: Check) -> Leaf:
    return Leaf(check)


PJ_TYPES = ("001", "002", "003", "004", "005", "006", "007", "008", "009", "010", "011", "012", "013")
CAT_TIERS = ("01", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "50", "60", "61", "62", "63",
             "64", "65", "70", "71", "72", "73", "74")
NAT_JUR = ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11")
TYP_TIERS = ("01", "02", "03", "04", "05", "06", "07", "10", "11", "12", "13", "14", "15", "20", "21", "22",
             "23", "24", "25", "26", "30")

PJ_REF = _b(
    ("Support", 1, 1, _l(_code("01", "02", "03", label="support"))),
    ("IdUnique", 1, 1, _l(_alnum(50))),
    ("NomPJ", 0, 1, _l(T(100))),
    ("TypePJ", 0, 1, _l(_code(*PJ_TYPES, label="type de PJ"))),
)

ADRESSE = _b(
    ("TypAdr", 1, 1, _l(_code("0", "1", "2", label="type d'adresse"))),
    ("Adr1", 0, 1, _l(T(38))),
    ("Adr2", 1, 1, _l(T(38))),
    ("Adr3", 0, 1, _l(T(38))),
    ("CP", 1, 1, _l(_postcode)),
    ("Ville", 1, 1, _l(T(38))),
    ("CodRes", 1, 1, _l(_boolean)),
    ("CodPays", 0, 1, _l(_digits(3, "code pays"))),
    ("DteAdr", 0, 1, _l(_date)),
)

CPTE_BANCAIRE = _b(
    ("IdPayInt", 0, 1, _l(_alnum(4))),
    ("IdBancInt", 0, 1, _l(_alnum(11))),
    ("CodeEtab", 0, 1, _l(_alnum(5))),
    ("CodeGuic", 0, 1, _l(_regex(r"[0-9A-Za-z]{0,5}", "code guichet « {value} » invalide."))),
    ("IdCpte", 0, 1, _l(T(11))),
    ("CleRib", 0, 1, _l(_regex(r"[0-9]{0,2}", "clé RIB « {value} » invalide."))),
    ("BIC", 0, 1, _l(_bic)),
    ("IBAN", 0, 1, _l(_iban)),
    ("LibBanc", 0, 1, _l(T(24))),
    ("TitCpte", 1, 1, _l(T(32))),
    ("DteBanc", 0, 1, _l(_date)),
)

INFO_TIERS = _b(
    ("IdTiers", 0, 1, _l(T(80))),
    ("DteNaissance", 0, 1, _l(_date)),
    ("NatIdTiers", 0, 1, _l(_code(*(f"{n:02d}" for n in range(1, 13)), label="type d'identifiant"))),
    ("DteIdTiers", 0, 1, _l(_date)),
    ("RefTiers", 0, 1, _l(T(30))),
    ("CatTiers", 1, 1, _l(_code(*CAT_TIERS, label="catégorie de tiers"))),
    ("NatJur", 1, 1, _l(_code(*NAT_JUR, label="nature juridique"))),
    ("TypTiers", 1, 1, _l(_code(*TYP_TIERS, label="type de tiers"))),
    ("Civilite", 0, 1, _l(T(10))),
    ("Nom", 1, 1, _l(T(38))),
    ("ComplNom", 0, 1, _l(T(38))),
    ("Prenom", 0, 1, _l(T(38))),
    ("LieuNaissance", 0, 1, Opaque("lieu de naissance")),
)

TIERS = _b(
    ("InfoTiers", 1, 1, INFO_TIERS),
    ("Adresse", 1, 1, ADRESSE),
    ("CpteBancaire", 0, 1, CPTE_BANCAIRE),
)

INFO_LIGNE_PIECE = _b(
    ("IdLigne", 1, 1, _l(_num(6, minimum=1, label="numéro de ligne"))),
    ("ObjLignePce", 0, 1, _l(T(160))),
    ("CodProdLoc", 1, 1, _l(_alnum(4))),
    ("FinGeo", 0, 1, _l(_alnum(9, 0))),
    ("CodEtGeo", 0, 1, _l(_alnum(3))),
    ("Nature", 1, 1, _l(_num(12, label="nature"))),
    ("Fonction", 0, 1, _l(_regex(r"[0-9]{0,10}", "fonction « {value} » invalide."))),
    ("Operation", 0, 1, _l(_alnum(10))),
    ("TxTva", 0, 1, _l(_regex(r"[0-9]{1,3}(\.[0-9]{1,2})?", "taux « {value} » invalide."))),
    ("Majo", 1, 1, _l(_boolean)),
    ("DteMajo", 0, 1, _l(_date)),
    ("TxMajo", 0, 1, _l(_regex(r"[0-9]{1,3}(\.[0-9]{1,2})?", "taux « {value} » invalide."))),
    ("CpteTiers", 0, 1, _l(_num(12, label="compte de tiers"))),
    ("TvaIntraCom", 1, 1, _l(_boolean)),
    ("TVAImportation", 0, 1, _l(_boolean)),
    ("MtHT", 1, 1, _l(_amount(positive=True))),
    ("MtTVA", 0, 1, _l(_amount(positive=True))),
    ("MtNonMajo", 0, 1, _l(_amount(positive=False))),
    ("InfoCollBen", 0, 1, Opaque("collectivité bénéficiaire")),
    ("PJRef", 0, MANY, PJ_REF),
)

BLOC_LIGNE_PIECE = _b(
    ("InfoLignePiece", 1, 1, INFO_LIGNE_PIECE),
    ("InfoPrelevement", 0, 1, Opaque("prélèvement")),
    ("InfoPrelevementSEPA", 0, 1, Opaque("prélèvement SEPA")),
    ("InfoAssure", 0, 1, Opaque("assuré")),
    ("RattachPiece", 0, 1, Opaque("rattachement")),
    ("LiensIdent", 0, 1, Opaque("liens")),
)

LIGNE_DE_PIECE = _b(
    ("BlocLignePiece", 1, 1, BLOC_LIGNE_PIECE),
    ("Tiers", 0, MANY, TIERS),
    ("Recouvrement", 0, MANY, Opaque("recouvrement")),
)

BLOC_PIECE = _b(
    ("CodServ", 0, 1, _l(T(10))),
    ("Affect", 0, 1, _l(T(10))),
    ("IdPce", 1, 1, _l(_num(8, minimum=1, label="numéro de pièce"))),
    ("TypPce", 1, 1, _l(_code("01", "02", "03", "04", "05", "06", "07", "09", "10", "11", "12", "14", "15",
                              label="type de pièce"))),
    ("NatPce", 1, 1, _l(_code("01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "18",
                              label="nature de pièce"))),
    ("IdRol", 0, 1, _l(_num(7, minimum=1, label="numéro de rôle"))),
    ("DteAsp", 0, 1, _l(_date)),
    ("Edition", 0, 1, _l(_code("01", "02", "03", "04", "05", "06", label="édition"))),
    ("ObjPce", 0, 1, _l(T(160))),
    ("DebFact", 0, 1, _l(_date)),
    ("FinFact", 0, 1, _l(_date)),
    ("NumDette", 0, 1, _l(_num(15, minimum=1, label="numéro de dette"))),
    ("Per", 0, 1, _l(_regex(r"[0-9]?", "période « {value} » invalide (un chiffre)."))),
    ("Cle1", 0, 1, _l(_regex(r"[0-9]?", "clé « {value} » invalide (un chiffre)."))),
    ("Cle2", 0, 1, _l(_regex(r"[0-9a-zA-Z]?", "clé « {value} » invalide (une lettre)."))),
    ("PJRef", 0, MANY, PJ_REF),
    ("NumeroFacture", 0, 1, _l(_regex(r"[ \-/_+0-9a-zA-Z]{1,20}", "numéro de facture « {value} » invalide."))),
    ("NumeroMarche", 0, 1, _l(T(50))),
    ("NumeroEngagement", 0, 1, _l(T(50))),
    ("CodeService", 0, 1, _l(_regex(r".{0,100}", "code service trop long."))),
    ("NomService", 0, 1, _l(T(100))),
)

PIECE = _b(
    ("BlocPiece", 1, 1, BLOC_PIECE),
    ("LigneDePiece", 1, MANY, LIGNE_DE_PIECE),
)

BLOC_BORDEREAU = _b(
    ("Exer", 1, 1, _l(_year)),
    ("IdBord", 1, 1, _l(_num(7, minimum=1, label="numéro de bordereau"))),
    ("DteBordEm", 1, 1, _l(_date)),
    ("TypBord", 1, 1, _l(_code("01", "02", "03", "06", label="type de bordereau"))),
    ("NbrPce", 1, 1, _l(_num(5, minimum=1, label="nombre de pièces"))),
    ("MtCumulAnnuel", 0, 1, _l(_amount(positive=True))),
    ("MtBordHt", 1, 1, _l(_amount(positive=True))),
    ("MtBordTVA", 0, 1, _l(_amount(positive=True))),
    ("DteAsp", 0, 1, _l(_date)),
    ("Objet", 0, 1, _l(T(160))),
)

SIGNATURE = ("Signature", 0, 1, Opaque("signature"))

BORDEREAU = _b(
    ("BlocBordereau", 1, 1, BLOC_BORDEREAU),
    ("Piece", 1, MANY, PIECE),
    SIGNATURE,
)

PES_RECETTE_ALLER = _b(
    ("EnTeteRecette", 1, 1, _b(
        ("IdVer", 1, 1, _l(_code("2", label="version du PES recette"))),
        ("InfoDematerialisee", 0, 1, _l(_boolean)),
    )),
    ("Bordereau", 1, MANY, BORDEREAU),
)

PJ = _b(
    ("Contenu", 1, 1, _b(("Fichier", 1, 1, FichierSpec()))),
    ("IdUnique", 1, 1, _l(_alnum(50))),
    ("ServeurId", 0, 1, _l(_alnum(20))),
    ("NomPJ", 1, 1, _l(_nom_pj)),
    ("TypePJ", 0, 1, _l(_code(*PJ_TYPES, label="type de PJ"))),
    ("Description", 1, 1, _l(T(250))),
    ("RefCompta", 0, MANY, _b(
        ("Domaine", 1, 1, _l(_code("01", "02", "04", "06", label="domaine"))),
        ("Exercice", 1, 1, _l(_year)),
        ("TypeObjet", 1, 1, _l(_code(*(f"{n:02d}" for n in range(1, 11)), label="type d'objet"))),
        ("Identifiant", 0, 1, _l(T(20))),
        ("ComplementIdentifiant", 0, 1, _l(_alnum(20))),
        ("IdTiers", 0, 1, _l(T(15))),
    )),
)

PES_ALLER = _b(
    ("Enveloppe", 1, 1, _b(
        ("Parametres", 1, 1, _b(
            ("Version", 1, 1, _l(_code("2", label="version de l'enveloppe"))),
            ("TypFic", 1, 1, _l(_code("PESALR1", "PESORMC", label="type de fichier"))),
            ("NomFic", 1, 1, _l(T(100))),
        )),
        ("Emetteur", 1, 1, _b(("Sigle", 1, 1, _l(T(32))), ("Adresse", 1, 1, _l(T(38))))),
        ("Recepteur", 0, 1, _b(("Sigle", 0, 1, _l(T(32))), ("Adresse", 0, 1, _l(T(38))))),
    )),
    ("EnTetePES", 1, 1, _b(
        ("DteStr", 1, 1, _l(_date)),
        ("IdPost", 1, 1, _l(_codique)),
        ("LibellePoste", 0, 1, _l(T(38))),
        ("IdColl", 1, 1, _l(_siret)),
        ("FinJur", 0, 1, _l(_alnum(20, 0))),
        ("CodCol", 1, 1, _l(_regex(r"[0-9]{3}", "code collectivité « {value} » invalide : 3 chiffres."))),
        ("CodBud", 1, 1, _l(_regex(r"[0-9A-Z][0-9]", "code budget « {value} » invalide : un chiffre ou une "
                                                     "lettre majuscule suivi d'un chiffre ([0-9A-Z][0-9])."))),
        ("LibelleColBud", 0, 1, _l(T(38))),
    )),
    ("PES_RecetteAller", 1, 1, PES_RECETTE_ALLER),
    ("PES_PJ", 0, 1, _b(
        ("EnTetePES_PJ", 1, 1, _b(("IdVer", 1, 1, _l(_code("1", label="version du bloc PJ"))))),
        ("PJ", 0, MANY, PJ),
    )),
    SIGNATURE,
)

# Annex 2 (Recette): allowed (TypBord, TypPce, NatPce) triplets.
TRIPLETS = frozenset(
    [("01", "01", n) for n in ("01", "02", "03", "04", "05", "18", "11")]
    + [("01", "02", n) for n in ("07", "08", "09")]
    + [("02", "02", n) for n in ("06", "10")]
    + [("01", "03", n) for n in ("01", "02", "03", "04", "18")]
    + [("01", "04", n) for n in ("01", "02", "03", "04")] + [("02", "04", "06")]
    + [("01", "05", n) for n in ("01", "02", "03", "04", "05")]
    + [("01", "06", "01"), ("02", "06", "06"), ("01", "07", "01"), ("01", "09", "01")]
    + [("01", "10", n) for n in ("01", "02")]
    + [("01", "11", n) for n in ("01", "02", "04")]
    + [("03", "12", n) for n in ("01", "02", "11")]
    + [("01", "14", "01"), ("02", "14", "06")]
    + [("06", "15", "01")]
)

# Annex 3: allowed NatJur per CatTiers (rows as printed in the DosTech annex; the code list
# labels rows 50..74 differently, which does not concern families: CatTiers 01).
CAT_NAT = {
    "01": {"01", "02"}, "20": {"07", "08"}, "21": {"09"}, "22": {"09"}, "23": {"09"}, "24": {"09"}, "25": {"09"},
    "26": {"09"}, "27": {"09"}, "28": {"08"}, "29": {"10"}, "74": {"04"}, "50": {"03", "06"}, "60": {"04"},
    "61": {"04"}, "62": {"04"}, "63": {"04", "11"}, "64": {"04"}, "65": {"04", "05"}, "70": {"05"}, "71": {"05"},
    "72": {"04"}, "73": {"05"},
}

# Abbreviated civilities we know Hélios takes (Noethys' practice); the DGFiP's closed list
# was not in the pages we could read. "Mademoiselle" is explicitly rejected.
CIVILITES = {"M", "MME"}
REFUSED_CIVILITES = {"MLLE", "MELLE", "MADEMOISELLE"}


# --- Parsing ----------------------------------------------------------------------------------


class UnsafeXmlError(ValueError):
    pass


def parse_xml(data: bytes) -> ET.Element:
    """Parse bytes with the stdlib, refusing DTDs and entities (PES files never carry any)."""
    if not isinstance(data, bytes):
        raise TypeError("le contenu du fichier est attendu en octets (bytes)")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data or b"<!doctype" in data[:4096]:
        raise UnsafeXmlError("Fichier refusé : les déclarations DOCTYPE/ENTITY ne sont pas admises dans un PES.")
    # Building ~0.4 million elements trips the cyclic garbage collector over and over (5 times
    # slower for 5,000 invoices); the tree has no cycles, so it is paused while parsing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ET.fromstring(data)
    finally:
        if was_enabled:
            gc.enable()


def _local(tag) -> str:
    if tag.__class__ is not str:
        return ""  # comments, processing instructions
    return tag[tag.index("}") + 1:] if tag[:1] == "{" else tag


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


# --- Structural walk --------------------------------------------------------------------------


class _Walker:
    def __init__(self):
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path} : {message}")

    def block(self, element: ET.Element, spec: Block, path: str) -> None:
        if element.text and element.text.strip():
            self.error(path, "texte inattendu dans un bloc.")
        index = spec.index
        counts: dict[str, int] = {}
        position = -1
        for child in element:
            name = _local(child.tag)
            if not name:
                continue
            if child.tag[0] == "{" and name != "Signature":
                self.error(f"{path}/{name}", "élément qualifié par un espace de noms (seule la racine l'est dans un PES).")
                continue
            if name not in index:
                self.error(f"{path}/{name}", "élément inattendu ici.")
                continue
            i = index[name]
            _, _minimum, maximum, child_spec = spec.children[i]
            counts[name] = counts.get(name, 0) + 1
            child_path = f"{path}/{name}" + (f"[{counts[name]}]" if maximum != 1 else "")
            if i < position:
                self.error(child_path, "élément mal placé (l'ordre du schéma n'est pas respecté).")
            position = max(position, i)
            if maximum is not None and counts[name] > maximum:
                self.error(child_path, f"trop d'occurrences ({maximum} au plus).")
                continue
            self.node(child, child_spec, child_path)
        for name, minimum, _maximum, _spec in spec.children:
            if counts.get(name, 0) < minimum:
                self.error(f"{path}/{name}", "élément obligatoire absent.")

    def node(self, element: ET.Element, spec, path: str) -> None:
        if isinstance(spec, Leaf):
            self.leaf(element, spec, path)
        elif isinstance(spec, Block):
            if not len(element) and "V" in element.attrib:
                self.error(path, "bloc attendu, donnée trouvée.")
                return
            self.block(element, spec, path)
        elif isinstance(spec, FichierSpec):
            self.fichier(element, path)
        elif isinstance(spec, Opaque):
            if _local(element.tag) == "Signature" or _namespace(element.tag) == XMLDSIG:
                return  # XMLDSig/XAdES: not V-encoded
            self.opaque(element, path)

    def leaf(self, element: ET.Element, spec: Leaf, path: str) -> None:
        if len(element):
            self.error(path, "une donnée ne contient pas d'élément.")
        if element.text and element.text.strip():
            self.error(path, "texte interdit : la valeur va dans l'attribut V.")
        extra = sorted(set(element.attrib) - {"V"})
        if extra:
            self.error(path, f"seul l'attribut V est permis (trouvé : {', '.join(extra)}).")
        if "V" not in element.attrib:
            self.error(path, "attribut V absent.")
            return
        problem = spec.check(element.attrib["V"])
        if problem:
            self.error(path, problem)

    def opaque(self, element: ET.Element, path: str) -> None:
        counts: dict[str, int] = {}
        for child in element:
            if not isinstance(child.tag, str):
                continue
            name = _local(child.tag)
            counts[name] = counts.get(name, 0) + 1
            child_path = f"{path}/{name}"
            if len(child):
                self.opaque(child, child_path)
            else:
                extra = sorted(set(child.attrib) - {"V"})
                if "V" not in child.attrib or extra or (child.text and child.text.strip()):
                    self.error(child_path, "chaque donnée est un élément vide portant seulement l'attribut V.")

    def fichier(self, element: ET.Element, path: str) -> None:
        if set(element.attrib) != {"MIMEType"} or not element.attrib.get("MIMEType", "").strip():
            self.error(path, "l'attribut MIMEType (et lui seul) est obligatoire.")
        text = "".join((element.text or "").split())
        if not text:
            self.error(path, "fichier vide.")
            return
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.error(path, "contenu qui n'est pas du base64.")
            return
        if raw[:2] != b"\x1f\x8b":
            self.error(path, "contenu non compressé avec gzip (gzip puis base64 attendus).")
            return
        try:
            if not gzip.decompress(raw):
                self.error(path, "fichier vide une fois décompressé.")
        except (OSError, EOFError, zlib.error):
            self.error(path, "contenu gzip illisible.")


# --- Rules across fields ----------------------------------------------------------------------


# PES children are unqualified (a qualified one is reported by the walk), so plain
# find/findall, which run in C, see exactly the elements that count.


def _v(element: ET.Element | None, name: str) -> str | None:
    if element is None:
        return None
    child = element.find(name)
    return None if child is None else child.get("V")


def _children(element: ET.Element | None, name: str) -> list[ET.Element]:
    return [] if element is None else element.findall(name)


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    return None if element is None else element.find(name)


def _decimal(value: str | None) -> Decimal | None:
    if value is None or not AMOUNT.fullmatch(value):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover
        return None


def _euros(amount: Decimal) -> str:
    return f"{amount:.2f}"


def _is_signature(element: ET.Element) -> bool:
    return _local(element.tag) == "Signature" or _namespace(element.tag) == XMLDSIG


def _tiers_key(tiers: ET.Element) -> tuple:
    info = _child(tiers, "InfoTiers")
    address = _child(tiers, "Adresse")
    return tuple(_v(info, n) for n in ("CatTiers", "NatJur", "Civilite", "Nom", "Prenom", "RefTiers")) + tuple(
        _v(address, n) for n in ("Adr2", "CP", "Ville"))


def _check_tiers(walker: _Walker, tiers: ET.Element, path: str) -> None:
    info = _child(tiers, "InfoTiers")
    address = _child(tiers, "Adresse")
    cat, nat = _v(info, "CatTiers"), _v(info, "NatJur")
    info_path = f"{path}/InfoTiers"
    if cat in CAT_NAT and nat is not None and nat not in CAT_NAT[cat]:
        walker.error(f"{info_path}/NatJur", f"nature juridique {nat} incompatible avec la catégorie de tiers {cat} "
                                            f"(admises : {', '.join(sorted(CAT_NAT[cat]))}).")
    civility = _v(info, "Civilite")
    if cat == "01":
        if civility is None:
            walker.error(f"{info_path}/Civilite", "civilité obligatoire pour une personne physique (CatTiers 01).")
        if _v(info, "Prenom") is None:
            walker.error(f"{info_path}/Prenom", "prénom obligatoire pour une personne physique (CatTiers 01).")
    else:
        for name in ("DteNaissance", "LieuNaissance"):
            if _child(info, name) is not None:
                walker.error(f"{info_path}/{name}", "réservé aux personnes physiques (CatTiers 01).")
    if civility is not None:
        if civility.upper().rstrip(".") in REFUSED_CIVILITES:
            walker.error(f"{info_path}/Civilite", "la civilité « Mademoiselle » n'est plus admise.")
        elif civility not in CIVILITES:
            walker.error(f"{info_path}/Civilite", f"civilité « {civility} » non reconnue (M ou MME).")
    if _v(info, "IdTiers") is not None and _v(info, "NatIdTiers") is None:
        walker.error(f"{info_path}/NatIdTiers", "obligatoire quand IdTiers est servi.")
    if _v(info, "NatIdTiers") is not None and _v(info, "IdTiers") is None:
        walker.error(f"{info_path}/IdTiers", "obligatoire quand NatIdTiers est servi.")
    if address is not None:
        residence, country, postcode = _v(address, "CodRes"), _v(address, "CodPays"), _v(address, "CP")
        if residence in ("1", "true", "TRUE") and country is None:
            walker.error(f"{path}/Adresse/CodPays", "obligatoire pour un tiers non résident (CodRes 1).")
        if residence in ("0", "false", "FALSE") and country not in (None, "100"):
            walker.error(f"{path}/Adresse/CodPays", "doit être absent (ou 100) pour un tiers résident (CodRes 0).")
        if residence in ("0", "false", "FALSE") and postcode == "99999":
            walker.error(f"{path}/Adresse/CP", "99999 est réservé aux tiers résidant à l'étranger (CodRes 1).")


def _check_line(walker: _Walker, info: ET.Element, path: str) -> None:
    majo = _v(info, "Majo")
    for name in ("DteMajo", "TxMajo"):
        present = _child(info, name) is not None
        if majo in ("0", "false", "FALSE") and present:
            walker.error(f"{path}/{name}", "interdit quand la ligne n'est pas majorable (Majo 0).")
        if majo in ("1", "true", "TRUE") and not present:
            walker.error(f"{path}/{name}", "obligatoire quand la ligne est majorable (Majo 1).")


def _check_bordereau(walker: _Walker, bordereau: ET.Element, path: str, dematerialised: bool,
                     pj_refs: list[tuple[str, str, str | None, str | None]]) -> tuple[str, str, str] | None:
    bloc = _child(bordereau, "BlocBordereau")
    if bloc is None:
        return None
    bloc_path = f"{path}/BlocBordereau"
    typ_bord, exer = _v(bloc, "TypBord"), _v(bloc, "Exer")
    pieces = _children(bordereau, "Piece")
    count = _v(bloc, "NbrPce")
    if count is not None and count.isdigit() and int(count) != len(pieces):
        walker.error(f"{bloc_path}/NbrPce", f"annonce {int(count)} pièce(s) mais le bordereau en contient {len(pieces)}.")
    signature = any(_is_signature(child) for child in bordereau)
    if dematerialised and not signature:
        walker.error(path, "bordereau dématérialisé (InfoDematerialisee 1) sans signature : rejet du flux.")
    if dematerialised and "Id" not in bordereau.attrib:
        walker.error(path, "l'attribut Id est obligatoire sur un bordereau dématérialisé.")
    if not dematerialised and signature:
        walker.error(path, "signature présente alors que InfoDematerialisee vaut 0 : rejet du flux.")
    if dematerialised and typ_bord != "06" and _child(bloc, "MtCumulAnnuel") is None:
        walker.error(f"{bloc_path}/MtCumulAnnuel", "obligatoire pour un bordereau dématérialisé hors ORMC.")
    emitted, asap = _v(bloc, "DteBordEm"), _v(bloc, "DteAsp")
    if emitted and asap and not _date(emitted) and not _date(asap) and asap < emitted:
        walker.error(f"{bloc_path}/DteAsp", "doit être postérieure ou égale à DteBordEm.")

    total_ht = Decimal(0)
    total_tva = Decimal(0)
    amounts_ok = True
    seen_pieces: dict[str, int] = {}
    for p_index, piece in enumerate(pieces, start=1):
        piece_path = f"{path}/Piece[{p_index}]"
        bloc_piece = _child(piece, "BlocPiece")
        bp_path = f"{piece_path}/BlocPiece"
        id_pce, typ_pce, nat_pce = _v(bloc_piece, "IdPce"), _v(bloc_piece, "TypPce"), _v(bloc_piece, "NatPce")
        if id_pce is not None:
            if id_pce in seen_pieces:
                walker.error(f"{bp_path}/IdPce", f"numéro de pièce {id_pce} déjà utilisé par la pièce {seen_pieces[id_pce]} "
                                                 "du bordereau.")
            seen_pieces.setdefault(id_pce, p_index)
        if typ_bord and typ_pce and nat_pce and (typ_bord, typ_pce, nat_pce) not in TRIPLETS:
            walker.error(bp_path, f"combinaison TypBord {typ_bord} / TypPce {typ_pce} / NatPce {nat_pce} non autorisée "
                                  "(pour un rôle ORMC : 06 / 15 / 01).")
        edition = _v(bloc_piece, "Edition")
        if edition is not None:
            if typ_pce == "15" and edition in ("01", "02", "04", "05"):
                walker.error(f"{bp_path}/Edition", f"l'édition {edition} est interdite sur un titre ORMC (03 ou 06).")
            if typ_pce != "15" and edition in ("03", "06"):
                walker.error(f"{bp_path}/Edition", f"l'édition {edition} est réservée aux titres ORMC (TypPce 15).")
        refs = _children(bloc_piece, "PJRef")
        piece_refs = list(refs)
        for ligne in _children(piece, "LigneDePiece"):
            piece_refs += _children(_child(_child(ligne, "BlocLignePiece"), "InfoLignePiece"), "PJRef")
        if edition == "06" and not any(_v(r, "TypePJ") == "010" for r in piece_refs):
            walker.error(f"{bp_path}/PJRef", "l'édition 06 demande la facture à éditer en PJ de type 010.")
        if edition == "01" and not piece_refs:
            walker.error(f"{bp_path}/PJRef", "l'édition 01 demande une pièce jointe.")
        for r_index, ref in enumerate(refs, start=1):
            pj_refs.append((f"{bp_path}/PJRef[{r_index}]", _v(ref, "IdUnique") or "", _v(ref, "Support"),
                            _v(ref, "TypePJ")))

        lines = _children(piece, "LigneDePiece")
        seen_lines: set[str] = set()
        debtors: list[tuple] = []
        for l_index, ligne in enumerate(lines, start=1):
            line_path = f"{piece_path}/LigneDePiece[{l_index}]"
            info = _child(_child(ligne, "BlocLignePiece"), "InfoLignePiece")
            info_path = f"{line_path}/BlocLignePiece/InfoLignePiece"
            if info is None:
                amounts_ok = False
                continue
            id_ligne = _v(info, "IdLigne")
            if id_ligne is not None:
                if id_ligne in seen_lines:
                    walker.error(f"{info_path}/IdLigne", f"numéro de ligne {id_ligne} en double dans la pièce.")
                seen_lines.add(id_ligne)
            _check_line(walker, info, info_path)
            ht = _decimal(_v(info, "MtHT"))
            if ht is None:
                amounts_ok = False
            else:
                total_ht += ht
            tva = _decimal(_v(info, "MtTVA"))
            if tva is not None:
                total_tva += tva
            for r_index, ref in enumerate(_children(info, "PJRef"), start=1):
                pj_refs.append((f"{info_path}/PJRef[{r_index}]", _v(ref, "IdUnique") or "", _v(ref, "Support"),
                                _v(ref, "TypePJ")))
            for t_index, tiers in enumerate(_children(ligne, "Tiers"), start=1):
                _check_tiers(walker, tiers, f"{line_path}/Tiers[{t_index}]")
                debtors.append(_tiers_key(tiers))
        if typ_pce == "15":
            if not debtors:
                walker.error(piece_path, "titre ORMC sans débiteur (bloc Tiers absent).")
            elif len(set(debtors)) > 1:
                walker.error(piece_path, "un titre ORMC n'a qu'un débiteur : les lignes portent des tiers différents.")

    announced = _decimal(_v(bloc, "MtBordHt"))
    if amounts_ok and announced is not None and announced != total_ht:
        walker.error(f"{bloc_path}/MtBordHt", f"{_euros(announced)} ne correspond pas à la somme des lignes "
                                               f"({_euros(total_ht)}).")
    announced_tva = _decimal(_v(bloc, "MtBordTVA"))
    if announced_tva is not None and announced_tva != total_tva:
        walker.error(f"{bloc_path}/MtBordTVA", f"{_euros(announced_tva)} ne correspond pas à la somme des TVA des "
                                                f"lignes ({_euros(total_tva)}).")
    if announced_tva is None and total_tva:
        walker.error(f"{bloc_path}/MtBordTVA", "obligatoire quand une ligne porte un montant de TVA.")
    return (exer or "", typ_bord or "", _v(bloc, "IdBord") or "")


def validate_pes_aller(xml: bytes) -> list[str]:
    """Check a PES_Aller (Recette) file; returns French messages, empty when valid."""
    try:
        root = parse_xml(xml)
    except UnsafeXmlError as exc:
        return [f"/ : {exc}"]
    except ET.ParseError as exc:
        return [f"/ : XML mal formé ({exc})."]
    walker = _Walker()
    name = _local(root.tag)
    path = f"/{name}"
    if name != "PES_Aller":
        return [f"{path} : l'élément racine doit être PES_Aller."]
    if _namespace(root.tag) != ALLER_NAMESPACE:
        walker.error(path, f"l'élément racine doit appartenir à l'espace de noms {ALLER_NAMESPACE}.")
    if not xml.lstrip().startswith(b"<?xml"):
        walker.error("/", "déclaration XML (avec son encodage) absente.")
    walker.block(root, PES_ALLER, path)

    recette = _child(root, "PES_RecetteAller")
    demat = _v(_child(recette, "EnTeteRecette"), "InfoDematerialisee") in ("1", "true", "TRUE")
    pj_refs: list[tuple[str, str, str | None, str | None]] = []
    bordereaux: dict[tuple[str, str, str], int] = {}
    for b_index, bordereau in enumerate(_children(recette, "Bordereau"), start=1):
        b_path = f"{path}/PES_RecetteAller/Bordereau[{b_index}]"
        key = _check_bordereau(walker, bordereau, b_path, demat, pj_refs)
        if key and all(key):
            if key in bordereaux:
                walker.error(f"{b_path}/BlocBordereau/IdBord", f"bordereau {key[2]} de l'exercice {key[0]} déjà présent "
                                                              f"dans le fichier (Bordereau[{bordereaux[key]}]).")
            bordereaux.setdefault(key, b_index)

    # PJ: unique identifiers, every reference resolved, every PJ referenced.
    pjs: dict[str, tuple[str, str | None]] = {}
    for j_index, pj in enumerate(_children(_child(root, "PES_PJ"), "PJ"), start=1):
        j_path = f"{path}/PES_PJ/PJ[{j_index}]"
        unique = _v(pj, "IdUnique")
        if unique is None:
            continue
        if unique in pjs:
            walker.error(f"{j_path}/IdUnique", f"identifiant « {unique} » déjà utilisé par {pjs[unique][0]}.")
            continue
        pjs[unique] = (j_path, _v(pj, "TypePJ"))
    referenced: set[str] = set()
    for ref_path, unique, support, type_pj in pj_refs:
        referenced.add(unique)
        if support == "01" and unique not in pjs:
            walker.error(f"{ref_path}/IdUnique", f"la pièce jointe « {unique} » n'est pas dans PES_PJ.")
        if support in ("02", "03") and unique in pjs:
            walker.error(f"{ref_path}/Support", "une PJ papier ou CD ne peut pas être transmise dans PES_PJ.")
        if unique in pjs and type_pj and pjs[unique][1] and type_pj != pjs[unique][1]:
            walker.error(f"{ref_path}/TypePJ", f"type {type_pj} différent de celui de la PJ ({pjs[unique][1]}).")
    for pj in _children(_child(root, "PES_PJ"), "PJ"):
        unique = _v(pj, "IdUnique")
        if unique in pjs and unique not in referenced and not _children(pj, "RefCompta"):
            walker.error(pjs[unique][0], "pièce jointe rattachée à aucune pièce (ni PJRef ni RefCompta).")
    return walker.errors
