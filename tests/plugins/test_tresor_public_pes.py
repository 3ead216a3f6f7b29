"""Trésor public: PES V2 Recette ORMC file built from invoices, checked by our validator."""

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from marelle_tresor_public import bench
from marelle_tresor_public.pes import (
    Bordereau,
    Debtor,
    InvoiceData,
    InvoiceLineData,
    NumberingError,
    PesDataError,
    PesHeader,
    Piece,
    PieceLine,
    UsedBordereau,
    attachment_id,
    build_pes_aller,
    decode_attachment,
    format_amount,
    next_numbers,
    normalise_text,
    piece_from_invoice,
)
from marelle_tresor_public.validator import validate_pes_aller

SIRET = "21340017910006"  # a valid check digit, made up
SETTINGS = {"id_post": "034000", "id_coll": SIRET, "cod_col": "123", "cod_bud": "00", "label": "Budget principal"}
PRODUCTS = {"Restauration scolaire": "CANT", "Périscolaire": "PERI", "Accueil de loisirs": "ALSH"}
R, P, A = "Restauration scolaire", "Périscolaire", "Accueil de loisirs"


def invoices() -> list[InvoiceData]:
    """Three families; the Martins have two children."""
    martin = InvoiceData(
        number="CG-2026-000042", label="Septembre 2026", total_cents=10520, family_reference="F000012",
        debtor={"civility": "mme", "first_name": "Léa", "last_name": "Martin-Lefèvre", "address": "12 rue des Écoles",
                "complement": "Bât. B, appartement 3", "postcode": "34000", "city": "Montpellier",
                "email": "lea@example.org"},
        lines=[
            InvoiceLineData("Restauration scolaire – Repas", 4560, "Léo Martin", R, 12, 380),
            InvoiceLineData("Périscolaire – Matin", 1200, "Léo Martin", P, 8, 150),
            InvoiceLineData("Restauration scolaire – Repas", 4560, "Zoé Martin", R, 12, 380),
            InvoiceLineData("Supplément réservation tardive – Repas", 200, "Zoé Martin", R, 1, 200),
        ])
    dupont = InvoiceData(
        number="CG-2026-000043", label="Septembre 2026", total_cents=3800, family_reference="F000013",
        debtor={"civility": "m", "first_name": "Karim", "last_name": "Dupont", "address": "3 impasse du Moulin",
                "complement": "", "postcode": "34170", "city": "Castelnau-le-Lez", "email": ""},
        lines=[InvoiceLineData("Restauration scolaire – Repas", 3800, "Inès Dupont", R, 10, 380)])
    ngo = InvoiceData(
        number="CG-2026-000044", label="Septembre 2026", total_cents=4440, family_reference="F000014",
        debtor={"civility": "mme", "first_name": "Chloé", "last_name": "Ngô-Œuvray", "address": "Lieu-dit « Les Près »",
                "complement": "", "postcode": "34980", "city": "Saint-Gély-du-Fesc", "email": ""},
        lines=[InvoiceLineData("Accueil de loisirs – Mercredi", 4940, "Hugo Ngô", A, 4, 1235),
               InvoiceLineData("Accueil de loisirs – Réduction fratrie", -500, "Hugo Ngô", A, 1, -500)])
    return [martin, dupont, ngo]


def pdf(number: str) -> bytes:
    return b"%PDF-1.4\n% facture " + number.encode() + b"\n" + bytes(range(256)) * 20 + b"\n%%EOF\n"


def header(**changes) -> PesHeader:
    return replace(PesHeader.from_settings(SETTINGS, created_on=date(2026, 10, 5)), **changes)


def family_file(**bordereau_changes) -> tuple[bytes, list[InvoiceData], dict[str, bytes]]:
    data = invoices()
    numbers = next_numbers([], exercice=2026, piece_count=len(data))
    pieces = [piece_from_invoice(invoice, number=n, product_code=PRODUCTS)
              for invoice, n in zip(data, numbers.pieces, strict=True)]
    bordereau = Bordereau(**{"exercice": 2026, "number": numbers.bordereau, "issued_on": date(2026, 10, 5),
                             "label": "Restauration, périscolaire et loisirs – septembre 2026", **bordereau_changes})
    pdfs = {invoice.number: pdf(invoice.number) for invoice in data}
    return build_pes_aller(header=header(), bordereau=bordereau, pieces=pieces, attachments=pdfs), data, pdfs


def V(root: ET.Element, path: str) -> str:
    return root.find(path).get("V")


# --- The file for three families ------------------------------------------------------------------


def test_three_families_make_a_valid_file_whose_totals_are_the_invoices():
    xml, data, _ = family_file()
    assert validate_pes_aller(xml) == []
    assert xml.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')
    root = ET.fromstring(xml)
    assert root.tag == "{http://www.minefi.gouv.fr/cp/helios/pes_v2/Rev0/aller}PES_Aller"
    assert V(root, "Enveloppe/Parametres/TypFic") == "PESORMC"
    assert [V(root, f"EnTetePES/{k}") for k in ("IdPost", "IdColl", "CodCol", "CodBud")] == ["034000", SIRET, "123", "00"]

    bloc = root.find("PES_RecetteAller/Bordereau/BlocBordereau")
    assert (V(bloc, "TypBord"), V(bloc, "IdBord"), V(bloc, "Exer"), V(bloc, "NbrPce")) == ("06", "1", "2026", "3")
    assert V(bloc, "MtBordHt") == "187.60" == format_amount(sum(i.total_cents for i in data))

    pieces = root.findall("PES_RecetteAller/Bordereau/Piece")
    assert [V(p, "BlocPiece/IdPce") for p in pieces] == ["1", "2", "3"]
    for piece, invoice in zip(pieces, data, strict=True):
        assert (V(piece, "BlocPiece/TypPce"), V(piece, "BlocPiece/NatPce"), V(piece, "BlocPiece/Edition")) == ("15", "01", "06")
        amounts = [Decimal(V(line, "BlocLignePiece/InfoLignePiece/MtHT")) for line in piece.findall("LigneDePiece")]
        assert sum(amounts) * 100 == invoice.total_cents
        assert invoice.number in V(piece, "BlocPiece/ObjPce")

    # The Martins: one line group per child and service; a surcharge joins its service.
    martin = pieces[0].findall("LigneDePiece")
    assert [(V(line, "BlocLignePiece/InfoLignePiece/IdLigne"), V(line, "BlocLignePiece/InfoLignePiece/ObjLignePce"),
             V(line, "BlocLignePiece/InfoLignePiece/CodProdLoc"), V(line, "BlocLignePiece/InfoLignePiece/MtHT"))
            for line in martin] == [
        ("1", "RESTAURATION SCOLAIRE - LEO MARTIN", "CANT", "45.60"),
        ("2", "PERISCOLAIRE - LEO MARTIN", "PERI", "12.00"),
        ("3", "RESTAURATION SCOLAIRE - ZOE MARTIN", "CANT", "47.60"),
    ]
    # A reduction is netted inside its group: the line stays positive.
    assert V(pieces[2], "LigneDePiece/BlocLignePiece/InfoLignePiece/MtHT") == "44.40"

    # The debtor, a natural person, on every line of the article.
    tiers = [line.find("Tiers") for line in martin]
    assert all(ET.tostring(t) == ET.tostring(tiers[0]) for t in tiers)
    info, address = tiers[0].find("InfoTiers"), tiers[0].find("Adresse")
    assert [V(info, k) for k in ("RefTiers", "CatTiers", "NatJur", "TypTiers", "Civilite", "Nom", "Prenom")] == [
        "F000012", "01", "01", "01", "MME", "MARTIN-LEFEVRE", "LEA"]
    assert [V(address, k) for k in ("TypAdr", "Adr1", "Adr2", "CP", "Ville", "CodRes")] == [
        "1", "BAT. B, APPARTEMENT 3", "12 RUE DES ECOLES", "34000", "MONTPELLIER", "0"]
    assert V(pieces[1], "LigneDePiece/Tiers/InfoTiers/Civilite") == "M"
    assert V(pieces[2], "LigneDePiece/Tiers/InfoTiers/Nom") == "NGO-OEUVRAY"
    assert V(pieces[2], "LigneDePiece/Tiers/Adresse/Adr2") == 'LIEU-DIT "LES PRES"'


def test_every_value_is_an_empty_element_with_a_V_attribute():
    xml, _, _ = family_file()
    root = ET.fromstring(xml)
    leaves = [e for e in root.iter() if len(e) == 0]
    assert len(leaves) > 100
    for leaf in leaves:
        if leaf.tag == "Fichier":
            assert set(leaf.attrib) == {"MIMEType"} and leaf.text
        else:
            assert set(leaf.attrib) == {"V"} and not leaf.text, leaf.tag
    # Only the root is qualified.
    assert all(not e.tag.startswith("{") for e in root.iter() if e is not root)


def test_invoice_pdfs_travel_gzipped_in_base64_and_come_back_identical():
    xml, data, pdfs = family_file()
    root = ET.fromstring(xml)
    pjs = root.findall("PES_PJ/PJ")
    assert V(root, "PES_PJ/EnTetePES_PJ/IdVer") == "1"
    assert len(pjs) == 3
    by_id = {V(pj, "IdUnique"): pj for pj in pjs}
    for piece, invoice in zip(root.findall("PES_RecetteAller/Bordereau/Piece"), data, strict=True):
        ref = piece.find("BlocPiece/PJRef")
        assert (V(ref, "Support"), V(ref, "TypePJ")) == ("01", "010")
        pj = by_id[V(ref, "IdUnique")]
        assert re.fullmatch(r"[0-9A-Za-z]{1,50}", V(pj, "IdUnique"))
        assert V(pj, "NomPJ") == V(ref, "NomPJ") == f"FACTURE-{invoice.number}.pdf"
        assert V(pj, "Description") == f"FACTURE {invoice.number}"
        fichier = pj.find("Contenu/Fichier")
        assert fichier.get("MIMEType") == "application/pdf"
        assert decode_attachment(fichier.text) == pdfs[invoice.number]


def test_the_same_input_gives_the_same_bytes():
    assert family_file()[0] == family_file()[0]


def test_a_resident_abroad_gets_99999_and_the_insee_country_code():
    xml = build_pes_aller(header=header(), bordereau=Bordereau(2026, 4, date(2026, 10, 5), "Rôle", edition=None),
                          pieces=[Piece(1, "CG-1", "Facture CG-1", Debtor("m", "Peeters", "Jan", "Rue Haute 5", "1000",
                                                                             "Bruxelles", country_code="131"),
                                        [PieceLine("Cantine", 1000, "CANT")], 1000)])
    assert validate_pes_aller(xml) == []
    address = ET.fromstring(xml).find("PES_RecetteAller/Bordereau/Piece/LigneDePiece/Tiers/Adresse")
    assert [V(address, k) for k in ("CP", "Ville", "CodRes", "CodPays")] == ["99999", "1000 BRUXELLES", "1", "131"]


# --- The validator catches what Hélios would reject ----------------------------------------------

PIECE2 = "/PES_Aller/PES_RecetteAller/Bordereau[1]/Piece[2]"


def mutate(xml: bytes, old: bytes, new: bytes, count: int = 1) -> bytes:
    assert old in xml, old
    return xml.replace(old, new, count)


@pytest.mark.parametrize(("old", "new", "message"), [
    (b'<IdPost V="034000"/>', b'<IdPost V="34000"/>',
     "/PES_Aller/EnTetePES/IdPost : codique « 34000 » invalide (6 ou 7 chiffres, ou 02A/02B suivi de 3 ou 4 chiffres)."),
    (b'<MtBordHt V="187.60"/>', b'<MtBordHt V="187.70"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/BlocBordereau/MtBordHt : 187.70 ne correspond pas à la somme des lignes (187.60)."),
    (b'<Nom V="DUPONT"/>', b"",
     f"{PIECE2}/LigneDePiece[1]/Tiers[1]/InfoTiers/Nom : élément obligatoire absent."),
    (b'<Nom V="DUPONT"/>', b'<Nom V="DUPONT DE LA TOUR DU PIN CHAMBLY DE LA CHARCE"/>',
     f"{PIECE2}/LigneDePiece[1]/Tiers[1]/InfoTiers/Nom : « DUPONT DE LA TOUR DU PIN CHAMBLY DE LA CHARCE » dépasse "
     "38 caractères (45)."),
    (b'<IdColl V="21340017910006"/>', b'<IdColl V="2134001791000"/>',
     "/PES_Aller/EnTetePES/IdColl : SIRET « 2134001791000 » invalide : 14 chiffres."),
    (b'<IdColl V="21340017910006"/>', b'<IdColl V="21340017910007"/>',
     "/PES_Aller/EnTetePES/IdColl : SIRET « 21340017910007 » invalide : clé de contrôle incorrecte."),
    (b'<CodCol V="123"/>', b'<CodCol V="12"/>', "/PES_Aller/EnTetePES/CodCol : code collectivité « 12 » invalide : 3 chiffres."),
    (b'<CodBud V="00"/>', b'<CodBud V="0A"/>',
     "/PES_Aller/EnTetePES/CodBud : code budget « 0A » invalide : un chiffre ou une lettre majuscule suivi d'un chiffre ([0-9A-Z][0-9])."),
    (b'<NbrPce V="3"/>', b'<NbrPce V="4"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/BlocBordereau/NbrPce : annonce 4 pièce(s) mais le bordereau en contient 3."),
    (b'<IdBord V="1"/>', b'<IdBord V="12345678"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/BlocBordereau/IdBord : numéro de bordereau « 12345678 » invalide : "
     "entier de 7 chiffres au plus."),
    (b'<IdPce V="2"/>', b'<IdPce V="0"/>',
     f"{PIECE2}/BlocPiece/IdPce : numéro de pièce « 0 » invalide : au moins 1."),
    (b'<IdPce V="2"/>', b'<IdPce V="1"/>',
     f"{PIECE2}/BlocPiece/IdPce : numéro de pièce 1 déjà utilisé par la pièce 1 du bordereau."),
    (b'<CP V="34170"/>', b'<CP V="3417"/>',
     f"{PIECE2}/LigneDePiece[1]/Tiers[1]/Adresse/CP : code postal « 3417 » invalide : 5 chiffres (99999 à l'étranger)."),
    (b'<NatJur V="01"/>', b'<NatJur V="03"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/Piece[1]/LigneDePiece[1]/Tiers[1]/InfoTiers/NatJur : nature juridique "
     "03 incompatible avec la catégorie de tiers 01 (admises : 01, 02)."),
    (b'<TypPce V="15"/>', b'<TypPce V="01"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/Piece[1]/BlocPiece : combinaison TypBord 06 / TypPce 01 / NatPce 01 "
     "non autorisée (pour un rôle ORMC : 06 / 15 / 01)."),
    (b'<Prenom V="KARIM"/>', b"",
     f"{PIECE2}/LigneDePiece[1]/Tiers[1]/InfoTiers/Prenom : prénom obligatoire pour une personne physique (CatTiers 01)."),
    (b'<Civilite V="M"/>', b'<Civilite V="MLLE"/>',
     f"{PIECE2}/LigneDePiece[1]/Tiers[1]/InfoTiers/Civilite : la civilité « Mademoiselle » n'est plus admise."),
    (b'<MtHT V="38.00"/>', b'<MtHT V="38,00"/>',
     f"{PIECE2}/LigneDePiece[1]/BlocLignePiece/InfoLignePiece/MtHT : montant « 38,00 » invalide : euros avec un point et "
     "deux décimales au plus, 14 chiffres au plus (ex. 1254.67)."),
    (b'<MtHT V="38.00"/>', b'<MtHT V="38.00" Devise="EUR"/>',
     f"{PIECE2}/LigneDePiece[1]/BlocLignePiece/InfoLignePiece/MtHT : seul l'attribut V est permis (trouvé : Devise)."),
    (b'<MtHT V="38.00"/>', b'<MtHT>38.00</MtHT>',
     f"{PIECE2}/LigneDePiece[1]/BlocLignePiece/InfoLignePiece/MtHT : texte interdit : la valeur va dans l'attribut V."),
    (b'<Nom V="DUPONT"/>', b'<x:Nom xmlns:x="urn:x" V="DUPONT"/>',
     f"{PIECE2}/LigneDePiece[1]/Tiers[1]/InfoTiers/Nom : élément qualifié par un espace de noms (seule la racine "
     "l'est dans un PES)."),
    (b'<Majo V="0"/>', b'<Majo V="0"/><Inconnu V="1"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/Piece[1]/LigneDePiece[1]/BlocLignePiece/InfoLignePiece/Inconnu : "
     "élément inattendu ici."),
    (b'<Edition V="06"/>', b'<Edition V="01"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/Piece[1]/BlocPiece/Edition : l'édition 01 est interdite sur un titre "
     "ORMC (03 ou 06)."),
    (b'<TypePJ V="010"/>\n     </PJRef>', b'<TypePJ V="007"/>\n     </PJRef>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/Piece[1]/BlocPiece/PJRef : l'édition 06 demande la facture à éditer "
     "en PJ de type 010."),
    (b'<InfoDematerialisee V="0"/>', b'<InfoDematerialisee V="1"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1] : bordereau dématérialisé (InfoDematerialisee 1) sans signature : rejet du flux."),
    (b'<CodRes V="0"/>', b'<CodRes V="0"/><CodPays V="131"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/Piece[1]/LigneDePiece[1]/Tiers[1]/Adresse/CodPays : doit être absent "
     "(ou 100) pour un tiers résident (CodRes 0)."),
    (b'<DteBordEm V="2026-10-05"/>', b'<DteBordEm V="2026-13-05"/>',
     "/PES_Aller/PES_RecetteAller/Bordereau[1]/BlocBordereau/DteBordEm : date « 2026-13-05 » invalide (AAAA-MM-JJ)."),
])
def test_each_rule_of_the_validator_names_the_place_and_the_problem(old, new, message):
    xml, _, _ = family_file()
    errors = validate_pes_aller(mutate(xml, old, new))
    assert message in errors, errors


def test_misplaced_and_missing_blocks():
    xml, _, _ = family_file()
    swapped = mutate(xml, b'<IdPost V="034000"/>\n  <IdColl V="21340017910006"/>',
                     b'<IdColl V="21340017910006"/>\n  <IdPost V="034000"/>')
    assert "/PES_Aller/EnTetePES/IdPost : élément mal placé (l'ordre du schéma n'est pas respecté)." in validate_pes_aller(swapped)
    no_header = re.sub(rb"<EnTetePES>.*?</EnTetePES>", b"", xml, flags=re.S)
    assert "/PES_Aller/EnTetePES : élément obligatoire absent." in validate_pes_aller(no_header)


def test_attachment_problems():
    xml, _, _ = family_file()
    root = ET.fromstring(xml)
    first_id = V(root, "PES_RecetteAller/Bordereau/Piece/BlocPiece/PJRef/IdUnique")
    fichier = root.find("PES_PJ/PJ/Contenu/Fichier").text
    pj1 = "/PES_Aller/PES_PJ/PJ[1]"

    not_gzip = mutate(xml, fichier.encode(), b"JVBERi0xLjQK")  # base64 of a bare PDF header
    assert f"{pj1}/Contenu/Fichier : contenu non compressé avec gzip (gzip puis base64 attendus)." in validate_pes_aller(not_gzip)
    not_base64 = mutate(xml, fichier.encode(), b"%%% pas du base64 %%%")
    assert f"{pj1}/Contenu/Fichier : contenu qui n'est pas du base64." in validate_pes_aller(not_base64)

    dangling = mutate(xml, f'<IdUnique V="{first_id}"/>'.encode(), b'<IdUnique V="AUTRE1"/>')  # the PJRef only
    errors = validate_pes_aller(dangling)
    assert ("/PES_Aller/PES_RecetteAller/Bordereau[1]/Piece[1]/BlocPiece/PJRef[1]/IdUnique : la pièce jointe « AUTRE1 » "
            "n'est pas dans PES_PJ.") in errors
    assert f"{pj1} : pièce jointe rattachée à aucune pièce (ni PJRef ni RefCompta)." in errors


def test_two_debtors_in_one_ormc_article_are_refused():
    xml, _, _ = family_file()
    two = mutate(xml, b'<Prenom V="LEA"/>', b'<Prenom V="PAUL"/>')  # first line of the Martins only
    assert ("/PES_Aller/PES_RecetteAller/Bordereau[1]/Piece[1] : un titre ORMC n'a qu'un débiteur : les lignes portent "
            "des tiers différents.") in validate_pes_aller(two)


def test_garbage_and_dangerous_xml():
    assert validate_pes_aller(b"<pas du xml")[0].startswith("/ : XML mal formé")
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><n:PES_Aller xmlns:n="x"/>'
    assert validate_pes_aller(bomb) == ["/ : Fichier refusé : les déclarations DOCTYPE/ENTITY ne sont pas admises dans un PES."]
    assert validate_pes_aller(b"<PES_Retour/>") == ["/PES_Retour : l'élément racine doit être PES_Aller."]


# --- Bad input never makes a file ----------------------------------------------------------------


def test_bad_invoices_are_refused_with_one_french_message_each():
    good = Debtor("mme", "Martin", "Léa", "12 rue des Écoles", "34000", "Montpellier")
    bordereau = Bordereau(2026, 1, date(2026, 10, 5), "Rôle septembre")
    pieces = [
        Piece(1, "CG-1", "Facture CG-1", Debtor("", "Martin", "", "", "340", "Montpellier"),
              [PieceLine("Cantine", 1000, "CANT")], 1000),
        Piece(2, "CG-2", "Facture CG-2", good, [PieceLine("Cantine", 1000, "CANTINE")], 1200),
        Piece(3, "CG-3", "Facture CG-3", Debtor("Mlle", "Martin", "Léa", "1 rue", "34000", "Montpellier"),
              [PieceLine("Cantine", 0, "CANT")], 0),
    ]
    with pytest.raises(PesDataError) as caught:
        build_pes_aller(header=header(id_post="12345"), bordereau=bordereau, pieces=pieces,
                        attachments={"CG-1": b"%PDF", "CG-2": b"%PDF", "CG-3": b"%PDF", "CG-9": b"%PDF"})
    assert caught.value.errors == [
        "Codique du poste comptable « 12345 » invalide : 6 ou 7 chiffres, ou 02A/02B suivi de 3 ou 4 chiffres.",
        "Facture CG-1 : civilité du débiteur manquante ; Monsieur ou Madame est obligatoire pour une personne physique.",
        "Facture CG-1 : prénom du débiteur manquant (obligatoire pour une personne physique).",
        "Facture CG-1 : adresse (numéro et voie) du débiteur manquante.",
        "Facture CG-1 : code postal du débiteur « 340 » invalide (5 chiffres ; à l'étranger, indiquer le pays).",
        "Facture CG-2, ligne 1 : code produit local « CANTINE » invalide (1 à 4 lettres ou chiffres).",
        "Facture CG-2 : la somme des lignes (10.00 €) diffère du montant de la facture (12.00 €).",
        "Facture CG-3 : montant 0.00 € ; seules les factures d'un montant positif sont transmises (les avoirs se "
        "règlent à la régie).",
        "Facture CG-3, ligne 1 « Cantine » : montant 0.00 € ; chaque ligne d'un titre doit être positive.",
        "Facture CG-3 : la civilité « Mademoiselle » n'est plus admise par la DGFiP (utiliser Madame).",
        "PDF « CG-9 » fourni pour une facture absente du bordereau.",
    ]


def test_edition_06_needs_the_invoice_pdf():
    piece = piece_from_invoice(invoices()[1], number=1, product_code=PRODUCTS)
    with pytest.raises(PesDataError, match="la facture PDF est nécessaire"):
        build_pes_aller(header=header(), bordereau=Bordereau(2026, 1, date(2026, 10, 5), "Rôle"), pieces=[piece])
    # Without DGFiP edition (the commune sends its own ASAP), no PDF is needed.
    xml = build_pes_aller(header=header(), bordereau=Bordereau(2026, 1, date(2026, 10, 5), "Rôle", edition=None),
                          pieces=[piece])
    assert validate_pes_aller(xml) == [] and b"PES_PJ" not in xml and b"Edition" not in xml


def test_a_debtor_snapshot_without_separate_names_is_refused():
    invoice = invoices()[1]
    legacy = InvoiceData(**{**invoice.__dict__, "debtor": {"name": "M. Karim Dupont", "address": "3 impasse",
                                                           "postcode": "34170", "city": "Castelnau"}})
    with pytest.raises(PesDataError, match=r"clés manquantes : civility, first_name, last_name"):
        piece_from_invoice(legacy, number=1, product_code="CANT")


# --- Values ----------------------------------------------------------------------------------------


def test_amounts_are_exact_cents_with_a_dot_and_two_decimals():
    assert [format_amount(c) for c in (1, 10, 100, 4560, 123456789, 99999999999999)] == [
        "0.01", "0.10", "1.00", "45.60", "1234567.89", "999999999999.99"]
    # Adding thousands of 0.10 € stays exact (no float anywhere).
    assert format_amount(sum([10] * 100_000)) == "10000.00"
    with pytest.raises(TypeError):
        format_amount(12.5)


def test_texts_are_upper_case_ascii_cut_to_length():
    assert normalise_text("  Œuvre de l’école\tNoël  ", 38) == "OEUVRE DE L'ECOLE NOEL"
    assert normalise_text("Ça coûte 12 €", 38) == "CA COUTE 12 EUR"
    assert normalise_text("x" * 50, 38) == "X" * 38
    assert normalise_text(None, 10) == ""


def test_numbers_follow_on_and_a_rejected_bordereau_keeps_its_number():
    first = next_numbers([], exercice=2026, piece_count=3)
    assert (first.bordereau, first.pieces) == (1, (1, 2, 3))
    used = [UsedBordereau(2026, 1, last_piece=3), UsedBordereau(2026, 2, last_piece=7, rejected=True)]
    after_rejection = next_numbers(used, exercice=2026, piece_count=2)
    assert (after_rejection.bordereau, after_rejection.pieces) == (3, (8, 9))
    assert next_numbers(used, exercice=2027, piece_count=1).bordereau == 1  # a new exercice starts again
    with pytest.raises(NumberingError):
        next_numbers([UsedBordereau(2026, 9_999_999, 10)], exercice=2026, piece_count=1)
    with pytest.raises(NumberingError):
        next_numbers([], exercice=2026, piece_count=0)


def test_attachment_ids_are_unique_alphanumerics():
    piece = piece_from_invoice(invoices()[0], number=12, product_code=PRODUCTS)
    unique = attachment_id(header(), Bordereau(2026, 3, date(2026, 10, 5), "R"), piece)
    assert unique == f"{SIRET}123002026000000300000012" and len(unique) <= 50 and unique.isalnum()


# --- Figure --------------------------------------------------------------------------------------


def test_time_to_build_and_validate_5000_invoices(capsys):
    figures = bench.measure(5000, pdf_bytes=3 * 1024)
    with capsys.disabled():
        print(f"\nPES ORMC : {figures}")
    assert figures.errors == 0
