"""Hook specifications: the plugin author's reference.

Every hook is named ``marelle_*``. A plugin module implements a hook by defining a function
with the same name, decorated with :data:`hookimpl`. At start-up Marelle calls
``check_pending()``: a decorated function whose name matches no hook here (a typo such as
``marelle_register_payment_provider``) stops the start with an error naming it.

Hooks are kept few on purpose. Registration hooks return *classes*; Marelle then calls the
chosen class directly for each payment, never a 1:N hook per payment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from marelle.plugin_api.payment import PaymentProvider

PROJECT_NAME = "marelle"
ENTRY_POINT_GROUP = "marelle.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def marelle_register_payment_providers() -> list[type[PaymentProvider]]:
    """Return the payment provider classes this plugin offers.

    Called once per process, when the plugin manager is built (1:N: every plugin answers,
    Marelle merges the lists). Each class must subclass
    :class:`marelle.plugin_api.PaymentProvider` and set:

    - ``identifier``: lowercase, equal to the plugin's entry-point name, and the value a
      commune's YAML writes in ``regies[].payment.plugin``;
    - ``verbose_name``: French label shown to staff and families;
    - ``settings_schema``: a :class:`marelle.plugin_api.PluginSettings` subclass (pydantic)
      that validates ``regies[].payment.settings`` of the YAML. Secrets must be declared as
      :data:`marelle.plugin_api.SecretRef` fields: the YAML then holds the *name* of an
      environment variable, never the secret.

    Two providers with the same identifier are an error at start-up.

    :returns: a list of provider classes (may be empty).
    """
