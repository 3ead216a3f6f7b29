"""Trésor public: the régie's invoices become titres de recette (PES V2) paid to the DGFiP."""

from typing import Annotated

from marelle.plugin_api import PaymentProvider, PluginSettings, hookimpl
from pydantic import Field


class TresorPublicSettings(PluginSettings):
    # PES V2 header values; formats from the DGFiP's data dictionary (see protocols.md §3.3).
    id_post: Annotated[str, Field(pattern=r"^([0-9]{6,7}|02[AB][0-9]{3,4})$", description="Codique du poste comptable")]
    id_coll: Annotated[str, Field(pattern=r"^[0-9]{14}$", description="SIRET du budget")]
    cod_col: Annotated[str, Field(pattern=r"^[0-9]{3}$")]
    cod_bud: Annotated[str, Field(pattern=r"^[0-9A-Z][0-9]$")]
    label: Annotated[str, Field(max_length=38)] | None = None


class TresorPublicProvider(PaymentProvider):
    identifier = "tresor_public"
    verbose_name = "Transmission au Trésor public (titre de recette)"
    settings_schema = TresorPublicSettings
    accepts_online_payment = False


@hookimpl
def marelle_register_payment_providers():
    return [TresorPublicProvider]
