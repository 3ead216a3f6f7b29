"""The commune URLconf with the payment pages at /paiement/ (as urls_tenant.py will mount
them); used by the payment tests until then, and harmless after."""

from django.urls import include, path
from marelle import urls_tenant


def _mounted(patterns) -> bool:
    return any(getattr(getattr(p, "urlconf_module", None), "__name__", "") == "marelle.payments.urls"
               for p in patterns)


urlpatterns = list(urls_tenant.urlpatterns)
if not _mounted(urlpatterns):
    urlpatterns.append(path("paiement/", include("marelle.payments.urls")))
