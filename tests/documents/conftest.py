import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client, override_settings
from django.utils.functional import empty
from marelle.catalog.models import DocumentType
from marelle.celery import app as celery_app

from tests.factories import make_family, make_staff

HOST = "alpha.marelle.test"

PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"This program cannot be run in DOS mode."


def real_queries(captured) -> list[str]:
    """The captured SQL without django-tenants' "SET search_path" before each query."""
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith("SET search_path")]


def upload(name: str, content: bytes, content_type: str = "application/pdf") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


def _forget_media_root():
    # TenantFileSystemStorage caches MEDIA_ROOT/<schema> and its setting_changed hook
    # does not clear it for MEDIA_ROOT: clear it by hand.
    if default_storage._wrapped is not empty:
        default_storage._wrapped.__dict__.pop("relative_media_root", None)


@pytest.fixture(autouse=True)
def media_root(tmp_path):
    """Every upload of these tests goes to a temporary MEDIA_ROOT."""
    with override_settings(MEDIA_ROOT=tmp_path):
        _forget_media_root()
        yield tmp_path
    _forget_media_root()


@pytest.fixture
def eager_celery():
    """Tasks (e-mails) run in-process, so django.core.mail.outbox sees them."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def in_alpha(alpha):
    connection.set_tenant(alpha)
    yield alpha
    connection.set_schema_to_public()


@pytest.fixture
def assurance(in_alpha):
    """From alpha's YAML: child scope, required for cantine, any format, 5 Mo, no expiry."""
    return DocumentType.objects.get(code="assurance")


@pytest.fixture
def domicile(in_alpha):
    """A family-scope type, PDF only, 1 Mo, valid 3 months, required by no service."""
    return DocumentType.objects.create(code="domicile", label="Justificatif de domicile", scope="family",
                                       required_for_services=[], validity_months=3, accepted_formats=["pdf"],
                                       max_size_mb=1)


@pytest.fixture
def family(in_alpha):
    return make_family("claire@example.fr", children=("Léa", "Hugo"))


@pytest.fixture
def other_family(in_alpha):
    return make_family("autre@example.fr", last_name="Benali", first_name="Karim", children=("Inès",))


@pytest.fixture
def staff(in_alpha):
    return make_staff("agent@example.fr")


@pytest.fixture
def family_client(family):
    client = Client(HTTP_HOST=HOST)
    client.force_login(family.guardians.get().user)
    return client


@pytest.fixture
def staff_client(staff):
    client = Client(HTTP_HOST=HOST)
    client.force_login(staff)
    return client
