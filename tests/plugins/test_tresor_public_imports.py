"""Trésor public: acquittements and PES Retour Recette read back and applied once."""

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from marelle_tresor_public.imports import (
    InvoiceRecoveryState,
    PesImportError,
    RecoveryStatus,
    apply_ack,
    apply_retour,
    parse_pes_ack,
    parse_pes_retour,
    unmatched_states,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pes"
PJ = "213400179100061230020260000{:03d}{:08d}"  # SIRET + CodCol + CodBud + exercice + IdBord + IdPce


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def transmitted() -> dict[str, InvoiceRecoveryState]:
    """Rôle 1: the three families of the PES test file; rôles 2 and 3: later ones."""
    rows = [("CG-2026-000042", 1, 1, 10520), ("CG-2026-000043", 1, 2, 3800), ("CG-2026-000044", 1, 3, 4440),
            ("CG-2026-000045", 2, 4, 2000), ("CG-2026-000046", 2, 5, 3000),
            ("CG-2026-000047", 3, 6, 2600), ("CG-2026-000048", 3, 7, 3600)]
    return {number: InvoiceRecoveryState(invoice=number, exercice=2026, bordereau=bordereau, piece=piece,
                                         amount_cents=amount, attachment_id=PJ.format(bordereau, piece))
            for number, bordereau, piece, amount in rows}


def applied(current, changes):
    return {**current, **{c.invoice: c.after for c in changes}}


# --- Acquittements -------------------------------------------------------------------------------


def test_an_ok_acquit_marks_the_bordereau_accepted_once():
    ack = parse_pes_ack(read("ack_ok.xml"))
    assert ack.ok and ack.file_name == "ACK_PESORMC_21340017910006_12300_2026_0000001.xml"
    assert (ack.structure_date, ack.id_post, ack.cod_col, ack.cod_bud) == (date(2026, 10, 6), "034000", "123", "00")
    assert [(e.domain_label, e.exercice, e.bordereau, e.ok) for e in ack.bordereaux] == [("Rôle", 2026, 1, True)]
    assert [e.attachment_id for e in ack.attachments] == [PJ.format(1, n) for n in (1, 2, 3)]

    current = transmitted()
    changes = apply_ack(current, ack)
    assert {c.invoice: c.after.status for c in changes} == {
        "CG-2026-000042": "ack_ok", "CG-2026-000043": "ack_ok", "CG-2026-000044": "ack_ok"}
    assert changes[0].summary == "Accepté par le guichet Hélios"
    assert apply_ack(applied(current, changes), ack) == []


def test_a_ko_acquit_gives_each_invoice_its_errors_and_is_imported_once():
    ack = parse_pes_ack(read("ack_ko.xml"))  # qualified root, unknown elements: tolerated
    assert not ack.ok
    refused = ack.bordereau(2026, 2)
    assert not refused.ok and refused.domain == "7"
    assert [(e.code, e.label) for e in refused.errors] == [
        ("ERREUR_CUMUL_MONTANTS", "Le montant du bordereau ne correspond pas au cumul des lignes")]
    assert refused.pieces[0].piece == 5 and refused.pieces[0].lines[0].line == 2
    assert refused.messages() == [
        "ERREUR_CUMUL_MONTANTS : Le montant du bordereau ne correspond pas au cumul des lignes",
        "Pièce 5 : ERREUR_AUTRE : Code produit local CANX inconnu",
        "Pièce 5, ligne 2 : ERREUR_AUTRE : Nature 588 non ouverte au budget",
    ]
    assert ack.bordereau(2026, 3).ok
    assert [(a.attachment_id, a.ok) for a in ack.attachments] == [(PJ.format(2, 5), False)]

    current = transmitted()
    changes = apply_ack(current, ack)
    after = {c.invoice: c.after for c in changes}
    assert {k: s.status for k, s in after.items()} == {
        "CG-2026-000045": "ack_ko", "CG-2026-000046": "ack_ko", "CG-2026-000047": "ack_ok", "CG-2026-000048": "ack_ok"}
    assert after["CG-2026-000045"].messages == (
        "ERREUR_CUMUL_MONTANTS : Le montant du bordereau ne correspond pas au cumul des lignes",)
    assert after["CG-2026-000046"].messages == (
        "ERREUR_CUMUL_MONTANTS : Le montant du bordereau ne correspond pas au cumul des lignes",
        "Pièce 5 : ERREUR_AUTRE : Code produit local CANX inconnu",
        "Ligne 2 : ERREUR_AUTRE : Nature 588 non ouverte au budget",
        f"Pièce jointe {PJ.format(2, 5)} refusée : ERREUR_PJ : Fichier illisible",
    )
    assert after["CG-2026-000046"].needs_correction
    # Imported a second time: nothing moves.
    assert apply_ack(applied(current, changes), ack) == []


def test_a_file_refused_as_a_whole_applies_to_the_bordereaux_it_carried():
    ack = parse_pes_ack(read("ack_technical_ko.xml"))
    assert ack.bordereaux == () and [e.domain_label for e in ack.file_level] == ["Technique"]
    current = transmitted()
    assert apply_ack(current, ack) == []  # the core must say which bordereaux the file carried
    changes = apply_ack(current, ack, file_bordereaux=[(2026, 1)])
    assert [c.invoice for c in changes] == ["CG-2026-000042", "CG-2026-000043", "CG-2026-000044"]
    assert changes[0].after.messages == (
        "Fichier refusé (Technique) : ERREUR_CODIQUE : Le poste comptable 034000 n'accepte pas ce budget",)
    assert apply_ack(applied(current, changes), ack, file_bordereaux=[(2026, 1)]) == []


def test_an_acquit_never_moves_back_an_invoice_the_comptable_already_took():
    current = transmitted()
    current["CG-2026-000042"] = replace(current["CG-2026-000042"], status=RecoveryStatus.TAKEN)
    changes = apply_ack(current, parse_pes_ack(read("ack_ok.xml")))
    assert "CG-2026-000042" not in {c.invoice for c in changes}


# --- PES Retour ----------------------------------------------------------------------------------


def test_the_retour_says_per_piece_and_line_what_was_recovered_and_how():
    states = parse_pes_retour(read("retour_soldee.xml"))
    assert [(s.bordereau, s.piece, s.state) for s in states] == [(1, 1, "02"), (1, 2, "02"), (1, 3, "02"), (1, 99, "02")]
    martin, dupont, ngo, other = states
    assert martin.as_of == date(2026, 11, 20) and martin.taken_on == date(2026, 10, 9)
    assert martin.state_label == "Prise en charge"
    assert [(line.line, line.state, line.settled, line.recovered_cents) for line in martin.lines] == [
        (1, "05", True, 4560), (2, "05", True, 1200), (3, "05", True, 4760)]
    assert martin.settled and martin.paid_via_payfip and martin.recovered_cents == 10520
    assert martin.lines[0].recoveries[0].origin_label == "Paiement en ligne (PayFiP/TIPI)"
    assert (martin.debt_number, martin.period, martin.key1, martin.key2) == ("2026000042", "9", "7", "K")
    assert not dupont.settled and dupont.recovered_cents == 1000 and dupont.lines[0].remaining_cents == 2800
    assert dupont.lines[0].state_label == "Non soldée"
    assert ngo.settled and not ngo.paid_via_payfip


def test_a_retour_marking_lines_soldees_applied_twice_changes_nothing_the_second_time():
    current = transmitted()
    states = parse_pes_retour(read("retour_soldee.xml"))
    changes = apply_retour(current, states)
    after = {c.invoice: c.after for c in changes}
    assert {k: (s.status, s.recovered_cents, s.paid_via_payfip) for k, s in after.items()} == {
        "CG-2026-000042": ("solde", 10520, True),
        "CG-2026-000043": ("partiel", 1000, False),
        "CG-2026-000044": ("solde", 4440, False),
    }
    assert after["CG-2026-000042"].family_label == "Réglée auprès du Trésor public"
    assert after["CG-2026-000042"].reference == "2026000042 9 7 K"
    assert after["CG-2026-000043"].family_label == "Partiellement réglée auprès du Trésor public"
    summaries = {c.invoice: c.summary for c in changes}
    assert summaries["CG-2026-000042"] == "Soldé auprès du Trésor public ; recouvré 105,20 € (paiement en ligne PayFiP)"
    assert [(s.bordereau, s.piece) for s in unmatched_states(current, states)] == [(1, 99)]

    again = applied(current, changes)
    assert apply_retour(again, parse_pes_retour(read("retour_soldee.xml"))) == []


def test_a_rejection_reopens_the_invoice_and_a_global_event_covers_the_whole_role():
    states = parse_pes_retour(read("retour_rejet.xml"))  # default namespace on every element
    rejected, role = states
    assert (rejected.piece, rejected.state, rejected.observation, rejected.rejected_on) == (
        2, "04", "03-21", date(2026, 10, 12))
    assert not rejected.piece_number_burnt  # rejected at visa: correctable
    assert (role.bordereau, role.piece, role.state, role.amount_cents) == (3, None, "02", 6200)

    current = transmitted()
    changes = apply_retour(current, states)
    after = {c.invoice: c.after for c in changes}
    assert {k: s.status for k, s in after.items()} == {
        "CG-2026-000043": "rejete", "CG-2026-000047": "pris_en_charge", "CG-2026-000048": "pris_en_charge"}
    assert after["CG-2026-000043"].needs_correction
    assert after["CG-2026-000043"].messages == ("Observation du comptable : 03-21",
                                                "Commentaire du comptable : Adresse du debiteur incomplete")
    assert apply_retour(applied(current, changes), states) == []


def test_an_older_file_read_late_does_not_undo_a_newer_one():
    current = transmitted()
    settled = applied(current, apply_retour(current, parse_pes_retour(read("retour_soldee.xml"))))
    late = apply_retour(settled, parse_pes_retour(read("retour_rejet.xml")))  # dated 12 October
    assert "CG-2026-000043" not in {c.invoice for c in late}
    assert settled["CG-2026-000043"].status == "partiel"


def test_an_amount_taken_that_differs_from_ours_is_flagged():
    current = transmitted()
    current["CG-2026-000044"] = replace(current["CG-2026-000044"], amount_cents=4500)
    changes = {c.invoice: c for c in apply_retour(current, parse_pes_retour(read("retour_soldee.xml")))}
    assert changes["CG-2026-000044"].after.anomaly == (
        "montant pris en charge 44,40 € différent du montant transmis 45,00 €")


# --- Strict on what we need ----------------------------------------------------------------------


def test_what_we_need_must_be_there():
    ok = read("ack_ok.xml")
    with pytest.raises(PesImportError, match=r"/ACQUIT/ElementACQUIT\[1\]/EtatAck : valeur obligatoire absente"):
        parse_pes_ack(ok.replace(b'<EtatAck V="1"/>', b"", 1))
    with pytest.raises(PesImportError, match=r"EtatAck : booléen attendu \(0 ou 1\), trouvé « OUI »"):
        parse_pes_ack(ok.replace(b'<EtatAck V="1"/>', b'<EtatAck V="OUI"/>', 1))
    with pytest.raises(PesImportError, match="n'est pas un acquittement PES"):
        parse_pes_ack(read("retour_soldee.xml"))
    with pytest.raises(PesImportError, match="n'est pas un PES Retour Recette"):
        parse_pes_retour(ok)
    retour = read("retour_soldee.xml")
    with pytest.raises(PesImportError, match=r"Piece\[1\]/BlocPiece/IdPce : valeur obligatoire absente"):
        parse_pes_retour(retour.replace(b'<IdPce V="1"/>', b"", 1))
    with pytest.raises(PesImportError, match=r"MtRecoTot : montant « 45.6O » invalide"):
        parse_pes_retour(retour.replace(b'<MtRecoTot V="45.60"/>', b'<MtRecoTot V="45.6O"/>', 1))
    with pytest.raises(PesImportError, match="DOCTYPE/ENTITY"):
        parse_pes_ack(b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><PES_ACQUIT/>')
    with pytest.raises(PesImportError, match="XML mal formé"):
        parse_pes_retour(b"<PES_Retour>")
