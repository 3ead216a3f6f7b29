"""Back-office test helpers: clients signed in to commune alpha as staff or as a family."""

import pytest
from django.db import connection
from django.test import Client

from tests.factories import make_family, make_staff

HOST = "alpha.marelle.test"


def client_for(user, host: str = HOST) -> Client:
    client = Client(HTTP_HOST=host)
    client.force_login(user)  # the session row goes to the schema active on the connection
    return client


@pytest.fixture
def in_alpha(alpha):
    connection.set_tenant(alpha)
    return alpha


@pytest.fixture
def staff_client(in_alpha):
    """staff_client("directeur") -> (client, user), signed in to alpha with that role."""
    made = {}

    def build(role="agent"):
        if role not in made:
            user = make_staff(f"{role}@mairie-alpha.fr", role=role)
            made[role] = (client_for(user), user)
        connection.set_tenant(in_alpha)
        return made[role]

    return build


@pytest.fixture
def family(in_alpha):
    return make_family("claire.martin@example.fr", last_name="Martin", first_name="Claire",
                       children=("Léa", "Hugo"))


@pytest.fixture
def family_client(family, in_alpha):
    client = client_for(family.guardians.get(position=1).user)
    connection.set_tenant(in_alpha)
    return client


@pytest.fixture
def with_validation(monkeypatch):
    """The commune validates families' changes (alpha's YAML does not)."""
    from marelle.families import services

    monkeypatch.setattr(services, "needs_validation", lambda actor: not getattr(actor, "is_commune_staff", False))


def patch_families_config(monkeypatch, **changes):
    """Run the back-office with alpha's config, ``families`` settings changed."""
    from marelle.backoffice import services as bo_services
    from marelle.backoffice import views as bo_views
    from marelle.core import commune

    real = commune.current_config

    def patched():
        config = real()
        return config.model_copy(update={"families": config.families.model_copy(update=changes)})

    for module in (bo_services, bo_views):
        monkeypatch.setattr(module, "current_config", patched)
    return patched
