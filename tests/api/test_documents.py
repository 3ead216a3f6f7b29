"""Pièces justificatives through the API: list, pieces to provide, upload, download."""

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings
from django.utils.functional import empty
from marelle.catalog.models import DocumentType
from marelle.documents.models import Document

from tests.factories import make_family

URL = "/api/v1/documents/"
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48


def _forget_media_root():
    # TenantFileSystemStorage caches MEDIA_ROOT/<schema>; setting_changed does not clear it.
    if default_storage._wrapped is not empty:
        default_storage._wrapped.__dict__.pop("relative_media_root", None)


@pytest.fixture(autouse=True)
def media_root(tmp_path):
    with override_settings(MEDIA_ROOT=tmp_path):
        _forget_media_root()
        yield tmp_path
    _forget_media_root()


@pytest.fixture
def assurance(alpha):
    """From alpha's YAML: child scope, required for the cantine, 5 Mo."""
    connection.set_tenant(alpha)
    return DocumentType.objects.get(code="assurance")


@pytest.fixture
def domicile(alpha):
    connection.set_tenant(alpha)
    return DocumentType.objects.create(code="domicile", label="Justificatif de domicile", scope="family",
                                       accepted_formats=["pdf"], max_size_mb=1)


def pdf(name="attestation.pdf", content=PDF):
    return SimpleUploadedFile(name, content, content_type="application/pdf")


def test_upload_list_and_download(api, family, assurance):
    lea = family.children.get()
    response = api.post(URL, {"document_type": "assurance", "child": lea.pk, "file": pdf()}, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["document_type"], body["child"], body["state"], body["original_name"]) == (
        "assurance", lea.pk, "pending", "attestation.pdf")

    [listed] = api.get(URL).json()
    assert listed["id"] == body["id"]

    download = api.get(listed["download_url"], HTTP_ACCEPT="application/pdf")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == PDF
    assert download["Content-Type"] == "application/pdf"
    assert "attachment" in download["Content-Disposition"]
    assert download["X-Content-Type-Options"] == "nosniff"


def test_pieces_to_provide(api, family, assurance, domicile):
    slots = api.get(f"{URL}a-fournir/").json()
    by_type = {(s["document_type"], s["child"]): s for s in slots}
    lea = family.children.get()
    assert by_type[("assurance", lea.pk)]["is_missing"] is True
    assert by_type[("assurance", lea.pk)]["required_for"] == ["Cantine d'Alpha"]
    assert by_type[("domicile", None)]["required"] is False
    api.post(URL, {"document_type": "assurance", "child": lea.pk, "file": pdf()}, format="multipart")
    slot = next(s for s in api.get(f"{URL}a-fournir/").json() if s["document_type"] == "assurance")
    assert (slot["state"], slot["is_missing"]) == ("pending", False)


def test_upload_bad_input(api, family, assurance, domicile):
    lea = family.children.get()
    response = api.post(URL, {"document_type": "inconnu"}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"document_type": ["Cette pièce n'est pas demandée par la commune."],
                               "file": ["Choisissez le fichier à envoyer."]}
    # The service's rules: scope, content sniffing, formats.
    response = api.post(URL, {"document_type": "assurance", "file": pdf()}, format="multipart")
    assert response.json() == {"child": ["Indiquez l'enfant concerné par « Attestation d'assurance »."]}
    response = api.post(URL, {"document_type": "assurance", "child": lea.pk, "file": pdf("virus.pdf", EXE)},
                        format="multipart")
    assert response.status_code == 400
    assert response.json()["file"][0].startswith("Le fichier « virus.pdf » n'est pas un fichier")
    response = api.post(URL, {"document_type": "domicile", "file": pdf(content=PDF + b"x" * (1024 * 1024 + 10))},
                        format="multipart")
    assert response.status_code == 400
    assert response.json() == {"file": ["Le fichier « attestation.pdf » pèse 1,0 Mo : 1 Mo au maximum pour "
                                        "cette pièce."]}
    # Past the largest size any piece allows, the upload is cut short while it is read.
    huge = pdf("enorme.pdf", PDF + b"x" * (6 * 1024 * 1024))
    response = api.post(URL, {"document_type": "assurance", "child": lea.pk, "file": huge}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"file": ["Le fichier « enorme.pdf » est trop volumineux : 5 Mo au maximum pour "
                                        "cette pièce."]}
    assert not Document.objects.exists()


def test_other_familys_child_and_document(api, family, assurance, alpha, client_for):
    connection.set_tenant(alpha)
    other = make_family("autre@example.fr")
    theirs = other.children.get()
    response = api.post(URL, {"document_type": "assurance", "child": theirs.pk, "file": pdf()}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"child": ["Cet enfant ne fait pas partie de votre foyer."]}

    other_client = client_for(other.guardians.get().user)
    created = other_client.post(URL, {"document_type": "assurance", "child": theirs.pk, "file": pdf()},
                                format="multipart").json()
    assert api.get(f"{URL}{created['id']}/fichier/").status_code == 404
    assert api.get(URL).json() == []
