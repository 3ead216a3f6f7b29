"""The régisseur's Trésor public pages and what the family sees, through the real URLconf."""

import html
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from marelle.billing.models import Invoice
from marelle.recovery.models import RecoveryBatch

from tests.billing.test_pdf import in_alpha, media_root  # noqa: F401 - fixtures
from tests.factories import make_staff
from tests.recovery import pes_fakes
from tests.recovery.test_services import families, frozen, issue, regie, staff  # noqa: F401 - fixtures

HOST = "alpha.marelle.test"
pytestmark = pytest.mark.usefixtures("media_root")


def text(response) -> str:
    return re.sub(r"[\u00a0\u202f]", " ", html.unescape(response.content.decode()))


def client_for(user, commune) -> Client:
    client = Client(HTTP_HOST=HOST)
    client.force_login(user)
    connection.set_tenant(commune)
    return client


def test_regisseur_prepares_exports_downloads_and_imports(frozen, in_alpha, regie, staff, families):  # noqa: F811
    martin, benali, petit = families
    invoice = issue(regie, martin, [("Léa Martin", "Garderie du soir", 1200)])
    issue(regie, petit, [("Tom Petit", "Garderie du soir", 300)], postcode="263")
    client = client_for(staff, in_alpha)

    page = text(client.get("/gestion/tresor-public/"))
    assert "Régie périscolaire" in page and "Préparer un bordereau" in page

    prepare_url = f"/gestion/tresor-public/regies/{regie.pk}/preparer/"
    page = text(client.get(prepare_url))
    assert "1 facture à transmettre, pour un total de <strong>12,00 €</strong>" in page
    assert "Factures non transmises (1)" in page and "code postal du débiteur « 263 » invalide" in page

    response = client.post(prepare_url, {"label": "Périscolaire septembre 2026"})
    batch = RecoveryBatch.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/gestion/tresor-public/bordereaux/{batch.pk}/"

    response = client.post(f"/gestion/tresor-public/bordereaux/{batch.pk}/generer/")
    assert response.status_code == 302
    page = text(client.get(f"/gestion/tresor-public/bordereaux/{batch.pk}/"))
    assert "Bordereau n° 1 de l'exercice 2026" in page and "Généré, à transmettre" in page
    assert "PESORMC_21340017910006_12300_2026_0000001.xml" in page

    download = client.get(f"/gestion/tresor-public/bordereaux/{batch.pk}/fichier/")
    assert download.status_code == 200 and download["Content-Type"] == "application/xml"
    assert b"<IdBord V=\"1\"/>" in download.content
    assert 'filename="PESORMC_21340017910006_12300_2026_0000001.xml"' in download["Content-Disposition"]

    feedback_url = f"/gestion/tresor-public/regies/{regie.pk}/retours/"
    bad = client.post(feedback_url, {"file": SimpleUploadedFile("ack.xml", b"<pas du xml")})
    assert bad.status_code == 400 and "pas un XML lisible" in text(bad)
    retour = pes_fakes.retour(exercice=2026, bordereau=1, pieces=[
        pes_fakes.piece(piece=1, lines=[("05", 1200, 1200, "10")], debt_number="000000000042")])
    page = text(client.post(feedback_url, {"file": SimpleUploadedFile("retour.xml", retour)}))
    assert f"Facture {invoice.number} (pièce 1) : Soldé auprès du Trésor public, recouvré 12,00 €" in page
    page = text(client.post(feedback_url, {"file": SimpleUploadedFile("retour.xml", retour)}))
    assert "dont 1 déjà importée" in page and "Aucun changement." in page
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


def test_family_sees_transmitted_then_settled(frozen, in_alpha, regie, staff, families):  # noqa: F811
    martin = families[0]
    invoice = issue(regie, martin, [("Léa Martin", "Garderie du soir", 1200)])
    family_client = client_for(martin.guardians.get().user, in_alpha)

    page = text(family_client.get("/factures/"))
    assert 'state-to_pay">À payer</span>' in page
    assert "À régler auprès du Trésor public : pas de paiement sur ce portail." in page
    assert 'type="checkbox" name="factures"' not in page
    detail = text(family_client.get(f"/factures/{invoice.pk}/"))
    assert "Cette facture sera transmise au Trésor public" in detail

    from marelle.recovery import services

    batch = services.batch_export(staff=staff, batch_id=services.batch_prepare(staff=staff, regie=regie).pk)
    page = text(family_client.get("/factures/"))
    assert 'state-transmitted">Transmise au Trésor public</span>' in page
    assert "À régler auprès du Trésor public (référence 2026/1/1)" in page
    detail = text(family_client.get(f"/factures/{invoice.pk}/"))
    assert "Cette facture est transmise au Trésor public" in detail
    assert "Référence à rappeler au Trésor public : 2026/1/1." in detail

    retour = pes_fakes.retour(exercice=2026, bordereau=batch.sequence, pieces=[
        pes_fakes.piece(piece=1, lines=[("05", 1200, 1200, "10")], debt_number="000000000042")])
    services.feedback_import(staff=staff, regie=regie, content=retour)
    page = text(family_client.get("/factures/"))
    assert 'state-paid">Réglée auprès du Trésor public</span>' in page
    detail = text(family_client.get(f"/factures/{invoice.pk}/"))
    assert "Cette facture a été réglée auprès du Trésor public." in detail


def test_only_regisseurs_and_administrators_enter(frozen, in_alpha, regie, families):  # noqa: F811
    agent = client_for(make_staff("agent@example.fr", role="agent"), in_alpha)
    assert agent.get("/gestion/tresor-public/").status_code == 403
    parent = client_for(families[0].guardians.get().user, in_alpha)
    assert parent.get(f"/gestion/tresor-public/regies/{regie.pk}/preparer/").status_code == 403
    anonymous = Client(HTTP_HOST=HOST)
    assert anonymous.get("/gestion/tresor-public/").status_code == 302
    admin = client_for(make_staff("admin@example.fr", role="administrateur"), in_alpha)
    assert admin.get("/gestion/tresor-public/").status_code == 200
    # A régie paid online has no Trésor public pages.
    from marelle.catalog.models import Regie

    scolaire = Regie.objects.get(code="scolaire")
    assert admin.get(f"/gestion/tresor-public/regies/{scolaire.pk}/preparer/").status_code == 404
    assert admin.post(f"/gestion/tresor-public/regies/{regie.pk}/preparer/").status_code == 400
