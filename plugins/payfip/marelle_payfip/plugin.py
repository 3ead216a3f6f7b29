"""PayFiP: online card payment of public revenue through the DGFiP, per régie."""

from typing import Annotated, Literal

from pydantic import Field

from marelle.plugin_api import PaymentProvider, PluginSettings, hookimpl


class PayFiPSettings(PluginSettings):
    # The régie's client number given by the DGFiP.
    numcli: Annotated[str, Field(pattern=r"^[0-9]{6}$", description="Numéro client PayFiP (6 chiffres)")]
    # PayFiP's "saisie": T (test), X (activation), W (production).
    environment: Literal["test", "activation", "production"] = "test"
    # Above the DGFiP's own ceiling PayFiP refuses the operation (code M5).
    max_amount_cents: Annotated[int, Field(ge=100, le=9_999_999)] = 9_999_999


class PayFiPProvider(PaymentProvider):
    identifier = "payfip"
    verbose_name = "PayFiP (paiement par carte bancaire, DGFiP)"
    settings_schema = PayFiPSettings


@hookimpl
def marelle_register_payment_providers():
    return [PayFiPProvider]
