"""Fixtures of the families' API tests: a family of commune alpha and an API client on
alpha's host."""

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tenants.models import Commune
from tests.factories import make_family

ALPHA_HOST = "alpha.marelle.test"
BETA_HOST = "beta.marelle.test"


@pytest.fixture
def family(alpha):
    connection.set_tenant(alpha)
    return make_family()


@pytest.fixture
def client_for():
    """An API client on alpha's host, authenticated by a token of ``user`` (or anonymous)."""

    def build(user=None, host=ALPHA_HOST):
        from marelle.api.services import token_obtain

        client = APIClient(HTTP_HOST=host)
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {token_obtain(user=user).key}")
        return client

    return build


@pytest.fixture
def api(family, client_for):
    """A client authenticated as the holder of ``family``."""
    return client_for(family.guardians.get(position=1).user)


@pytest.fixture
def validation_required(alpha):
    """Commune alpha validates families' changes (its config says so, as its YAML would)."""

    def enable():
        commune = Commune.objects.get(pk=alpha.pk)
        config = dict(commune.config)
        config["families"] = {**config.get("families", {}), "record_changes_need_validation": True}
        Commune.objects.filter(pk=alpha.pk).update(config=config, config_digest="tests-api-validation")
        alpha.config, alpha.config_digest = config, "tests-api-validation"
        connection.set_tenant(alpha)

    return enable
