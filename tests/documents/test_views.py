"""The family's "Mes documents" page, downloads, and the staff review pages."""

import re

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from marelle.audit.models import AuditEvent
from marelle.catalog.models import DocumentType
from marelle.documents.models import Document
from marelle.documents.services import document_accept, document_refuse, document_upload

from tests.documents.conftest import EXE, HOST, PDF, PNG, real_queries, upload
from tests.factories import make_family

MINE = "/documents/"
UPLOAD = "/documents/envoyer/"


def send(family, document_type, child=None, content=PDF, name="attestation.pdf"):
    return document_upload(actor=family.guardians.get().user, family=family, document_type=document_type,
                           child=child, uploaded_file=upload(name, content))


def slot_html(page: str, key: str) -> str:
    """The HTML of one piece's block on "Mes documents"."""
    match = re.search(rf'<li class="slot[^"]*" id="piece-{key}">(.*?)</li>', page, re.S)
    assert match, f"no slot {key}"
    return match.group(1)


# --- Mes documents ----------------------------------------------------------------------


def test_mes_documents_lists_states_legend_and_missing(family_client, family, assurance, domicile, staff):
    lea, hugo = family.children.get(first_name="Léa"), family.children.get(first_name="Hugo")
    refused = send(family, assurance, child=lea)
    document_refuse(staff=staff, document_id=refused.pk, reason="Attestation de l'an dernier")
    send(family, domicile, name="edf.pdf")

    response = family_client.get(MINE)
    page = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Mes documents</h1>" in page
    # Legend of every state.
    for label in ("Manquant", "En attente", "Accepté", "Refusé", "Expiré"):
        assert f">{label}</span>" in page
    # Missing: Léa's refused piece and Hugo's never-sent one; the optional one is not.
    missing = page.split('id="manquants-titre"')[1].split("</section>")[0]
    assert "Attestation d&#x27;assurance – Léa" in missing and "refusée, à renvoyer" in missing
    assert "Attestation d&#x27;assurance – Hugo" in missing and "pas encore envoyée" in missing
    assert "Justificatif de domicile" not in missing
    lea_slot = slot_html(page, f"{assurance.pk}-{lea.pk}")
    assert "state-refused" in lea_slot and "Attestation de l&#x27;an dernier" in lea_slot
    assert "Demandée pour : Cantine d&#x27;Alpha" in lea_slot
    assert "state-missing" in slot_html(page, f"{assurance.pk}-{hugo.pk}")
    domicile_slot = slot_html(page, f"{domicile.pk}-0")
    assert "state-pending" in domicile_slot and "Facultative" in domicile_slot and "edf.pdf" in domicile_slot
    assert 'accept=".pdf,application/pdf"' in domicile_slot and "Format PDF, 1 Mo au maximum." in domicile_slot


def test_each_file_input_has_its_own_label_and_help(family_client, family, assurance):
    page = family_client.get(MINE).content.decode()
    ids = re.findall(r'<input type="file" name="file" id="([^"]+)"', page)
    assert len(ids) == len(set(ids)) == 2
    for input_id in ids:
        assert f'<label for="{input_id}">' in page
        assert f'id="{input_id}-aide"' in page and f'aria-describedby="{input_id}-aide"' in page


def test_mes_documents_is_for_families_only(client, staff_client, settings):
    assert staff_client.get(MINE).status_code == 403
    anonymous = Client(HTTP_HOST=HOST).get(MINE)
    assert anonymous.status_code == 302 and "next=/documents/" in anonymous["Location"]


def test_query_count_of_mes_documents_does_not_grow_with_documents(family_client, family, assurance, domicile,
                                                                   staff):
    with CaptureQueriesContext(connection) as empty:
        assert family_client.get(MINE).status_code == 200
    for index in range(3):
        DocumentType.objects.create(code=f"extra-{index}", label=f"Pièce {index}", scope="child",
                                    required_for_services=["cantine"])
    for child in family.children.all():
        for index in range(4):
            document = send(family, assurance, child=child, content=PDF + bytes([index]))
            if index % 2:
                document_accept(staff=staff, document_id=document.pk)
    send(family, domicile)
    with CaptureQueriesContext(connection) as full:
        page = family_client.get(MINE).content.decode()
    assert page.count('type="file"') == 1 + 2 * 4 and page.count("/telecharger/") >= 9
    assert len(real_queries(full)) == len(real_queries(empty)) <= 10, real_queries(full)


def test_query_budget_of_mes_documents(family_client, family, assurance, staff, django_assert_max_num_queries):
    for child in family.children.all():
        send(family, assurance, child=child)
    # Session, user, guardian, family + 4 for the documents (types, services, children, documents),
    # each preceded by django-tenants' SET search_path, and the tenant lookup.
    with django_assert_max_num_queries(20):
        assert family_client.get(MINE).status_code == 200


# --- Upload -----------------------------------------------------------------------------


def test_upload_through_the_page(family_client, family, assurance):
    lea = family.children.get(first_name="Léa")
    response = family_client.post(UPLOAD, {"document_type": assurance.pk, "child": lea.pk,
                                           "file": upload("assurance lea.pdf", PDF)})
    assert response.status_code == 302
    assert response["Location"] == f"/documents/#piece-{assurance.pk}-{lea.pk}"
    document = Document.objects.get()
    assert (document.family, document.child, document.status) == (family, lea, "pending")
    page = family_client.get(response["Location"]).content.decode()
    assert "le fichier « assurance lea.pdf » a bien été envoyé" in page
    assert "state-pending" in slot_html(page, f"{assurance.pk}-{lea.pk}")


def test_refused_upload_shows_the_error_next_to_the_field_of_its_piece(family_client, family, assurance):
    lea, hugo = family.children.get(first_name="Léa"), family.children.get(first_name="Hugo")
    response = family_client.post(UPLOAD, {"document_type": assurance.pk, "child": hugo.pk,
                                           "file": upload("x.pdf", EXE)})
    assert response.status_code == 200
    assert not Document.objects.exists()
    page = response.content.decode()
    hugo_slot = slot_html(page, f"{assurance.pk}-{hugo.pk}")
    input_id = f"id_doc{assurance.pk}-{hugo.pk}_file"
    # The error is in Hugo's form, tied to its input; type and child are kept.
    assert f'<div id="{input_id}-erreur">' in hugo_slot and "Le fichier « x.pdf » n&#x27;est pas un fichier" in hugo_slot
    assert f'aria-describedby="{input_id}-aide {input_id}-erreur" aria-invalid="true" autofocus' in hugo_slot
    assert f'name="document_type" value="{assurance.pk}"' in hugo_slot and f'name="child" value="{hugo.pk}"' in hugo_slot
    assert "erreur" not in slot_html(page, f"{assurance.pk}-{lea.pk}")
    # And summarised at the top, linking to the field.
    assert f'<a href="#{input_id}">Le fichier « x.pdf »' in page


def test_oversize_upload_is_refused_with_a_message(family_client, family, domicile):
    response = family_client.post(UPLOAD, {"document_type": domicile.pk,
                                           "file": upload("gros.pdf", PDF + b"0" * (1024 * 1024))})
    assert response.status_code == 200
    assert "Le fichier « gros.pdf » pèse 1,0 Mo : 1 Mo au maximum pour cette pièce." in response.content.decode()
    assert not Document.objects.exists()


def test_huge_upload_is_cut_short_and_refused(family_client, family, domicile, assurance, media_root):
    # Beyond the largest size any piece allows (5 Mo here): not even kept in a temporary file.
    response = family_client.post(UPLOAD, {"document_type": domicile.pk,
                                           "file": upload("enorme.pdf", PDF + b"0" * (5 * 1024 * 1024 + 10))})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Le fichier « enorme.pdf » est trop volumineux : 1 Mo au maximum pour cette pièce." in page
    assert f'id="id_doc{domicile.pk}-0_file-erreur"' in page
    assert not Document.objects.exists()


def test_png_refused_through_the_page_where_only_pdf_is_accepted(family_client, domicile):
    response = family_client.post(UPLOAD, {"document_type": domicile.pk, "file": upload("photo.png", PNG, "image/png")})
    assert "seuls les fichiers PDF sont acceptés" in response.content.decode()


def test_wrong_scope_through_the_page(family_client, family, other_family, assurance):
    ines = other_family.children.get()
    response = family_client.post(UPLOAD, {"document_type": assurance.pk, "child": ines.pk,
                                           "file": upload("a.pdf", PDF)})
    assert response.status_code == 200
    assert "Cet enfant ne fait pas partie de votre foyer." in response.content.decode()
    response = family_client.post(UPLOAD, {"document_type": assurance.pk, "file": upload("a.pdf", PDF)})
    assert "Indiquez l&#x27;enfant concerné" in response.content.decode()
    assert not Document.objects.exists()


def test_upload_without_file_or_csrf(family, assurance):
    client = Client(HTTP_HOST=HOST, enforce_csrf_checks=True)
    client.force_login(family.guardians.get().user)
    response = client.post(UPLOAD, {"document_type": assurance.pk, "child": family.children.first().pk,
                                    "file": upload("a.pdf", PDF)})
    assert response.status_code == 403
    assert not Document.objects.exists()


def test_staff_cannot_use_the_family_upload(staff_client, family, assurance):
    response = staff_client.post(UPLOAD, {"document_type": assurance.pk, "child": family.children.first().pk,
                                          "file": upload("a.pdf", PDF)})
    assert response.status_code == 403


# --- Downloads --------------------------------------------------------------------------


def test_family_downloads_its_document(family_client, family, assurance):
    document = send(family, assurance, child=family.children.first(), name="Assurance Léa.pdf")
    response = family_client.get(f"/documents/{document.pk}/telecharger/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PDF
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "Assurance%20L%C3%A9a.pdf" in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"]


def test_family_cannot_download_another_familys_document(family_client, other_family, domicile):
    theirs = send(other_family, domicile)
    assert family_client.get(f"/documents/{theirs.pk}/telecharger/").status_code == 404
    assert family_client.get("/documents/999999/telecharger/").status_code == 404


def test_family_cannot_download_another_communes_document(family_client, family, beta):
    connection.set_tenant(beta)
    beta_type = DocumentType.objects.create(code="domicile", label="Justificatif", scope="family")
    beta_family = make_family("beta@example.fr", children=())
    beta_document = send(beta_family, beta_type)
    connection.set_schema_to_public()

    # Alpha has no document with that id for this family: 404, never beta's file.
    response = family_client.get(f"/documents/{beta_document.pk}/telecharger/")
    assert response.status_code == 404
    # On beta's host the alpha session means nothing: sent to beta's login page.
    response = family_client.get(f"/documents/{beta_document.pk}/telecharger/", HTTP_HOST="beta.marelle.test")
    assert response.status_code == 302 and "/compte/" in response["Location"]


def test_staff_downloads_any_document_of_the_commune_and_it_is_recorded(staff_client, staff, family, domicile):
    document = send(family, domicile)
    response = staff_client.get(f"/documents/gestion/{document.pk}/telecharger/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
    assert AuditEvent.objects.filter(action="document.downloaded", actor=staff, family_id=family.pk).exists()


def test_staff_download_is_for_staff_only(family_client, family, domicile):
    document = send(family, domicile)
    assert family_client.get(f"/documents/gestion/{document.pk}/telecharger/").status_code == 403
    response = Client(HTTP_HOST=HOST).get(f"/documents/gestion/{document.pk}/telecharger/")
    assert response.status_code == 302


# --- Staff review -----------------------------------------------------------------------


def test_review_queue_lists_pending_documents_oldest_first(staff_client, family, other_family, assurance, domicile,
                                                           staff):
    first = send(other_family, domicile, name="premier.pdf")
    second = send(family, assurance, child=family.children.get(first_name="Hugo"), name="second.pdf")
    decided = send(family, domicile, name="deja-vu.pdf")
    document_accept(staff=staff, document_id=decided.pk)

    response = staff_client.get("/documents/gestion/")
    page = response.content.decode()
    assert response.status_code == 200
    assert page.index(f"/documents/gestion/{first.pk}/") < page.index(f"/documents/gestion/{second.pk}/")
    assert f"/documents/gestion/{decided.pk}/" not in page
    assert "2 documents en attente" in page and "Hugo Martin" in page


def test_review_queue_is_for_staff(family_client):
    assert family_client.get("/documents/gestion/").status_code == 403


@pytest.mark.usefixtures("eager_celery")
def test_staff_accepts_and_the_family_is_told(staff_client, family, domicile, django_capture_on_commit_callbacks):
    document = send(family, domicile)
    page = staff_client.get(f"/documents/gestion/{document.pk}/").content.decode()
    assert "Accepter" in page and 'for="id_refus_reason"' in page

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/documents/gestion/{document.pk}/accepter/")
    assert response.status_code == 302 and response["Location"] == "/documents/gestion/"
    document.refresh_from_db()
    assert document.status == "accepted" and document.valid_until is not None
    assert [m.subject.split(" – ")[0] for m in mail.outbox] == ["Votre document a été accepté"]

    # Twice: a clear message, no second e-mail.
    response = staff_client.post(f"/documents/gestion/{document.pk}/accepter/", follow=True)
    assert "Ce document a déjà été traité : accepté le" in response.content.decode()
    assert len(mail.outbox) == 1


@pytest.mark.usefixtures("eager_celery")
def test_staff_refusal_requires_a_reason(staff_client, family, domicile, django_capture_on_commit_callbacks):
    document = send(family, domicile)
    response = staff_client.post(f"/documents/gestion/{document.pk}/refuser/", {"reason": "  "})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Indiquez le motif du refus" in page
    assert 'aria-describedby="id_refus_reason-aide id_refus_reason-erreur" aria-invalid="true"' in page
    document.refresh_from_db()
    assert document.status == "pending" and not mail.outbox

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/documents/gestion/{document.pk}/refuser/",
                                     {"reason": "Le nom ne correspond pas."})
    assert response.status_code == 302
    document.refresh_from_db()
    assert document.status == "refused" and document.refusal_reason == "Le nom ne correspond pas."
    assert "Motif : Le nom ne correspond pas." in mail.outbox[0].body

    family_page = Client(HTTP_HOST=HOST)
    family_page.force_login(family.guardians.get().user)
    assert "Le nom ne correspond pas." in family_page.get(MINE).content.decode()


def test_review_of_an_unknown_document_is_404(staff_client):
    assert staff_client.get("/documents/gestion/999999/").status_code == 404
    assert staff_client.post("/documents/gestion/999999/accepter/").status_code == 404
    assert staff_client.post("/documents/gestion/999999/refuser/", {"reason": "x"}).status_code == 404


def test_urls_are_named():
    assert reverse("documents:mine") == MINE
    assert reverse("documents:review_queue") == "/documents/gestion/"
