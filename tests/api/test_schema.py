"""The OpenAPI description: generated without warnings, public, and covering the API."""

import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from .conftest import ALPHA_HOST

PATHS = {
    "/api/v1/token/": {"post", "delete"},
    "/api/v1/famille/": {"get", "patch"},
    "/api/v1/famille/responsables/": {"post"},
    "/api/v1/enfants/": {"get", "post"},
    "/api/v1/enfants/{child_id}/": {"get", "patch"},
    "/api/v1/enfants/{child_id}/sante/": {"get", "patch"},
    "/api/v1/enfants/{child_id}/contacts/": {"get", "post"},
    "/api/v1/enfants/{child_id}/contacts/{contact_id}/": {"patch", "delete"},
    "/api/v1/enfants/{child_id}/autorisations/": {"get", "put"},
    "/api/v1/documents/": {"get", "post"},
    "/api/v1/documents/a-fournir/": {"get"},
    "/api/v1/documents/{document_id}/fichier/": {"get"},
}


def test_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    # --fail-on-warn turns any warning (untyped field, unknown serializer…) into a failure.
    call_command("spectacular", "--validate", "--fail-on-warn", "--urlconf", "marelle.urls_tenant",
                 "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    for path, methods in PATHS.items():
        assert set(schema["paths"][path]) >= methods, path
        for method in methods:
            operation = schema["paths"][path][method]
            assert operation["tags"][0] in {"Authentification", "Famille", "Enfants", "Santé",
                                            "Personnes à contacter", "Autorisations", "Documents"}
            assert operation.get("summary")
    patch = schema["paths"]["/api/v1/famille/"]["patch"]
    assert set(patch["responses"]) >= {"200", "202", "400"}
    assert "requestBody" in patch
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


def test_schema_is_public(alpha):
    response = APIClient(HTTP_HOST=ALPHA_HOST).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert set(PATHS) <= set(schema["paths"])
    assert "/api/schema/" not in schema["paths"]
