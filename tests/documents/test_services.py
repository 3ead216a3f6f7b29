"""Upload rules, staff decisions, expiry and deletion of pièces justificatives."""

import hashlib
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from marelle.audit.models import AuditEvent
from marelle.documents import services
from marelle.documents.models import Document, DocumentState
from marelle.documents.services import (
    DocumentAlreadyDecided,
    add_months,
    document_accept,
    document_refuse,
    document_upload,
    documents_delete_for_family,
)

from tests.documents.conftest import EXE, JPEG, PDF, PNG, upload
from tests.factories import make_staff

PARIS = ZoneInfo("Europe/Paris")


def user_of(family):
    return family.guardians.get().user


def send(family, document_type, content=PDF, name="attestation.pdf", child=None, actor=None):
    return document_upload(actor=actor or user_of(family), family=family, document_type=document_type,
                           child=child, uploaded_file=upload(name, content))


def error_of(excinfo, field):
    return " ".join(excinfo.value.message_dict[field])


def test_upload_pdf_is_stored_under_the_commune_with_a_random_name(family, assurance, media_root):
    lea = family.children.get(first_name="Léa")
    document = send(family, assurance, child=lea)

    assert document.status == Document.Status.PENDING
    assert document.content_type == "application/pdf"
    assert document.size_bytes == len(PDF)
    assert document.sha256 == hashlib.sha256(PDF).hexdigest()
    assert document.original_name == "attestation.pdf"
    assert document.uploaded_by == user_of(family)
    stored = Path(document.file.path)
    # MEDIA_ROOT/<schema>/documents/<family id>/<random>.pdf: nothing the family chose.
    assert stored.parent == media_root / "alpha" / "documents" / str(family.pk)
    assert stored.suffix == ".pdf" and "attestation" not in stored.name and len(stored.stem) == 32
    assert stored.read_bytes() == PDF
    event = AuditEvent.objects.get(action="document.uploaded")
    assert event.actor == user_of(family) and event.family_id == family.pk
    assert event.details["document_type"] == "assurance"


def test_oversize_file_is_refused_with_its_size_and_the_limit(family, domicile, media_root):
    content = PDF + b"0" * (1024 * 1024)  # just over 1 Mo
    with pytest.raises(ValidationError) as excinfo:
        send(family, domicile, content=content, name="facture-edf.pdf")
    message = error_of(excinfo, "file")
    assert "« facture-edf.pdf »" in message and "1,0 Mo" in message and "1 Mo au maximum" in message
    assert not Document.objects.exists()
    assert not any(media_root.rglob("*.pdf"))


def test_file_of_exactly_the_limit_is_accepted(family, domicile):
    content = PDF + b"0" * (1024 * 1024 - len(PDF))
    assert send(family, domicile, content=content).size_bytes == 1024 * 1024


def test_executable_renamed_pdf_is_refused_naming_the_file(family, assurance, media_root):
    lea = family.children.get(first_name="Léa")
    with pytest.raises(ValidationError) as excinfo:
        send(family, assurance, content=EXE, name="x.pdf", child=lea)
    message = error_of(excinfo, "file")
    assert "« x.pdf »" in message
    assert "n'est pas un fichier PDF, JPEG ou PNG valide" in message
    assert not Document.objects.exists()
    assert not any(media_root.rglob("*.*"))


def test_text_file_is_refused_whatever_its_extension(family, assurance):
    with pytest.raises(ValidationError) as excinfo:
        send(family, assurance, content=b"hello, I am not a PDF", name="scan.pdf",
             child=family.children.first())
    assert "« scan.pdf »" in error_of(excinfo, "file")


def test_empty_file_is_refused(family, domicile):
    with pytest.raises(ValidationError) as excinfo:
        send(family, domicile, content=b"", name="vide.pdf")
    assert error_of(excinfo, "file") == "Le fichier « vide.pdf » est vide."


def test_png_and_jpeg_accepted_where_the_type_allows_images(family, assurance):
    lea = family.children.get(first_name="Léa")
    png = send(family, assurance, content=PNG, name="photo.png", child=lea)
    jpeg = send(family, assurance, content=JPEG, name="photo.jpg", child=lea)
    assert (png.content_type, jpeg.content_type) == ("image/png", "image/jpeg")
    assert png.file.name.endswith(".png") and jpeg.file.name.endswith(".jpg")


def test_png_refused_where_only_pdf_is_accepted(family, domicile):
    with pytest.raises(ValidationError) as excinfo:
        send(family, domicile, content=PNG, name="photo.png")
    message = error_of(excinfo, "file")
    assert "« photo.png »" in message and "format PNG" in message and "seuls les fichiers PDF" in message


def test_sniffed_type_decides_over_the_extension(family, assurance):
    """A PNG named .pdf is stored and downloaded as the PNG it is."""
    document = send(family, assurance, content=PNG, name="scan.pdf", child=family.children.first())
    assert document.content_type == "image/png"
    assert document.file.name.endswith(".png")
    assert document.download_name == "scan.pdf.png"


def test_child_scope_type_needs_a_child_of_the_family(family, other_family, assurance):
    with pytest.raises(ValidationError) as excinfo:
        send(family, assurance, child=None)
    assert "Indiquez l'enfant" in error_of(excinfo, "child")

    ines = other_family.children.get()
    with pytest.raises(ValidationError) as excinfo:
        send(family, assurance, child=ines)
    assert "ne fait pas partie de votre foyer" in error_of(excinfo, "child")
    assert not Document.objects.exists()


def test_family_scope_type_refuses_a_child(family, domicile):
    with pytest.raises(ValidationError) as excinfo:
        send(family, domicile, child=family.children.first())
    assert "concerne le foyer" in error_of(excinfo, "child")


def test_archived_type_is_refused(family, domicile):
    domicile.archived_at = datetime(2026, 1, 1, tzinfo=PARIS)
    domicile.save()
    with pytest.raises(ValidationError) as excinfo:
        send(family, domicile)
    assert "plus demandée" in error_of(excinfo, "document_type")


def test_another_family_cannot_upload_for_this_one(family, other_family, domicile):
    with pytest.raises(PermissionDenied):
        send(family, domicile, actor=user_of(other_family))


def test_staff_may_upload_for_a_family(family, domicile, staff):
    assert send(family, domicile, actor=staff).uploaded_by == staff


def test_same_file_twice_while_pending_is_refused(family, domicile):
    send(family, domicile)
    with pytest.raises(ValidationError) as excinfo:
        send(family, domicile, name="encore.pdf")
    assert "déjà été envoyé" in error_of(excinfo, "file")


def test_file_name_is_cleaned(family, domicile):
    document = send(family, domicile, name='..\\..\\C:\\fakepath\\mon "justif"\x07.pdf')
    assert document.original_name == "mon justif.pdf"


@pytest.mark.usefixtures("eager_celery")
def test_accept_sets_validity_and_notifies_the_family(family, domicile, staff, django_capture_on_commit_callbacks):
    document = send(family, domicile)
    with time_machine.travel(datetime(2026, 11, 30, 10, tzinfo=PARIS), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            accepted = document_accept(staff=staff, document_id=document.pk)

    assert accepted.status == Document.Status.ACCEPTED
    assert accepted.valid_until == date(2027, 2, 28)  # 30 Nov + 3 months, clamped
    assert accepted.reviewed_by == staff and accepted.reviewed_at is not None
    assert AuditEvent.objects.filter(action="document.accepted", actor=staff, family_id=family.pk).exists()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["claire@example.fr"]
    assert message.subject == "Votre document a été accepté – Justificatif de domicile – Commune d'Alpha"
    assert "« attestation.pdf »" in message.body and "valable jusqu'au 28/02/2027" in message.body


def test_accept_without_validity_never_expires(family, assurance, staff):
    document = send(family, assurance, child=family.children.first())
    accepted = document_accept(staff=staff, document_id=document.pk)
    assert accepted.valid_until is None
    assert accepted.state_on(date(2099, 1, 1)) == DocumentState.ACCEPTED


@pytest.mark.usefixtures("eager_celery")
def test_refuse_needs_a_reason_and_sends_it(family, domicile, staff, django_capture_on_commit_callbacks):
    document = send(family, domicile)
    with pytest.raises(ValidationError) as excinfo:
        document_refuse(staff=staff, document_id=document.pk, reason="   ")
    assert "motif" in error_of(excinfo, "reason")
    document.refresh_from_db()
    assert document.status == Document.Status.PENDING

    with django_capture_on_commit_callbacks(execute=True):
        refused = document_refuse(staff=staff, document_id=document.pk, reason="  Document illisible.  ")
    assert refused.status == Document.Status.REFUSED and refused.refusal_reason == "Document illisible."
    assert refused.valid_until is None
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject.startswith("Votre document a été refusé")
    assert "Motif : Document illisible." in mail.outbox[0].body
    # Plain text: no HTML escaping of apostrophes.
    assert "&#x27;" not in mail.outbox[0].body


def test_a_decision_is_taken_once(family, domicile, staff):
    document = send(family, domicile)
    document_accept(staff=staff, document_id=document.pk)
    with pytest.raises(DocumentAlreadyDecided, match="déjà été traité : accepté le"):
        document_accept(staff=staff, document_id=document.pk)
    with pytest.raises(DocumentAlreadyDecided):
        document_refuse(staff=staff, document_id=document.pk, reason="Trop tard")
    document.refresh_from_db()
    assert document.status == Document.Status.ACCEPTED
    assert AuditEvent.objects.filter(action__startswith="document.").count() == 2  # uploaded, accepted


def test_only_staff_decide(family, domicile):
    document = send(family, domicile)
    with pytest.raises(PermissionDenied):
        document_accept(staff=user_of(family), document_id=document.pk)
    inactive = make_staff("ancien@example.fr")
    inactive.is_active = False
    inactive.save()
    with pytest.raises(PermissionDenied):
        document_refuse(staff=inactive, document_id=document.pk, reason="Non")


def test_expiry_is_derived_from_the_validity(family, domicile, staff):
    with time_machine.travel(datetime(2026, 1, 15, 9, tzinfo=PARIS), tick=False):
        document = document_accept(staff=staff, document_id=send(family, domicile).pk)
    assert document.valid_until == date(2026, 4, 15)
    with time_machine.travel(datetime(2026, 4, 15, 23, 30, tzinfo=PARIS), tick=False):
        assert document.state == DocumentState.ACCEPTED  # last valid day, Paris time
    with time_machine.travel(datetime(2026, 4, 15, 22, 30, tzinfo=ZoneInfo("UTC")), tick=False):
        # Already 16 April in Paris: expired, though still the 15th in UTC.
        assert document.state == DocumentState.EXPIRED
        assert document.state_label == "Expiré"


@pytest.mark.parametrize(("day", "months", "expected"), [
    (date(2026, 1, 31), 1, date(2026, 2, 28)),
    (date(2028, 1, 31), 1, date(2028, 2, 29)),
    (date(2026, 11, 15), 3, date(2027, 2, 15)),
    (date(2026, 5, 10), 12, date(2027, 5, 10)),
    (date(2026, 12, 31), 24, date(2028, 12, 31)),
])
def test_add_months(day, months, expected):
    assert add_months(day, months) == expected


def test_delete_for_family_removes_rows_and_files_after_commit(family, other_family, assurance, domicile,
                                                               django_capture_on_commit_callbacks):
    mine = [send(family, domicile), send(family, assurance, child=family.children.first())]
    theirs = send(other_family, domicile)
    paths = [Path(d.file.path) for d in mine]
    assert all(p.exists() for p in paths)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert documents_delete_for_family(family) == 2
    assert all(p.exists() for p in paths)  # nothing lost until the transaction commits
    for callback in callbacks:
        callback()

    assert not Document.objects.filter(family=family).exists()
    assert not any(p.exists() for p in paths)
    assert Path(theirs.file.path).exists() and Document.objects.filter(pk=theirs.pk).exists()
    assert AuditEvent.objects.filter(action="documents.deleted_for_family", family_id=family.pk).exists()


def test_any_deletion_of_rows_removes_their_files(family, assurance, django_capture_on_commit_callbacks):
    """Queryset and cascade deletions (a child's or a family's row) go through the same
    collector and post_delete signal as documents_delete_for_family."""
    lea = family.children.get(first_name="Léa")
    path = Path(send(family, assurance, child=lea).file.path)
    with django_capture_on_commit_callbacks(execute=True):
        Document.objects.filter(child=lea).delete()
    assert not path.exists()


def test_file_is_removed_when_the_row_cannot_be_saved(family, domicile, media_root, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(services, "audit_record", broken)
    with pytest.raises(RuntimeError):
        send(family, domicile)
    assert not Document.objects.exists()
    assert not any(p.is_file() for p in media_root.rglob("*"))
