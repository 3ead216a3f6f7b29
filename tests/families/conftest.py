import re

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from marelle.core import commune as commune_module
from marelle.core.commune import current_config

HOST = "alpha.marelle.test"


@pytest.fixture
def in_alpha(alpha):
    connection.set_tenant(alpha)
    yield alpha
    connection.set_schema_to_public()


@pytest.fixture
def client():
    return Client(HTTP_HOST=HOST)


@pytest.fixture
def families_config(in_alpha):
    """Change alpha's `families:` settings for one test, as if its YAML said so."""
    digest = in_alpha.config_digest
    original = current_config()

    def apply(**overrides):
        families = original.families.model_copy(update=overrides)
        commune_module._by_digest[digest] = original.model_copy(update={"families": families})

    yield apply
    commune_module._by_digest[digest] = original


def last_link(pattern: str) -> str:
    """The path of the last link matching ``pattern`` in the last e-mail sent."""
    assert mail.outbox, "no e-mail was sent"
    match = re.search(rf"https?://[^/\s]+({pattern}\S*)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)
