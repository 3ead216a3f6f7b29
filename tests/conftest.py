"""Test set-up: one test database, two commune schemas created once per session.

Schema creation is the expensive part of a django-tenants suite, so the communes
``alpha`` and ``beta`` (tests/fixtures/communes/) are synced once, committed, and shared;
each test runs in a transaction that is rolled back, and gets the public schema back.
"""

from pathlib import Path

import pytest
from django.db import connection

FIXTURES = Path(__file__).parent / "fixtures"
COMMUNE_FIXTURES = FIXTURES / "communes"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from tenants.commune_config.validation import validate_files
    from tenants.sync import sync_communes

    with django_db_blocker.unblock():
        report = validate_files([COMMUNE_FIXTURES])
        assert report.ok, "\n".join(map(str, report.errors))
        plans = sync_communes(report.communes)
        failed = [p for p in plans if p.outcome == "failed"]
        assert not failed, [p.error for p in failed]
        connection.set_schema_to_public()


@pytest.fixture(autouse=True)
def _back_to_public_schema():
    yield
    if connection.connection is not None or True:
        connection.set_schema_to_public()


@pytest.fixture
def alpha(db):
    from tenants.models import Commune

    return Commune.objects.get(slug="alpha")


@pytest.fixture
def beta(db):
    from tenants.models import Commune

    return Commune.objects.get(slug="beta")
