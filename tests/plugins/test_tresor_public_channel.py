"""The Trésor public recovery channel: plain data in, PES files and facts out (no database)."""

from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from marelle.plugin_api import RecoveryBatch, RecoveryFileError, RecoveryInvoice, RecoveryLine
from marelle.plugin_api.manager import build_registry, create_recovery_channel
from marelle.plugin_api.payment import settings_errors
from marelle_tresor_public.channel import TresorPublicChannel
from marelle_tresor_public.pes import decode_attachment
from marelle_tresor_public.plugin import TresorPublicSettings
from marelle_tresor_public.validator import validate_pes_aller

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pes"
SETTINGS = {"id_post": "034000", "id_coll": "21340017910006", "cod_col": "123", "cod_bud": "00",
            "label": "Budget principal", "product_codes": {"cantine": "CANT"}}
DEBTOR = {"name": "Mme Claire Martin", "civility": "mme", "first_name": "Claire", "last_name": "Martin",
          "address": "1 place de la Mairie", "complement": "", "postcode": "26300", "city": "Alixan"}


def channel(**changes) -> TresorPublicChannel:
    return create_recovery_channel("tresor_public", {**SETTINGS, **changes}, channel_class=TresorPublicChannel)


def invoice(number="APS-2026-000001", piece=None, pdf=None, **debtor) -> RecoveryInvoice:
    return RecoveryInvoice(
        number=number, amount_cents=3100, issued_on=date(2026, 10, 5), due_on=date(2026, 11, 4),
        label="Septembre 2026", debtor={**DEBTOR, **debtor}, piece_number=piece, pdf=pdf, family_reference="F000007",
        lines=[RecoveryLine("Repas", 1500, child_name="Léa Martin", group="Cantine", service_code="cantine"),
               RecoveryLine("Repas", 900, child_name="Léa Martin", group="Cantine", service_code="cantine"),
               RecoveryLine("Soir", 700, child_name="Léa Martin", group="Garderie", service_code="garderie")])


def batch(invoices, sequence=4) -> RecoveryBatch:
    return RecoveryBatch(commune_slug="alpha", regie_code="aps", exercice=2026, sequence=sequence,
                         created_at=datetime(2026, 10, 5, 9, tzinfo=ZoneInfo("Europe/Paris")), invoices=invoices,
                         label="Périscolaire septembre 2026", issued_on=date(2026, 10, 5))


def test_registered_as_a_recovery_channel_with_the_provider_settings():
    registry = build_registry(autoload=False, extra_modules=["marelle_tresor_public.plugin"])
    assert registry.recovery_channels == {"tresor_public": TresorPublicChannel}
    assert registry.payment_providers["tresor_public"].settings_schema is TresorPublicSettings
    # Existing YAMLs (header values only) stay valid; the new keys have defaults.
    minimal = {key: SETTINGS[key] for key in ("id_post", "id_coll", "cod_col", "cod_bud")}
    assert settings_errors(TresorPublicSettings, minimal) == []
    settings = TresorPublicSettings.model_validate(minimal)
    assert (settings.default_product_code, settings.nature, settings.edition, settings.product_codes) == (
        "7066", "588", "06", {})
    assert settings_errors(TresorPublicSettings, {**minimal, "product_codes": {"cantine": "TROP-LONG"}})
    assert settings_errors(TresorPublicSettings, {**minimal, "edition": "01"})
    assert channel().budget_key() == "21340017910006-123-00"
    assert channel().needs_pdf and not channel(edition=None).needs_pdf


def test_checks_name_the_invoice_and_the_field_in_french():
    assert channel().check_invoice(invoice()) == []
    assert channel().check_invoice(invoice(first_name="", postcode="2630")) == [
        "Facture APS-2026-000001 : prénom du débiteur manquant (obligatoire pour une personne physique).",
        "Facture APS-2026-000001 : code postal du débiteur « 2630 » invalide (5 chiffres ; à l'étranger, indiquer "
        "le pays).",
    ]
    snapshot_without_names = invoice()
    snapshot_without_names = replace(snapshot_without_names, debtor={"name": "Mme Claire Martin"})
    assert "séparément civilité, prénom et nom" in channel().check_invoice(snapshot_without_names)[0]
    problems = channel(id_coll="21340017910007").check_batch(batch([invoice(), invoice()]))
    assert problems == ["Réglages de la régie : SIRET du budget « 21340017910007 » invalide : clé de contrôle "
                        "incorrecte.", "Facture APS-2026-000001 : présente deux fois dans le bordereau."]


def test_export_is_valid_deterministic_and_gives_each_invoice_its_reference():
    pdf = b"%PDF-1.4 facture"
    data = batch([invoice(piece=17, pdf=pdf), invoice("APS-2026-000002", piece=18, pdf=pdf, civility="m")])
    export = channel().export(data)
    assert validate_pes_aller(export.content) == []
    assert export.content == channel().export(data).content
    assert export.filename == "PESORMC_21340017910006_12300_2026_0000004.xml"
    assert export.references == {"APS-2026-000001": "2026/4/17", "APS-2026-000002": "2026/4/18"}
    text = export.content.decode("iso-8859-1")
    assert text.count('<CodProdLoc V="CANT"/>') == 2 and text.count('<CodProdLoc V="7066"/>') == 2
    assert text.count('<MtHT V="24.00"/>') == 2 and '<MtBordHt V="62.00"/>' in text
    fichier = text.split('<Fichier MIMEType="application/pdf">')[1].split("</Fichier>")[0]
    assert decode_attachment(fichier) == pdf
    # Without edition 06 no PDF travels; a missing pièce number is refused.
    assert "PES_PJ" not in channel(edition=None).export(data).content.decode("iso-8859-1")
    with pytest.raises(ValueError, match="Numéro de pièce manquant"):
        channel().export(batch([invoice()]))
    with pytest.raises(ValueError, match="facture PDF est nécessaire"):
        channel().export(batch([invoice(piece=1)]))


def test_acquittements_give_stable_facts():
    facts = channel().parse_feedback((FIXTURES / "ack_ko.xml").read_bytes())
    assert [(f.key, f.state, f.batch_sequence, f.piece_number) for f in facts] == [
        ("ack:2026:2:ko", "rejected", 2, None),
        ("ack:2026:3:ok", "accepted", 3, None),
        ("ack:pj:21340017910006123002026000000200000005:ko", "information", 2, 5),
    ]
    assert "ERREUR_CUMUL_MONTANTS" in facts[0].message and "Pièce 5 : ERREUR_AUTRE" in facts[0].message
    assert facts == channel().parse_feedback((FIXTURES / "ack_ko.xml").read_bytes())
    technical = channel().parse_feedback((FIXTURES / "ack_technical_ko.xml").read_bytes())
    assert technical[0].state == "rejected" and technical[0].file_name and technical[0].batch_sequence is None


def test_pes_retour_gives_collected_partial_and_rejected_facts():
    soldee = channel().parse_feedback((FIXTURES / "retour_soldee.xml").read_bytes())
    states = {f.piece_number: (f.state, f.amount_cents, f.raw["payfip"]) for f in soldee}
    assert states[1] == ("collected", 10520, True)
    assert states[2][0] == "partially_collected"
    assert all(f.key.startswith("retour:2026:") and f.document == "PES Retour" for f in soldee)
    rejet = channel().parse_feedback((FIXTURES / "retour_rejet.xml").read_bytes())
    assert [(f.state, f.batch_sequence, f.piece_number) for f in rejet] == [("rejected", 1, 2), ("taken", 3, None)]


def test_unreadable_or_foreign_files_are_refused_in_french():
    with pytest.raises(RecoveryFileError, match="pas un XML lisible"):
        channel().parse_feedback(b"<ACQUIT>")
    with pytest.raises(RecoveryFileError, match="ni un acquittement PES ni un PES Retour"):
        channel().parse_feedback(b"<Autre/>")
    with pytest.raises(RecoveryFileError, match="CodBud 00, pas celui de cette régie"):
        channel(cod_bud="01").parse_feedback((FIXTURES / "ack_ok.xml").read_bytes())
