import pytest
from django.db import connection
from django.test import Client
from marelle.catalog.models import Service

from tenants.models import Commune


def get(host: str, path: str = "/", client: Client | None = None):
    return (client or Client()).get(path, HTTP_HOST=host)


def test_each_commune_host_shows_only_its_own_services(db):
    alpha = get("alpha.marelle.test").content.decode()
    beta = get("beta.marelle.test").content.decode()
    assert "Commune d&#x27;Alpha" in alpha and "Cantine d&#x27;Alpha" in alpha
    assert "Accueil de loisirs de Bêta" not in alpha
    assert "Accueil de loisirs de Bêta" in beta and "Cantine d&#x27;Alpha" not in beta


def test_extra_domain_from_the_yaml_routes_to_its_commune(db):
    response = get("famille.alpha.example")
    assert response.status_code == 200
    assert "Cantine d&#x27;Alpha" in response.content.decode()


def test_home_page_uses_the_commune_colours(db):
    assert "--primary: #123456" in get("alpha.marelle.test").content.decode()


def test_unknown_host_is_a_404_page_not_another_commune(db):
    response = get("gamma.marelle.test")
    assert response.status_code == 404
    body = response.content.decode()
    assert "aucun portail famille" in body
    assert "Alpha" not in body and "Bêta" not in body


def test_platform_domain_serves_the_operators_site(db):
    response = get("marelle.test")
    assert response.status_code == 200
    assert "Commune d&#x27;Alpha" in response.content.decode()
    assert get("marelle.test", "/admin/login/").status_code == 200
    # The operators' admin does not exist on a commune's host.
    assert get("alpha.marelle.test", "/admin/login/").status_code == 404


def test_suspended_commune_gets_a_clear_page(db):
    Commune.objects.filter(slug="beta").update(status=Commune.Status.SUSPENDED)
    response = get("beta.marelle.test")
    assert response.status_code == 503
    body = response.content.decode()
    assert "Service suspendu" in body and "contact@beta.example" in body
    assert "Accueil de loisirs" not in body


def test_catalog_rows_live_in_each_communes_own_schema(alpha, beta):
    connection.set_tenant(alpha)
    assert list(Service.objects.values_list("code", flat=True)) == ["cantine"]
    connection.set_tenant(beta)
    assert list(Service.objects.values_list("code", flat=True)) == ["alsh"]


@pytest.mark.parametrize("host", ["alpha.marelle.test", "beta.marelle.test"])
def test_media_and_cache_keys_carry_the_schema(host, db):
    from django.core.cache import cache
    from django.core.files.storage import default_storage

    commune = Commune.objects.get(domains__domain=host)
    connection.set_tenant(commune)
    assert default_storage.path("x.pdf").endswith(f"/{commune.schema_name}/x.pdf")
    cache.set("greeting", commune.slug)
    assert cache.get("greeting") == commune.slug
    other = "beta" if commune.slug == "alpha" else "alpha"
    connection.set_tenant(Commune.objects.get(slug=other))
    assert cache.get("greeting") != commune.slug


def test_host_cache_skips_the_domain_lookup_and_keeps_communes_apart(db, settings, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tenants.middleware import clear_host_cache

    settings.TENANT_HOST_CACHE_SECONDS = 60
    clear_host_cache()
    try:
        with CaptureQueriesContext(connection) as first:
            assert "Cantine d&#x27;Alpha" in get("alpha.marelle.test").content.decode()
        with CaptureQueriesContext(connection) as second:
            assert "Cantine d&#x27;Alpha" in get("alpha.marelle.test").content.decode()
        assert not any("tenants_domain" in q["sql"] for q in second.captured_queries)
        assert any("tenants_domain" in q["sql"] for q in first.captured_queries)
        assert "Accueil de loisirs de Bêta" in get("beta.marelle.test").content.decode()
        assert get("gamma.marelle.test").status_code == 404  # unknown hosts are not cached as anything
    finally:
        clear_host_cache()
