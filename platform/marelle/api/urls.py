"""The families' API, mounted at /api/ on each commune's host (tokens and data of that
commune only). /api/schema/ is the OpenAPI description."""

from django.urls import include, path

from marelle.api.views import auth, children, documents, family, schema

app_name = "api"

v1 = [
    path("token/", auth.TokenApi.as_view(), name="token"),
    path("famille/", family.FamilyDetailApi.as_view(), name="family"),
    path("famille/responsables/", family.FamilyGuardianCreateApi.as_view(), name="family-guardians"),
    path("enfants/", children.ChildListApi.as_view(), name="children"),
    path("enfants/<int:child_id>/", children.ChildDetailApi.as_view(), name="child"),
    path("enfants/<int:child_id>/sante/", children.ChildHealthApi.as_view(), name="child-health"),
    path("enfants/<int:child_id>/contacts/", children.ContactListApi.as_view(), name="child-contacts"),
    path("enfants/<int:child_id>/contacts/<int:contact_id>/", children.ContactDetailApi.as_view(),
         name="child-contact"),
    path("enfants/<int:child_id>/autorisations/", children.AuthorisationListApi.as_view(),
         name="child-authorisations"),
    path("documents/", documents.DocumentListApi.as_view(), name="documents"),
    path("documents/a-fournir/", documents.DocumentSlotListApi.as_view(), name="document-slots"),
    path("documents/<int:document_id>/fichier/", documents.DocumentFileApi.as_view(), name="document-file"),
]

urlpatterns = [
    path("v1/", include((v1, "v1"))),
    path("schema/", schema.SchemaApi.as_view(), name="schema"),
]
